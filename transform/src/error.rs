use switchyard_config::FailureClass;

/// Why a transform failed. Every variant maps to a failure class and a hint an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query reads something that is not a lake table: a URL or a file path. Serverless
    /// workers have no egress, so this is refused before anything is read.
    #[error(
        "the query reads `{target}`, which is outside the lake: serverless transforms read only lake tables"
    )]
    OutsideLake { target: String, url: bool },
    #[error("the query names `{name}`: {why}")]
    BadTableName { name: String, why: String },
    #[error("input table {table} does not exist in the lake yet ({location})")]
    MissingInput { table: String, location: String },
    #[error("the query failed: {message}")]
    Query { message: String },
    /// An operator that cannot spill (or a batch larger than the pool) needed more memory than
    /// the worker's budget has left; the message names the largest consumers.
    #[error("the query needs more memory than the worker's budget allows: {message}")]
    OutOfMemory { message: String },
    /// The query itself was fine; the object store under the lake failed while it ran.
    #[error("reading or writing the lake failed during the query: {message}")]
    Storage { message: String, failure: switchyard_lake::StoreFailure },
    #[error("expectation `{name}` (`{check}`): {message}")]
    Expectation { name: String, check: String, message: String },
    #[error(transparent)]
    Lake(Box<switchyard_lake::Error>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// A failure while planning or running the query: bad SQL or data is `data`, but an
    /// object-store outage in the middle of a scan keeps its own class (and so its retry).
    pub(crate) fn query<E: std::error::Error + 'static>(e: E) -> Error {
        use switchyard_lake::deltalake::datafusion::error::DataFusionError;
        let exhausted = (&e as &(dyn std::error::Error + 'static))
            .downcast_ref::<DataFusionError>()
            .is_some_and(|d| matches!(d.find_root(), DataFusionError::ResourcesExhausted(_)));
        if exhausted {
            return Error::OutOfMemory { message: e.to_string() };
        }
        match switchyard_lake::store_failure(&e) {
            Some(failure) => Error::Storage { message: e.to_string(), failure },
            None => Error::Query { message: e.to_string() },
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            Error::OutsideLake { .. } => FailureClass::Access,
            Error::BadTableName { .. }
            | Error::MissingInput { .. }
            | Error::Query { .. }
            | Error::OutOfMemory { .. }
            | Error::Expectation { .. } => FailureClass::Data,
            Error::Lake(e) => e.class(),
            Error::Storage { failure, .. } => failure.class(),
            Error::Internal(_) => FailureClass::Internal,
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Error::OutsideLake { url: true, .. } => {
                "serverless workers have no egress: fetch it with an ingest task (`source: {kind: https}`) on a dedicated node whose egress IP the destination allows, and read that task's table"
            }
            Error::OutsideLake { url: false, .. } => {
                "transforms read lake tables by name (`schema.table`); load files into the lake with an ingest task first"
            }
            Error::BadTableName { .. } => "name lake tables as `schema.table`, e.g. `bronze.claims`",
            Error::MissingInput { .. } => {
                "run the task that writes it first (or list it in the job's `external_tables` only once it exists)"
            }
            Error::Query { .. } => {
                "fix the task's `sql`: check column names and types against the input tables"
            }
            Error::OutOfMemory { .. } => {
                "raise [serverless] memory_limit (and the worker's memory with it), or make the query hold less at once: the operators named above (a join's build side, a sort, many groups) are what ran out"
            }
            Error::Expectation { .. } => {
                "fix the data upstream, or change the expectation's `on_violation` to `drop` or `quarantine` to keep the pipeline moving"
            }
            Error::Lake(e) => e.hint(),
            Error::Storage { failure, .. } => failure.hint(),
            Error::Internal(_) => "report this as a bug, with the task's log",
        }
    }
}

impl From<switchyard_lake::Error> for Error {
    fn from(e: switchyard_lake::Error) -> Error {
        Error::Lake(Box::new(e))
    }
}
