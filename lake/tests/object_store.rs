//! The lake on real object-store servers: moto's S3 server (`SWITCHYARD_TEST_S3`, an endpoint URL)
//! and Azurite's blob service (`SWITCHYARD_TEST_AZURITE`), both started by `scripts/test`, which
//! also creates the bucket and the container `switchyard-test`. Each test writes under a prefix
//! of its own. Nothing here touches a local lake directory.
//!
//! A second moto (`SWITCHYARD_TEST_S3_AUTH`) checks signatures and IAM policies, for the
//! credential tests.
//!
//! Not covered: real AWS, real Azure and any GCS (no emulator runs here); see the README.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_config::FailureClass;
use switchyard_lake::arrow::array::{Int64Array, StringArray};
use switchyard_lake::arrow::datatypes::{DataType, Field, Schema};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Lake, Position, StoreFailure, WriteMode};

/// Azurite's well-known development account key (published by Microsoft; not a secret).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through scripts/test, which starts the server (or `scripts/test --setup` and export what it prints)")
    })
}

fn unique(prefix: &str) -> String {
    switchyard_testkit::unique_name(&format!("{prefix}-"))
}

fn s3_options(endpoint: &str) -> HashMap<String, String> {
    HashMap::from([
        ("aws_endpoint_url".into(), endpoint.into()),
        ("aws_access_key_id".into(), "testing".into()),
        ("aws_secret_access_key".into(), "testing".into()),
        ("aws_region".into(), "us-east-1".into()),
        ("aws_allow_http".into(), "true".into()),
    ])
}

fn s3_lake(prefix: &str) -> Lake {
    let root = format!("s3://switchyard-test/{prefix}");
    Lake::with_options(&root, s3_options(&endpoint("SWITCHYARD_TEST_S3")), false).unwrap()
}

/// Azurite through object_store's emulator mode (path-style URLs, its list quirks handled), which
/// takes the blob endpoint from `AZURITE_BLOB_STORAGE_URL`: `scripts/test` exports it.
fn azure_lake(prefix: &str) -> Lake {
    let blob = endpoint("SWITCHYARD_TEST_AZURITE");
    assert_eq!(
        std::env::var("AZURITE_BLOB_STORAGE_URL").ok().as_deref(),
        Some(blob.as_str()),
        "AZURITE_BLOB_STORAGE_URL must name the same Azurite as SWITCHYARD_TEST_AZURITE (scripts/test sets both)"
    );
    let options = HashMap::from([
        ("azure_storage_use_emulator".into(), "true".into()),
        ("azure_storage_account_name".into(), "devstoreaccount1".into()),
        ("azure_storage_account_key".into(), AZURITE_KEY.into()),
    ]);
    Lake::with_options(&format!("az://switchyard-test/{prefix}"), options, false).unwrap()
}

fn batch(from: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..from + n).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("row-{i}")).collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
    )
    .unwrap()
}

fn table(name: &str) -> switchyard_config::value::TableName {
    name.parse().unwrap()
}

/// Row count and the sum of ids: an order-independent checksum of what a table holds.
fn count_and_sum(batches: &[RecordBatch]) -> (usize, i64) {
    let mut rows = 0;
    let mut sum = 0;
    for b in batches {
        rows += b.num_rows();
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
        sum += ids.iter().flatten().sum::<i64>();
    }
    (rows, sum)
}

