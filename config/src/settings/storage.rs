//! `[lake.storage_options]`: credentials and endpoints for an object-store lake root.
//!
//! Values go to the object store as they are (object_store's keys: `aws_endpoint_url`,
//! `azure_storage_account_key`, `google_service_account_key`, …). A key ending in `_env` or `_file`
//! names where the value lives instead (`aws_secret_access_key_env = "LAKE_SECRET"`), so a settings
//! file can be committed without secrets. Every value counts as a secret: `Debug` and `Serialize`
//! print only the keys, and [`StorageOptions::resolve`] hands the values out behind [`Secret`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

use crate::{Error, Secret, SecretRef};

/// Option names (lowercase, object_store's spelling) to values or `_env`/`_file` references.
#[derive(Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    pub fn new(options: BTreeMap<String, String>) -> Self {
        Self(options)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The option names as written (references keep their `_env`/`_file` suffix).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The entries as written (references unresolved), only to hand them on to a process that
    /// resolves them itself (a worker the local launcher starts).
    pub fn as_written(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `option` to `value`, replacing a reference to it: how a worker takes the values its
    /// launcher read from files the worker cannot see.
    pub fn set(&mut self, option: &str, value: String) {
        let option = option.to_ascii_lowercase();
        self.0.remove(&format!("{option}_env"));
        self.0.remove(&format!("{option}_file"));
        self.0.insert(option, value);
    }

    /// Where each referenced option's value lives, by the option it sets.
    pub fn references(&self) -> impl Iterator<Item = (&str, SecretRef)> {
        self.0.iter().filter_map(|(key, value)| {
            if let Some(option) = key.strip_suffix("_env") {
                Some((option, SecretRef::Env(value.clone())))
            } else {
                key.strip_suffix("_file").map(|option| (option, SecretRef::File(PathBuf::from(value))))
            }
        })
    }

    /// The options with references read, keys lowercased. Fails on the first reference that
    /// cannot be read, naming the option.
    pub fn resolve(&self) -> Result<Secret<HashMap<String, String>>, Error> {
        let mut out = HashMap::with_capacity(self.0.len());
        for (key, value) in &self.0 {
            let is_ref = key.ends_with("_env") || key.ends_with("_file");
            if !is_ref {
                out.insert(key.to_ascii_lowercase(), value.clone());
            }
        }
        for (option, source) in self.references() {
            let value = source.resolve().map_err(|e| match e {
                Error::SecretMissing { name } => {
                    Error::SecretMissing { name: format!("{name} (for [lake.storage_options] {option})") }
                }
                other => other,
            })?;
            out.insert(option.to_ascii_lowercase(), value.expose().clone());
        }
        Ok(Secret::new(out))
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "***"))).finish()
    }
}

impl Serialize for StorageOptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.keys().map(|k| (k, "***")))
    }
}

/// The URL schemes a lake root may have, and the object store behind each.
pub const LAKE_SCHEMES: &[(&str, &str)] = &[
    ("file", "a local directory"),
    ("s3", "Amazon S3 or an S3-compatible server"),
    ("s3a", "Amazon S3 or an S3-compatible server"),
    ("abfss", "Azure Data Lake Storage Gen2 / Blob Storage"),
    ("abfs", "Azure Data Lake Storage Gen2 / Blob Storage"),
    ("az", "Azure Blob Storage"),
    ("azure", "Azure Blob Storage"),
    ("gs", "Google Cloud Storage"),
];

/// The scheme of a lake root, `file` for a plain path.
pub fn lake_scheme(root: &str) -> &str {
    match root.split_once("://") {
        Some((scheme, _)) => scheme,
        None => "file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_print_and_references_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let options = StorageOptions::new(BTreeMap::from([
            ("AWS_ENDPOINT_URL".to_owned(), "http://127.0.0.1:9000".to_owned()),
            ("aws_secret_access_key_file".to_owned(), secret.display().to_string()),
        ]));
        let shown = format!("{options:?} {}", serde_json::to_string(&options).unwrap());
        assert!(!shown.contains("s3cr3t") && !shown.contains("127.0.0.1"), "{shown}");
        let resolved = options.resolve().unwrap();
        assert_eq!(resolved.expose()["aws_secret_access_key"], "s3cr3t");
        assert_eq!(resolved.expose()["aws_endpoint_url"], "http://127.0.0.1:9000");
        assert_eq!(format!("{resolved:?}"), "***");
    }

    #[test]
    fn a_missing_reference_names_the_option() {
        let options = StorageOptions::new(BTreeMap::from([(
            "azure_storage_account_key_env".to_owned(),
            "SWITCHYARD_TEST_NOT_SET_ANYWHERE".to_owned(),
        )]));
        let err = options.resolve().unwrap_err().to_string();
        assert!(
            err.contains("SWITCHYARD_TEST_NOT_SET_ANYWHERE") && err.contains("azure_storage_account_key"),
            "{err}"
        );
    }
}
