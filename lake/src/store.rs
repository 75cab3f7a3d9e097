//! Object stores under the lake: which handlers exist, which options are safe, and what an
//! object-store failure means to the person who has to fix it.
//!
//! deltalake picks the store by URL scheme from a process-wide registry; the handlers for S3
//! (`s3://`, `s3a://`), Azure (`abfss://`, `abfs://`, `az://`, `azure://`) and GCS (`gs://`) are
//! registered once, before the first table is opened. Credentials and endpoints come from the
//! environment object_store reads, overridden by `[lake.storage_options]`.

use std::collections::HashMap;
use std::sync::Once;

use switchyard_config::FailureClass;
use url::Url;

use crate::Error;

/// Registers deltalake's S3, Azure and GCS handlers (idempotent; deltalake's own start-up hook
/// may be dropped by the linker, so this does not rely on it).
pub(crate) fn register_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::azure::register_handlers(None);
        deltalake::gcp::register_handlers(None);
    });
}

/// Connection defaults for object stores, where the operator has not set them: fail over in
/// seconds on a dead endpoint rather than object_store's minutes of retries (the task's own retry
/// takes over), and bound a single request.
const DEFAULTS: &[(&str, &str)] =
    &[("connect_timeout", "5s"), ("timeout", "120s"), ("retry_timeout", "30s"), ("max_retries", "4")];

/// The options tables are opened with: the operator's, with keys lowercased, plus Switchyard's
/// defaults; on S3, refuses what would make concurrent commits unsafe.
pub(crate) fn effective_options(
    root: &Url,
    options: HashMap<String, String>,
    allow_unsafe_rename: bool,
) -> Result<HashMap<String, String>, Error> {
    let mut options: HashMap<String, String> =
        options.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    if root.scheme() == "file" {
        return Ok(options);
    }
    for (key, value) in DEFAULTS {
        options.entry((*key).to_owned()).or_insert_with(|| (*value).to_owned());
    }
    if matches!(root.scheme(), "s3" | "s3a") {
        check_s3_commit_safety(root, &mut options, allow_unsafe_rename)?;
    }
    Ok(options)
}

/// Delta on S3 without DynamoDB is safe because the commit file of version N is written with
/// `If-None-Match: *`: of two writers racing for N, S3 accepts one. Settings from the older
/// delta-rs model — `AWS_S3_ALLOW_UNSAFE_RENAME`, a `dynamodb` locking provider (whose lock
/// client delta-rs 1.x no longer has) — say the operator expects non-atomic renames or an
/// external lock; neither is what protects commits now, so they are refused unless the operator
/// opts in, rather than silently meaning something else. With conditional PUT disabled no commit
/// can be made at all.
fn check_s3_commit_safety(
    root: &Url,
    options: &mut HashMap<String, String>,
    allow_unsafe_rename: bool,
) -> Result<(), Error> {
    let setting = |key: &str| -> Option<(String, String)> {
        let lower = key.to_ascii_lowercase();
        if let Some(v) = options.get(&lower) {
            return Some((format!("[lake.storage_options] {lower}"), v.clone()));
        }
        std::env::var(key.to_ascii_uppercase())
            .ok()
            .map(|v| (format!("environment variable {}", key.to_ascii_uppercase()), v))
    };
    let refuse = |source: String, why: &str| Error::CommitSafety {
        root: redact_url(root.as_str()),
        setting: source,
        why: why.to_owned(),
    };
    if let Some((source, value)) = setting("aws_conditional_put") {
        if !value.eq_ignore_ascii_case("etag") {
            return Err(refuse(
                source,
                "commits on S3 need conditional PUT (If-None-Match); without it no commit can be made safely. Remove the setting, or set it to \"etag\"",
            ));
        }
    }
    if !allow_unsafe_rename {
        if let Some((source, value)) = setting("aws_s3_allow_unsafe_rename") {
            if matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y") {
                return Err(refuse(
                    source,
                    "it allows renames that are not atomic, under which two writers racing for one Delta version can both succeed and lose a commit. Remove it (Switchyard commits with conditional PUT), or set [lake] allow_unsafe_rename = true if exactly one process ever writes each table",
                ));
            }
        }
        if let Some((source, value)) = setting("aws_s3_locking_provider") {
            if value.eq_ignore_ascii_case("dynamodb") {
                return Err(refuse(
                    source,
                    "delta-rs 1.x has no DynamoDB lock client any more, so the lock this asks for would not be taken. Remove it: conditional PUT makes commits safe without DynamoDB",
                ));
            }
        }
    }
    options.insert("aws_conditional_put".to_owned(), "etag".to_owned());
    Ok(())
}

