//! The scheduler's one error type. Each error knows its [`FailureClass`] and whether retrying can
//! help, so callers decide on fields, never on message text.

use std::path::PathBuf;

use switchyard_config::FailureClass;

use crate::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported state store URL `{url}`; use sqlite://PATH or postgres://USER@HOST/DB")]
    StoreUrl { url: String },
    #[error("cannot connect to the state store {url}: {cause}")]
    StoreConnect { url: String, cause: String },
    #[error("cannot create the state store folder {}: {cause}", path.display())]
    StoreFiles { path: PathBuf, cause: std::io::Error },
    #[error("state store migration {version} ({name}) failed: {cause}")]
    Migration { version: i64, name: &'static str, cause: String },
    #[error("state store query failed: {0}")]
    Store(sqlx::Error),
    #[error("state store holds invalid data ({what}): {cause}")]
    Corrupt { what: &'static str, cause: String },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("attempt {attempt} no longer holds its lease (it is {state}); the report was rejected")]
    Fenced { attempt: i64, state: String },
    #[error(
        "cannot write the event log to {target}: {cause} (hint: {hint}); the events stay in the state store and are exported once it works again"
    )]
    EventExport { target: String, cause: String, hint: &'static str },
    #[error("the manifests have {} error(s); fix them (see `switchyard plan`) and submit again", errors.len())]
    Rejected { errors: Vec<PlanError> },
    #[error(
        "--select names {}, which no submitted task writes; {}the submitted jobs write: {}",
        quoted(unknown),
        unknown.first().map_or_else(String::new, |u| switchyard_config::suggest::did_you_mean(u, known.iter().map(String::as_str))),
        if known.is_empty() { "no tables".to_owned() } else { known.join(", ") }
    )]
    UnknownSelection { unknown: Vec<String>, known: Vec<String> },
    #[error("node refused: {reason}")]
    NodeRefused { reason: String, hint: String },
    #[error("cannot load the control plane's inputs: {0}")]
    Inputs(switchyard_config::Error),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("control plane at {url} answered {status}: {message}")]
    Api { url: String, status: u16, code: String, message: String, hint: String },
    #[error("cannot reach the control plane at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("alert webhook {name}: {cause} (hint: {hint})")]
    Webhook { name: String, cause: String, hint: String },
    /// The Kubernetes launcher could not be set up or its API call failed.
    #[error("Kubernetes launcher: {what}: {cause}")]
    Kubernetes { what: String, cause: String },
    #[error("{what}: {reason}")]
    BadRequest { what: String, reason: String, hint: String },
}

fn quoted(tables: &[String]) -> String {
    tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

impl Error {
    pub(crate) fn store(e: sqlx::Error) -> Self {
        Error::Store(e)
    }

    pub(crate) fn store_connect(url: &str, e: impl std::fmt::Display) -> Self {
        // sqlx echoes the URL in some messages; never let a password through.
        let cause = e.to_string();
        let cause = match url.find("://").zip(url.rfind('@')) {
            Some((_, at)) => cause.replace(&url[..at], &crate::store::redact(&url[..=at])),
            None => cause,
        };
        Error::StoreConnect { url: crate::store::redact(url), cause }
    }

    pub(crate) fn corrupt(what: &'static str, cause: impl std::fmt::Display) -> Self {
        Error::Corrupt { what, cause: cause.to_string() }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            Error::StoreConnect { .. } | Error::Unreachable { .. } => FailureClass::Connectivity,
            Error::Api { status: 401, .. } => FailureClass::Authentication,
            Error::Api { status: 403, .. } | Error::NodeRefused { .. } => FailureClass::Access,
            Error::Rejected { .. } | Error::UnknownSelection { .. } | Error::BadRequest { .. } => {
                FailureClass::Data
            }
            _ => FailureClass::Internal,
        }
    }

    /// Whether trying the same thing again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::StoreConnect { .. } | Error::Unreachable { .. } => true,
            Error::Store(e) => {
                !matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_))
            }
            Error::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