/// Streaming writer, positions read back by a fresh handle, retries skipped, maintenance that
/// keeps the positions: the ingest path, end to end on one store.
async fn streaming_writes_positions_and_maintenance(lake: Lake, fresh: impl Fn() -> Lake) {
    let t = table("bronze.events");
    let app = "job/ingest/0";
    let mut writer = lake.writer(&t, WriteMode::Append).await.unwrap();
    for part in 0..3 {
        writer.write(batch(part * 1000, 1000)).await.unwrap();
    }
    let first = writer.commit(&[Position { app_id: app.into(), version: 3000 }]).await.unwrap();
    assert!(!first.skipped);
    assert_eq!(first.rows, 3000);
    writer.write(batch(3000, 500)).await.unwrap();
    writer.commit(&[Position { app_id: app.into(), version: 3500 }]).await.unwrap();
    // A restarted writer (a new process) reads the position from the store.
    let again = fresh();
    assert_eq!(again.position(&t, app).await.unwrap(), Some(3500));
    let retried = again
        .commit(
            &t,
            vec![batch(3000, 500)],
            WriteMode::Append,
            &[Position { app_id: app.into(), version: 3500 }],
        )
        .await
        .unwrap();
    assert!(retried.skipped, "a retry of a committed position writes nothing");
    assert_eq!(count_and_sum(&again.read(&t, None).await.unwrap()), (3500, (0..3500).sum()));
    // Compaction keeps rows and positions; vacuum with zero retention then finds the old parts.
    let optimized = again.optimize(&t, &[]).await.unwrap();
    assert!(optimized.files_removed >= 2, "{optimized:?}");
    assert_eq!(again.position(&t, app).await.unwrap(), Some(3500), "positions survive optimize");
    assert_eq!(count_and_sum(&again.read(&t, None).await.unwrap()), (3500, (0..3500).sum()));
    let dry = again.vacuum(&t, std::time::Duration::ZERO, true).await.unwrap();
    assert!(dry.dry_run && dry.files.len() as u64 >= optimized.files_removed, "{dry:?}");
    let done = again.vacuum(&t, std::time::Duration::ZERO, false).await.unwrap();
    assert_eq!(done.files.len(), dry.files.len());
    assert_eq!(count_and_sum(&again.read(&t, None).await.unwrap()), (3500, (0..3500).sum()));
}

#[tokio::test]
async fn s3_streaming_writes_positions_and_maintenance() {
    let prefix = unique("stream");
    streaming_writes_positions_and_maintenance(s3_lake(&prefix), || s3_lake(&prefix)).await;
}

#[tokio::test]
async fn azurite_streaming_writes_positions_and_maintenance() {
    let prefix = unique("stream");
    streaming_writes_positions_and_maintenance(azure_lake(&prefix), || azure_lake(&prefix)).await;
}

/// Eight writers racing appends to one table through conditional PUT (no DynamoDB): every
/// commit lands in its own version and no row is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_racing_appends_lose_no_commit() {
    let prefix = unique("race");
    let t = table("bronze.race");
    // The table exists first, so the race is over versions 1.., not over its creation.
    s3_lake(&prefix).commit(&t, vec![batch(0, 1)], WriteMode::Append, &[]).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let prefix = prefix.clone();
        let t = t.clone();
        writers.push(tokio::spawn(async move {
            let lake = s3_lake(&prefix);
            let pos = [Position { app_id: format!("writer-{w}"), version: 1 }];
            lake.commit(&t, vec![batch(1 + w * 100, 100)], WriteMode::Append, &pos).await
        }));
    }
    let mut versions = Vec::new();
    for w in writers {
        let committed = w.await.unwrap().expect("each racing append commits (deltalake retries conflicts)");
        versions.push(committed.table_version);
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 8, "each writer got its own version: {versions:?}");
    let (rows, sum) = count_and_sum(&s3_lake(&prefix).read(&t, None).await.unwrap());
    assert_eq!((rows, sum), (801, (0..801).sum()), "no lost or doubled rows");
}

#[tokio::test]
async fn lake_check_passes_on_s3_and_azurite_and_names_the_failing_stage() {
    for lake in [s3_lake(&unique("check")), azure_lake(&unique("check"))] {
        let stages = lake.check().await;
        let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["resolve", "list", "put", "conditional-put", "read", "delete"], "{stages:?}");
        assert!(stages.iter().all(|s| s.ok), "{stages:?}");
    }
    // Nothing listens on port 9 of 127.0.0.1: connectivity, at the first request.
    let dead = Lake::with_options("s3://switchyard-test/x", s3_options("http://127.0.0.1:9"), false).unwrap();
    let stages = dead.check().await;
    let last = stages.last().unwrap();
    assert_eq!(
        (last.name, last.ok, last.failure),
        ("list", false, Some(StoreFailure::Unreachable)),
        "{stages:?}"
    );
    // A bucket that does not exist: access, naming what to fix.
    let missing = Lake::with_options(
        &format!("s3://{}/x", unique("no-such-bucket")),
        s3_options(&endpoint("SWITCHYARD_TEST_S3")),
        false,
    )
    .unwrap();
    let stages = missing.check().await;
    let last = stages.last().unwrap();
    assert_eq!((last.name, last.failure), ("list", Some(StoreFailure::Access)), "{stages:?}");
    assert!(last.hint.as_deref().unwrap_or("").contains("bucket"), "{stages:?}");
}

