//! The lake crate's one error type; each variant knows its failure class.

use switchyard_config::FailureClass;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lake root `{root}` is not usable: {cause}")]
    Root { root: String, cause: String },
    #[error(
        "table {table}: the incoming data does not fit its schema; existing: {existing}; incoming: {incoming}"
    )]
    IncompatibleSchema { table: String, existing: String, incoming: String },
    #[error("table {table}: two writers raced for the same source positions ({detail})")]
    PositionConflict { table: String, detail: String },
    #[error("table {table}: {cause}")]
    Delta { table: String, cause: deltalake::DeltaTableError },
    #[error("table {table} does not exist at {location}: nothing has been committed to it")]
    NoTable { table: String, location: String },
    #[error("table {table} has no version {version} yet")]
    MissingVersion { table: String, version: u64 },
    #[error("table {table}: the log entry of version {version} is not valid JSON ({cause})")]
    Log { table: String, version: u64, cause: String },
    #[error(
        "table {table}: {attempts} commits in a row lost the race to other writers (read at version {}, the table is now at version {}): {cause}",
        read_version.map_or("none".to_owned(), |v| v.to_string()),
        current_version.map_or("none".to_owned(), |v| v.to_string())
    )]
    Conflict {
        table: String,
        attempts: u32,
        read_version: Option<u64>,
        current_version: Option<u64>,
        cause: String,
    },
    #[error("lake root `{root}`: {setting} would make concurrent commits unsafe: {why}")]
    CommitSafety { root: String, setting: String, why: String },
}

impl Error {
    /// The object-store failure behind this error, if it is one.
    pub fn store_failure(&self) -> Option<crate::StoreFailure> {
        match self {
            Error::Delta { cause, .. } => crate::store::store_failure(cause),
            _ => None,
        }
    }
}

impl Error {
    pub fn class(&self) -> FailureClass {
        if let Some(failure) = self.store_failure() {
            return failure.class();
        }
        match self {
            Error::CommitSafety { .. } => FailureClass::Internal,
            Error::Conflict { .. } => FailureClass::Data,
            Error::IncompatibleSchema { .. } => FailureClass::Data,
            Error::Root { .. } | Error::PositionConflict { .. } | Error::Log { .. } => FailureClass::Internal,
            Error::MissingVersion { .. } | Error::NoTable { .. } => FailureClass::Data,
            Error::Delta { cause, .. } => match cause {
                deltalake::DeltaTableError::ObjectStore { .. } => FailureClass::Connectivity,
                deltalake::DeltaTableError::Arrow { .. }
                | deltalake::DeltaTableError::SchemaMismatch { .. } => FailureClass::Data,
                _ => FailureClass::Internal,
            },
        }
    }

    pub fn hint(&self) -> &'static str {
        if let Some(failure) = self.store_failure() {
            return failure.hint();
        }
        match self {
            Error::CommitSafety { .. } => "change the setting named above, then start again",
            Error::Conflict { .. } => {
                "several tasks write this table at once and keep overtaking each other: give each its own table, or chain them with depends_on or on_update"
            }
            Error::IncompatibleSchema { .. } => {
                "new nullable columns are merged automatically; a changed type or a removed column needs a new table or an overwrite"
            }
            Error::Root { .. } => "set [lake] root to a writable directory or an object store URL",
            Error::PositionConflict { .. } => {
                "another attempt of this task wrote to the table at the same time; the retry resumes from what was committed"
            }
            Error::NoTable { .. } => {
                "check the table name (schema.table) and that [lake] root is the lake its writer uses"
            }
            Error::MissingVersion { .. } => {
                "the run names an input version the table does not have: run without pinned versions, or check the lake root is the one the writer used"
            }
            Error::Log { .. } => {
                "the table's Delta log was written by something other than a Delta writer; repair or recreate the table"
            }
            Error::Delta { .. } => {
                "check the table's storage is reachable and not modified by another writer outside Delta"
            }
        }
    }
}
