//! Secrets named by a manifest (`password_env`, `password_file`, `bearer_token_env`), read on the
//! node at run time through `config::SecretRef`. Errors name the variable or file, never the value.

use std::path::Path;

use switchyard_config::{Secret, SecretRef};

use crate::Error;

pub(crate) fn resolve(secret: &SecretRef) -> Result<Secret<String>, Error> {
    secret.resolve().map_err(|e| {
        Error::config(
            e.to_string(),
            "provide it to the node agent (systemd EnvironmentFile, Kubernetes secret mounted as a file)",
        )
    })
}

/// The password a database source names, if any.
pub(crate) fn password(env: Option<&str>, file: Option<&Path>) -> Result<Option<Secret<String>>, Error> {
    match (env, file) {
        (Some(var), _) => resolve(&SecretRef::Env(var.to_owned())).map(Some),
        (None, Some(path)) => resolve(&SecretRef::File(path.to_path_buf())).map(Some),
        (None, None) => Ok(None),
    }
}