/// Whether the table has a Delta log (one LIST of `_delta_log/`). A missing directory or prefix
/// is "no table"; any other failure (no bucket, no access, no network) is an error.
pub(crate) async fn has_log(table: &deltalake::DeltaTable) -> Result<bool, deltalake::DeltaTableError> {
    use deltalake::ObjectStoreError;
    use futures_util::StreamExt;
    let store = table.log_store().object_store(None);
    let log = deltalake::Path::from("_delta_log");
    // The first entry is enough; `list_with_delimiter` would page through the whole log.
    match store.list(Some(&log)).next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(ObjectStoreError::NotFound { .. })) if table.log_store().root_url().scheme() == "file" => {
            Ok(false)
        }
        Some(Err(source)) => Err(deltalake::DeltaTableError::ObjectStore { source }),
    }
}

/// What went wrong talking to the object store, as far as the error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// No connection: refused, reset, timed out, name not resolved.
    Unreachable,
    /// Credentials refused: unknown key, bad signature, expired token.
    Authentication,
    /// Known credentials without the right, or no such bucket/container.
    Access,
}

impl StoreFailure {
    pub fn class(self) -> FailureClass {
        match self {
            StoreFailure::Unreachable => FailureClass::Connectivity,
            StoreFailure::Authentication => FailureClass::Authentication,
            StoreFailure::Access => FailureClass::Access,
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            StoreFailure::Unreachable => {
                "the object store's endpoint did not answer: check [lake] root, the endpoint (AWS_ENDPOINT_URL or [lake.storage_options] aws_endpoint_url / azure_storage_endpoint) and that this machine can reach it; `switchyard lake check` probes it stage by stage"
            }
            StoreFailure::Authentication => {
                "the object store refused the credentials: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AZURE_STORAGE_ACCOUNT_KEY, GOOGLE_SERVICE_ACCOUNT) or the matching [lake.storage_options] entries, and that they have not expired"
            }
            StoreFailure::Access => {
                "the bucket or container in [lake] root does not exist or these credentials may not use it: create it, or grant list, read, write and delete on it to the credentials in use"
            }
        }
    }
}

/// Classifies an error by the object-store failure somewhere in its chain, if there is one.
pub fn store_failure(err: &(dyn std::error::Error + 'static)) -> Option<StoreFailure> {
    use deltalake::ObjectStoreError;
    let mut text = String::new();
    let mut typed = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if typed.is_none() {
            typed = match e.downcast_ref::<ObjectStoreError>() {
                Some(ObjectStoreError::PermissionDenied { .. }) => Some(StoreFailure::Access),
                Some(ObjectStoreError::Unauthenticated { .. }) => Some(StoreFailure::Authentication),
                _ => None,
            };
        }
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push('\n');
        next = e.source();
    }
    by_text(&text).or(typed)
}

/// The S3, Azure and GCS error codes and the client's connection failures, as they appear in
/// object_store's messages (which carry the server's response body).
fn by_text(text: &str) -> Option<StoreFailure> {
    const AUTHENTICATION: &[&str] = &[
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "expiredtoken",
        "invalidtoken",
        "tokenrefreshrequired",
        "authenticationfailed",
        "invalidauthenticationinfo",
        "401 unauthorized",
        "status code: 401",
    ];
    const ACCESS: &[&str] = &[
        "accessdenied",
        "access denied",
        "nosuchbucket",
        "containernotfound",
        "authorizationpermissionmismatch",
        "authorizationfailure",
        "403 forbidden",
        "status code: 403",
        "bucket does not exist",
        "the specified bucket does not exist",
    ];
    const UNREACHABLE: &[&str] = &[
        "connection refused",
        "connection reset",
        "error sending request",
        "tcp connect error",
        "client error (connect)",
        "dns error",
        "failed to lookup address",
        "operation timed out",
        "timed out",
        "deadline has elapsed",
        "network unreachable",
        "no route to host",
    ];
    let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if any(AUTHENTICATION) {
        Some(StoreFailure::Authentication)
    } else if any(ACCESS) {
        Some(StoreFailure::Access)
    } else if any(UNREACHABLE) {
        Some(StoreFailure::Unreachable)
    } else {
        None
    }
}

