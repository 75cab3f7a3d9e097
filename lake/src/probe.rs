//! `switchyard lake check`: the lake root probed from this machine the way Delta uses it, one
//! stage at a time, so a failure names the stage (and with it, usually, the setting) to fix.

use std::time::Instant;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::{Lake, StoreFailure};

/// One stage of the probe.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: &'static str,
    /// What the stage does, as a person reads it.
    pub what: &'static str,
    pub ok: bool,
    /// What happened: timing on success, the store's answer on failure.
    pub detail: String,
    /// On failure: connectivity, authentication or access when the answer says which.
    pub failure: Option<StoreFailure>,
    pub hint: Option<String>,
}

impl Lake {
    /// Probes the root: resolve, list, put, conditional put refused over the existing key, read
    /// back, delete. Stops at the first failing stage; the stages after it are not run.
    pub async fn check(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        let key = object_store::path::Path::from(format!(
            "_switchyard/lake-check/{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let payload = b"switchyard lake check\n".to_vec();
        let started = Instant::now();
        let store = match self.object_store() {
            Ok(store) => {
                stages.push(pass(
                    "resolve",
                    "build the object store for the root from the settings and environment",
                    started,
                ));
                store
            }
            Err(e) => {
                stages.push(fail(
                    "resolve",
                    "build the object store for the root from the settings and environment",
                    e.to_string(),
                    None,
                    Some(e.hint().to_owned()),
                ));
                return stages;
            }
        };
        macro_rules! stage {
            ($name:expr, $what:expr, $op:expr) => {{
                let started = Instant::now();
                match $op.await {
                    Ok(v) => {
                        stages.push(pass($name, $what, started));
                        v
                    }
                    Err(e) => {
                        let failure = crate::store::store_failure(&e);
                        let hint = failure
                            .map(|f| f.hint().to_owned())
                            .or_else(|| Some(default_hint($name).to_owned()));
                        stages.push(fail($name, $what, e.to_string(), failure, hint));
                        return stages;
                    }
                }
            }};
        }
        stage!(
            "list",
            "list the root (needs list permission on the bucket or container)",
            store.list_with_delimiter(None)
        );
        stage!(
            "put",
            "write a small object under _switchyard/lake-check/",
            store.put(&key, PutPayload::from(payload.clone()))
        );
        let started = Instant::now();
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match store.put_opts(&key, PutPayload::from(b"overwrite".to_vec()), create).await {
            Err(object_store::Error::AlreadyExists { .. }) => stages.push(pass(
                "conditional-put",
                "a create-if-absent over the same key must be refused (Delta commits rely on it)",
                started,
            )),
            Ok(_) => {
                stages.push(fail(
                    "conditional-put",
                    "a create-if-absent over the same key must be refused (Delta commits rely on it)",
                    "the store accepted it and overwrote the object".to_owned(),
                    None,
                    Some("this store ignores If-None-Match: two writers racing for one Delta version would both succeed; use a store that supports conditional PUT".to_owned()),
                ));
                let _ = store.delete(&key).await;
                return stages;
            }
            Err(e) => {
                let failure = crate::store::store_failure(&e);
                stages.push(fail(
                    "conditional-put",
                    "a create-if-absent over the same key must be refused (Delta commits rely on it)",
                    e.to_string(),
                    failure,
                    Some(failure.map(|f| f.hint().to_owned()).unwrap_or_else(|| "the store does not support conditional PUT (If-None-Match), which Delta commits on it need; remove aws_conditional_put = \"disabled\" if set, or use a store that supports it".to_owned())),
                ));
                let _ = store.delete(&key).await;
                return stages;
            }
        }
        let started = Instant::now();
        match store.get(&key).await {
            Ok(got) => match got.bytes().await {
                Ok(bytes) if bytes.as_ref() == payload.as_slice() => {
                    stages.push(pass("read", "read the object back", started))
                }
                Ok(bytes) => {
                    stages.push(fail("read", "read the object back", format!("read {} bytes that differ from the {} written", bytes.len(), payload.len()), None, Some("the store returned other content than was written: check that no proxy or other writer changes objects under the root".to_owned())));
                    return stages;
                }
                Err(e) => {
                    let failure = crate::store::store_failure(&e);
                    stages.push(fail(
                        "read",
                        "read the object back",
                        e.to_string(),
                        failure,
                        failure.map(|f| f.hint().to_owned()),
                    ));
                    return stages;
                }
            },
            Err(e) => {
                let failure = crate::store::store_failure(&e);
                stages.push(fail(
                    "read",
                    "read the object back",
                    e.to_string(),
                    failure,
                    Some(
                        failure
                            .map(|f| f.hint().to_owned())
                            .unwrap_or_else(|| default_hint("read").to_owned()),
                    ),
                ));
                return stages;
            }
        }
        stage!(
            "delete",
            "delete the object (VACUUM and retried writes need delete permission)",
            store.delete(&key)
        );
        stages
    }
}

fn pass(name: &'static str, what: &'static str, started: Instant) -> Stage {
    Stage {
        name,
        what,
        ok: true,
        detail: format!("{} ms", started.elapsed().as_millis()),
        failure: None,
        hint: None,
    }
}

fn fail(
    name: &'static str,
    what: &'static str,
    detail: String,
    failure: Option<StoreFailure>,
    hint: Option<String>,
) -> Stage {
    Stage { name, what, ok: false, detail, failure, hint }
}

fn default_hint(stage: &str) -> &'static str {
    match stage {
        "list" => "check the bucket or container in [lake] root exists and the credentials may list it",
        "put" => {
            "the credentials can list but not write: grant write (s3:PutObject, Storage Blob Data Contributor, storage.objects.create) on the root"
        }
        "read" => "the credentials can write but not read: grant read on the root",
        "delete" => {
            "the credentials cannot delete: VACUUM and retried writes need delete permission on the root"
        }
        _ => "see the store's answer above",
    }
}
