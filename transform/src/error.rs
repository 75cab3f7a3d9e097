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
    /// The query itself was fine; the machine failed it: a local read or write (the spill
    /// directory, a full disk) or a connection the runtime made, classified by its cause.
    #[error("the worker failed the query: {message}")]
    Environment { message: String, class: FailureClass },
    #[error("expectation `{name}` (`{check}`): {message}")]
    Expectation { name: String, check: String, message: String },
    /// `engine: distributed`: the Ballista cluster failed the run (scheduler unreachable, an
    /// executor lost past Ballista's own retries) or could not be started.
    #[error("the Ballista cluster failed the query: {message}")]
    Distributed { message: String, class: FailureClass },
    /// `engine: distributed` reads inputs as the Parquet files of their pinned version; this
    /// input's files alone do not give its rows.
    #[error("input table {table} cannot be read by the distributed engine: {why}")]
    NotDistributable { table: String, why: String },
    #[error(transparent)]
    Lake(Box<switchyard_lake::Error>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// A failure while planning or running the query, classified by its cause: bad SQL, types
    /// or data are `data`; running out of the memory budget is `data` with its own hint; an
    /// object-store outage or a dropped connection in the middle of a scan is `connectivity`
    /// (and so retried), refused credentials `authentication`, a local I/O failure or a bug in
    /// the engine `internal`.
    pub(crate) fn query<E: std::error::Error + 'static>(e: E) -> Error {
        use switchyard_lake::deltalake::datafusion::error::DataFusionError;
        let message = e.to_string();
        let root = (&e as &(dyn std::error::Error + 'static))
            .downcast_ref::<DataFusionError>()
            .map(DataFusionError::find_root);
        if let Some(DataFusionError::ResourcesExhausted(_)) = root {
            return Error::OutOfMemory { message };
        }
        if let Some(failure) = switchyard_lake::store_failure(&e) {
            return Error::Storage { message, failure };
        }
        match root.and_then(environment_class) {
            Some(FailureClass::Connectivity) => {
                Error::Storage { message, failure: switchyard_lake::StoreFailure::Unreachable }
            }
            Some(class) => Error::Environment { message, class },
            None => Error::Query { message },
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            Error::OutsideLake { .. } => FailureClass::Access,
            Error::BadTableName { .. }
            | Error::MissingInput { .. }
            | Error::Query { .. }
            | Error::OutOfMemory { .. }
            | Error::Expectation { .. }
            | Error::NotDistributable { .. } => FailureClass::Data,
            Error::Distributed { class, .. } => *class,
            Error::Lake(e) => e.class(),
            Error::Storage { failure, .. } => failure.class(),
            Error::Environment { class, .. } => *class,
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
            Error::Distributed { class: FailureClass::Connectivity, .. } => {
                "the Ballista scheduler or an executor could not be reached or was lost: the attempt is retried; check that `switchyard ballista-scheduler` and its executors run and reach each other and the lake ([transform.ballista] scheduler in the settings)"
            }
            Error::Distributed { .. } => {
                "check the Ballista scheduler's and executors' logs for the job named above; remove `engine: distributed` to run the task on one serverless worker meanwhile"
            }
            Error::NotDistributable { .. } => {
                "remove `engine: distributed` from the task to read it with the Delta reader on one serverless worker"
            }
            Error::Lake(e) => e.hint(),
            Error::Storage { failure, .. } => failure.hint(),
            Error::Environment { class: FailureClass::Access, .. } => {
                "the worker may not read or write where the query spills or reads: check the temporary directory's permissions"
            }
            Error::Environment { .. } => {
                "the worker's machine failed the query (its temporary directory, a full disk, or the engine itself): retry it, and report it with the task's log if it repeats"
            }
            Error::Internal(_) => "report this as a bug, with the task's log",
        }
    }
}

impl From<switchyard_lake::Error> for Error {
    fn from(e: switchyard_lake::Error) -> Error {
        Error::Lake(Box::new(e))
    }
}

/// The class of a failure that is not about the query: what the machine or the network did.
/// `None` for the query's own errors (SQL, plan, schema, types, data), which are `data`.
fn environment_class(
    root: &switchyard_lake::deltalake::datafusion::error::DataFusionError,
) -> Option<FailureClass> {
    use switchyard_lake::deltalake::datafusion::error::DataFusionError as E;
    match root {
        E::IoError(io) => Some(io_class(io)),
        // An object-store error that names no credential or permission problem: the store
        // answered with a server error, or retries ran out.
        E::ObjectStore(_) => Some(FailureClass::Connectivity),
        E::External(inner) => {
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
            while let Some(e) = next {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    return Some(io_class(io));
                }
                if e.downcast_ref::<switchyard_lake::deltalake::ObjectStoreError>().is_some() {
                    return Some(FailureClass::Connectivity);
                }
                next = e.source();
            }
            None
        }
        E::Internal(_) | E::NotImplemented(_) | E::Configuration(_) | E::ExecutionJoin(_) | E::Ffi(_) => {
            Some(FailureClass::Internal)
        }
        _ => None,
    }
}

/// A local or network I/O failure by its kind: a connection that went away is `connectivity`,
/// a refused permission `access`, anything else (a full disk, a missing file) `internal`.
fn io_class(io: &std::io::Error) -> FailureClass {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => FailureClass::Connectivity,
        K::PermissionDenied => FailureClass::Access,
        _ => FailureClass::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use switchyard_lake::deltalake::datafusion::error::DataFusionError;

    use super::*;

    fn class_of(e: DataFusionError) -> FailureClass {
        Error::query(e).class()
    }

    #[test]
    fn query_failures_keep_the_class_of_their_cause() {
        let sql = DataFusionError::Plan("column `amout` not found".into());
        assert_eq!(class_of(sql), FailureClass::Data);
        let exhausted = DataFusionError::ResourcesExhausted("sort".into());
        assert!(matches!(Error::query(exhausted), Error::OutOfMemory { .. }));
        let reset = DataFusionError::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(class_of(reset), FailureClass::Connectivity);
        let full_disk = DataFusionError::IoError(std::io::Error::other("No space left on device"));
        assert_eq!(class_of(full_disk), FailureClass::Internal);
        let spill_denied =
            DataFusionError::IoError(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(class_of(spill_denied), FailureClass::Access);
        let bug = DataFusionError::Internal("invariant".into());
        assert_eq!(class_of(bug), FailureClass::Internal);
        // Wrapped in context and shared, the cause still decides.
        let wrapped = DataFusionError::Context(
            "reading bronze.claims".into(),
            Box::new(DataFusionError::Shared(Arc::new(DataFusionError::IoError(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))))),
        );
        assert_eq!(class_of(wrapped), FailureClass::Connectivity);
        let external =
            DataFusionError::External(Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert_eq!(class_of(external), FailureClass::Connectivity);
    }
}
