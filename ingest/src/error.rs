//! The ingest crate's one error type. Each variant knows its failure class (DESIGN §5) and the
//! hint an operator needs; none carries a password, token or key.

use switchyard_config::FailureClass;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be made: denied by policy, refused, timed out, TLS.
    #[error(transparent)]
    Gateway(#[from] switchyard_gateway::Error),
    /// Boxed: Delta's errors are large, and every result of this crate carries this type.
    #[error(transparent)]
    Lake(Box<switchyard_lake::Error>),
    /// The source answered, and the answer says what went wrong.
    #[error("{source_name}: {message}")]
    Source { source_name: String, class: FailureClass, message: String, hint: String },
    /// The data could not be turned into rows of the table.
    #[error("{source_name}: {message}")]
    Data { source_name: String, message: String, hint: String },
    /// The task's own settings (a missing password variable, an unsupported combination).
    #[error("{message}")]
    Config { message: String, hint: String },
}

impl From<switchyard_lake::Error> for Error {
    fn from(e: switchyard_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

impl Error {
    pub fn class(&self) -> FailureClass {
        match self {
            Error::Gateway(e) => e.class(),
            Error::Lake(e) => e.class(),
            Error::Source { class, .. } => *class,
            Error::Data { .. } => FailureClass::Data,
            Error::Config { .. } => FailureClass::Data,
        }
    }

    pub fn hint(&self) -> String {
        match self {
            Error::Gateway(e) => e.hint(),
            Error::Lake(e) => e.hint().to_owned(),
            Error::Source { hint, .. } | Error::Data { hint, .. } | Error::Config { hint, .. } => {
                hint.clone()
            }
        }
    }

    pub(crate) fn source(
        name: impl Into<String>,
        class: FailureClass,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Source { source_name: name.into(), class, message: message.into(), hint: hint.into() }
    }

    pub(crate) fn data(name: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Data { source_name: name.into(), message: message.into(), hint: hint.into() }
    }

    pub(crate) fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Config { message: message.into(), hint: hint.into() }
    }
}