/// The bucket or container a lake root names (`s3://lake/prod` → `lake`,
/// `abfss://data@acct.dfs.core.windows.net/x` → `data`), for messages.
pub fn bucket(root: &Url) -> Option<String> {
    if root.scheme() == "file" {
        return None;
    }
    let user = root.username();
    if !user.is_empty() {
        return Some(user.to_owned());
    }
    root.host_str().map(str::to_owned)
}

/// A URL with any password in it replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn s3_commits_use_conditional_put_and_unsafe_renames_are_refused() {
        let opts = effective_options(&url("s3://lake/prod/"), HashMap::new(), false).unwrap();
        assert_eq!(opts["aws_conditional_put"], "etag");
        assert_eq!(opts["connect_timeout"], "5s");
        let unsafe_rename = HashMap::from([("AWS_S3_ALLOW_UNSAFE_RENAME".to_owned(), "true".to_owned())]);
        let err = effective_options(&url("s3://lake/prod/"), unsafe_rename.clone(), false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("aws_s3_allow_unsafe_rename") && text.contains("allow_unsafe_rename = true"),
            "{text}"
        );
        assert!(effective_options(&url("s3://lake/prod/"), unsafe_rename, true).is_ok());
        let disabled = HashMap::from([("aws_conditional_put".to_owned(), "disabled".to_owned())]);
        assert!(effective_options(&url("s3a://lake/"), disabled, true).is_err());
        let dynamo = HashMap::from([("aws_s3_locking_provider".to_owned(), "dynamodb".to_owned())]);
        assert!(effective_options(&url("s3://lake/"), dynamo, false).is_err());
        // Local directories and other stores get no S3 options.
        assert!(effective_options(&url("file:///tmp/lake/"), HashMap::new(), false).unwrap().is_empty());
        assert!(
            !effective_options(&url("az://c/x/"), HashMap::new(), false)
                .unwrap()
                .contains_key("aws_conditional_put")
        );
    }

    #[test]
    fn failures_are_classified_from_what_the_store_answered() {
        let cases = [
            (
                "Error performing PUT http://127.0.0.1:1/lake/x in 2ms - error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                StoreFailure::Unreachable,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>InvalidAccessKeyId</Code></Error>",
                StoreFailure::Authentication,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>",
                StoreFailure::Authentication,
            ),
            (
                "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>",
                StoreFailure::Access,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: <Error><Code>AccessDenied</Code></Error>",
                StoreFailure::Access,
            ),
            (
                "403 This request is not authorized to perform this operation using this permission. AuthorizationPermissionMismatch",
                StoreFailure::Access,
            ),
            (
                "Server returned non-2xx status code: 403 Forbidden: AuthenticationFailed Server failed to authenticate the request",
                StoreFailure::Authentication,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(by_text(&text.to_ascii_lowercase()), Some(want), "{text}");
        }
        assert_eq!(by_text("schema mismatch"), None);
    }

    #[test]
    fn buckets_and_passwords_in_messages() {
        assert_eq!(bucket(&url("s3://lake/prod/")).as_deref(), Some("lake"));
        assert_eq!(bucket(&url("abfss://data@acct.dfs.core.windows.net/x/")).as_deref(), Some("data"));
        assert_eq!(bucket(&url("file:///tmp/x/")), None);
        assert_eq!(redact_url("s3://key:hunter2@lake/x"), "s3://key:***@lake/x");
        assert_eq!(redact_url("s3://lake/x"), "s3://lake/x");
    }
}