#[tokio::test]
async fn storage_failures_at_run_time_are_classified_not_internal() {
    let t = table("bronze.unreachable");
    let dead = Lake::with_options("s3://switchyard-test/x", s3_options("http://127.0.0.1:9"), false).unwrap();
    let err = dead.commit(&t, vec![batch(0, 10)], WriteMode::Append, &[]).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Connectivity, "{err}");
    let missing = Lake::with_options(
        &format!("s3://{}/x", unique("no-such-bucket")),
        s3_options(&endpoint("SWITCHYARD_TEST_S3")),
        false,
    )
    .unwrap();
    let err = missing.position(&t, "app").await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Access, "{err}");
    assert!(err.hint().contains("[lake] root"), "{}", err.hint());
}

/// The S3 server that checks credentials (`SWITCHYARD_TEST_S3_AUTH`, a second moto in IAM mode,
/// started and prepared by scripts/test): `key` is `ACCESS_KEY_ID:SECRET`.
fn auth_lake(key: &str, prefix: &str) -> Lake {
    let (id, secret) = key.split_once(':').expect("ACCESS_KEY_ID:SECRET");
    let mut options = s3_options(&endpoint("SWITCHYARD_TEST_S3_AUTH"));
    options.insert("aws_access_key_id".into(), id.into());
    options.insert("aws_secret_access_key".into(), secret.into());
    Lake::with_options(&format!("s3://switchyard-auth/{prefix}"), options, false).unwrap()
}

/// Against a server that authenticates and authorizes every request: the writer's key passes
/// every stage and commits; an unknown key and a wrong secret are `authentication` at the first
/// request; read-only credentials list and read but fail at `put` as `access`, and a commit with
/// them fails as `access` naming the bucket — none of them `internal`.
#[tokio::test]
async fn wrong_and_read_only_credentials_are_classified_and_named() {
    let writer = endpoint("SWITCHYARD_TEST_S3_WRITER");
    let reader = endpoint("SWITCHYARD_TEST_S3_READER");
    let prefix = unique("auth");
    let t = table("bronze.guarded");

    let lake = auth_lake(&writer, &prefix);
    let stages = lake.check().await;
    assert!(stages.iter().all(|s| s.ok), "{stages:?}");
    lake.commit(&t, vec![batch(0, 10)], WriteMode::Append, &[]).await.unwrap();

    let (writer_id, _) = writer.split_once(':').unwrap();
    for key in ["AKIAUNKNOWNKEY000000:whatever", &format!("{writer_id}:not-the-secret")] {
        let stages = auth_lake(key, &prefix).check().await;
        let last = stages.last().unwrap();
        assert_eq!((last.name, last.failure), ("list", Some(StoreFailure::Authentication)), "{stages:?}");
        let err = auth_lake(key, &prefix).read(&t, None).await.unwrap_err();
        assert_eq!(err.class(), FailureClass::Authentication, "{err}");
    }

    let read_only = auth_lake(&reader, &prefix);
    let (rows, _) = count_and_sum(&read_only.read(&t, None).await.unwrap());
    assert_eq!(rows, 10, "read-only credentials read the table");
    let stages = auth_lake(&reader, &prefix).check().await;
    let last = stages.last().unwrap();
    assert_eq!((last.name, last.ok, last.failure), ("put", false, Some(StoreFailure::Access)), "{stages:?}");
    let err = read_only.commit(&t, vec![batch(10, 5)], WriteMode::Append, &[]).await.unwrap_err();
    assert_eq!(err.class(), FailureClass::Access, "{err}");
    assert!(err.to_string().contains("switchyard-auth"), "names the bucket: {err}");
    let (rows, _) = count_and_sum(&lake.read(&t, None).await.unwrap());
    assert_eq!(rows, 10, "the refused commit left the table as it was");
}

