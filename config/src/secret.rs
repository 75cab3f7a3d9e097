//! Secrets that cannot leak by accident: `Debug`, `Display` and `Serialize` all print `***`.
//!
//! Manifests never hold secret values, only where to find them (`password_env`, `password_file`);
//! [`SecretRef::resolve`] reads them at run time on the node that needs them, and what it returns
//! must be asked for by name ([`Secret::expose`]) to be seen.

use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::Error;

/// A value that must never be printed, logged or sent over the API.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call this only where the value is handed to the thing that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Where a secret lives: an environment variable or a file (e.g. a mounted Kubernetes secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret. A file's trailing newline is dropped, as `echo secret > file` adds one.
    pub fn resolve(&self) -> Result<Secret<String>, Error> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| Error::SecretMissing { name: format!("environment variable {name}") }),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|cause| Error::Read { path: path.clone(), cause }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn resolves_files_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(SecretRef::File(path).resolve().unwrap().expose(), "s3cret");
        let err = SecretRef::Env("SWITCHYARD_TEST_SURELY_UNSET".into()).resolve().unwrap_err();
        assert!(err.to_string().contains("SWITCHYARD_TEST_SURELY_UNSET"));
    }
}
