//! The config crate's one error type: what stops loading altogether (as opposed to the
//! [`Diagnostic`](crate::Diagnostic)s that report problems inside files).

use std::path::PathBuf;

/// Loading failed before any file could be checked. The CLI exits 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{what} {} does not exist; pass an existing file or leave the option out to use the default", path.display())]
    NotFound { what: &'static str, path: PathBuf },
    #[error("{} holds no manifests (*.yaml or *.yml)", path.display())]
    NoManifests { path: PathBuf },
    #[error("secret not available: {name} is not set")]
    SecretMissing { name: String },
}