/// A GCS lake whose requests go to `base` (object_store's `gcs_base_url` in the service-account
/// key, OAuth off: how object_store is pointed at a local GCS endpoint).
fn gcs_lake(base: &str) -> Lake {
    let key = serde_json::json!({
        "gcs_base_url": base, "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": "",
    });
    let options = HashMap::from([("google_service_account_key".to_owned(), key.to_string())]);
    Lake::with_options("gs://switchyard-gcs/lake/prod", options, false).unwrap()
}

/// Answers every HTTP request on a port of 127.0.0.1 with `status` and GCS's JSON error `body`.
async fn answering(status: &'static str, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// GCS has no emulator on this machine that object_store can talk to (gcp-storage-emulator from
/// PyPI was tried: it answers 501 to object_store's percent-encoded paths and ignores
/// `x-goog-if-generation-match`), so this covers what can be checked without one: `gs://` roots
/// resolve to table locations under the prefix, and the real GCS client's failures are classified
/// — a dead endpoint as connectivity, and GCS's own 401 / 403 / missing-bucket answers (served by
/// a socket on 127.0.0.1 replying with the error bodies Google documents) as authentication and
/// access at the `list` stage, never internal.
#[tokio::test]
async fn gcs_roots_resolve_and_their_failures_are_classified() {
    let lake = gcs_lake("http://127.0.0.1:9");
    assert_eq!(lake.root().as_str(), "gs://switchyard-gcs/lake/prod/");
    assert_eq!(
        lake.location(&table("bronze.claims")).as_str(),
        "gs://switchyard-gcs/lake/prod/bronze/claims/"
    );
    let stages = lake.check().await;
    let last = stages.last().unwrap();
    assert_eq!((last.name, last.failure), ("list", Some(StoreFailure::Unreachable)), "{stages:?}");
    let cases = [
        (
            "401 Unauthorized",
            r#"{"error":{"code":401,"message":"Invalid Credentials","status":"UNAUTHENTICATED"}}"#,
            StoreFailure::Authentication,
        ),
        (
            "403 Forbidden",
            r#"{"error":{"code":403,"message":"lake@p.iam.gserviceaccount.com does not have storage.objects.list access to the Google Cloud Storage bucket.","status":"PERMISSION_DENIED"}}"#,
            StoreFailure::Access,
        ),
        (
            "404 Not Found",
            r#"{"error":{"code":404,"message":"The specified bucket does not exist.","status":"NOT_FOUND"}}"#,
            StoreFailure::Access,
        ),
    ];
    for (status, body, class) in cases {
        let lake = gcs_lake(&answering(status, body).await);
        let stages = lake.check().await;
        let last = stages.last().unwrap();
        assert_eq!((last.name, last.failure), ("list", Some(class)), "{status}: {stages:?}");
        if status != "404 Not Found" {
            // At run time too: reading a position is the first request an ingest makes.
            let err = lake.position(&table("bronze.claims"), "app").await.unwrap_err();
            assert_eq!(err.class(), class.class(), "{status}: {err}");
        }
    }
}

#[test]
fn unsafe_renames_are_refused_unless_the_operator_opts_in() {
    let mut options = s3_options("http://127.0.0.1:9");
    options.insert("AWS_S3_ALLOW_UNSAFE_RENAME".into(), "true".into());
    let err = Lake::with_options("s3://switchyard-test/x", options.clone(), false).unwrap_err();
    assert!(err.to_string().contains("allow_unsafe_rename"), "{err}");
    assert!(Lake::with_options("s3://switchyard-test/x", options, true).is_ok());
}

#[test]
fn storage_options_never_show_in_debug_output() {
    let lake = s3_lake("debug");
    let shown = format!("{lake:?}");
    assert!(shown.contains("aws_secret_access_key") && !shown.contains("testing"), "{shown}");
}

/// One staged write per batch, all at once from fresh handles (separate processes in production),
/// each committing under `{app}-{i}`; their results in order.
async fn race_staged(
    prefix: &str,
    t: &switchyard_config::value::TableName,
    mode: WriteMode,
    batches: Vec<RecordBatch>,
    app: &str,
) -> Vec<Result<switchyard_lake::Committed, switchyard_lake::Error>> {
    let mut racers = Vec::new();
    for (i, rows) in batches.into_iter().enumerate() {
        let (lake, t, app) = (s3_lake(prefix), t.clone(), format!("{app}-{i}"));
        racers.push(tokio::spawn(async move {
            let mut staged = lake.stage(&t, rows.schema(), mode, None).await?;
            staged.write(&rows).await?;
            staged.commit(&[Position { app_id: app, version: 1 }], None).await
        }));
    }
    let mut results = Vec::new();
    for r in racers {
        results.push(r.await.expect("join"));
    }
    results
}

/// Staged writes (a transform's output) on S3: files uploaded before the commit are invisible;
/// racing overwrites each commit against the version they read, so the table ends holding
/// exactly one writer's rows, never a mix; racing appends all land; an aborted write leaves the
/// table as it was; a retry of a committed position is skipped and its files deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_staged_writes_race_abort_and_retry_safely() {
    let prefix = unique("staged");
    let t = table("silver.staged");
    let lake = s3_lake(&prefix);
    let schema = batch(0, 1).schema();
    let mut first = lake.stage(&t, schema.clone(), WriteMode::Overwrite, None).await.unwrap();
    first.write(&batch(0, 1000)).await.unwrap();
    assert_eq!(lake.version(&t).await.unwrap(), None, "nothing visible before the commit");
    let pos = |app: &str, v: i64| vec![Position { app_id: app.into(), version: v }];
    let committed = first.commit(&pos("run", 1), None).await.unwrap();
    assert_eq!((committed.skipped, committed.rows), (false, 1000));
    assert_eq!(count_and_sum(&lake.read(&t, None).await.unwrap()), (1000, (0..1000).sum()));

    // Racing overwrites from fresh handles (separate processes in production).
    let overwrites = (0..4).map(|w| batch(10_000 * (w + 1), 500)).collect();
    for r in race_staged(&prefix, &t, WriteMode::Overwrite, overwrites, "overwriter").await {
        r.expect("each racing overwrite commits, rebuilt on the winner's version");
    }
    let after = lake.read(&t, None).await.unwrap();
    let (rows, sum) = count_and_sum(&after);
    assert_eq!(rows, 500, "exactly one overwrite's rows remain, not a mix");
    assert!((1..=4).any(|w| sum == (10_000 * w..10_000 * w + 500).sum::<i64>()), "one writer's rows: {sum}");

    // An aborted write changes nothing.
    let version = lake.version(&t).await.unwrap();
    let mut aborted = lake.stage(&t, schema.clone(), WriteMode::Append, None).await.unwrap();
    aborted.write(&batch(90_000, 100)).await.unwrap();
    aborted.abort().await;
    assert_eq!(lake.version(&t).await.unwrap(), version);
    assert_eq!(count_and_sum(&lake.read(&t, None).await.unwrap()), (rows, sum));

    // Racing appends all land; a retry of one of them is skipped.
    let appends = (0..4).map(|w| batch(100_000 + w * 10, 10)).collect();
    for r in race_staged(&prefix, &t, WriteMode::Append, appends, "appender").await {
        assert!(!r.expect("racing appends commit").skipped);
    }
    let mut retry = lake.stage(&t, schema, WriteMode::Append, None).await.unwrap();
    retry.write(&batch(100_000, 10)).await.unwrap();
    assert!(
        retry.commit(&pos("appender-0", 1), None).await.unwrap().skipped,
        "a retried position is skipped"
    );
    let appended: i64 = (0..4).map(|w| (100_000 + w * 10..100_000 + w * 10 + 10).sum::<i64>()).sum();
    assert_eq!(count_and_sum(&lake.read(&t, None).await.unwrap()), (rows + 40, sum + appended));
}
