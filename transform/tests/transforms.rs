//! Transforms over small Delta tables the tests create in a temporary lake: SQL results against
//! checked-in expectations (`tests/golden/*.txt`; `UPDATE_GOLDEN=1` rewrites them), every
//! expectation action, merges, idempotency, and incremental refresh against full recomputation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use switchyard_config::manifest::{Expectation, SinkSpec};
use switchyard_config::value::TableName;
use switchyard_lake::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::arrow::util::display::{ArrayFormatter, FormatOptions};
use switchyard_lake::{Lake, WriteMode};
use switchyard_transform::{Outcome, RefreshMode, Request};

fn table(name: &str) -> TableName {
    name.parse().expect("table name")
}

fn sink(json: serde_json::Value) -> SinkSpec {
    serde_json::from_value(json).expect("sink")
}

fn expectations(json: serde_json::Value) -> Vec<Expectation> {
    serde_json::from_value(json).expect("expectations")
}

/// Claims: id, member, provider, amount. `rows` are (id, member, provider, amount).
fn claims(rows: &[(i64, Option<&str>, &str, f64)]) -> RecordBatch {
    RecordBatch::try_from_iter([
        ("claim_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef),
        ("member_id", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))) as ArrayRef),
        ("provider", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef),
        ("amount", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))) as ArrayRef),
    ])
    .expect("batch")
}

fn providers() -> RecordBatch {
    RecordBatch::try_from_iter([
        ("provider", Arc::new(StringArray::from(vec!["p1", "p2", "p3"])) as ArrayRef),
        ("region", Arc::new(StringArray::from(vec!["north", "south", "north"])) as ArrayRef),
    ])
    .expect("batch")
}

async fn append(lake: &Lake, name: &str, batch: RecordBatch) {
    lake.commit(&table(name), vec![batch], WriteMode::Append, &[]).await.expect("append");
}

/// The table's rows as sorted text lines, for comparisons that ignore row order.
async fn rows(lake: &Lake, name: &str) -> Vec<String> {
    let batches = lake.read(&table(name), None).await.expect("read");
    let mut lines = Vec::new();
    let options = FormatOptions::default().with_null("NULL");
    for b in &batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..b.num_rows() {
            lines.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join(" | "));
        }
    }
    lines.sort();
    lines
}

fn golden(name: &str, lines: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    let actual = lines.join("\n") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

async fn run(lake: &Lake, task: &str, sql: &str, sink: &SinkSpec, checks: &[Expectation]) -> Outcome {
    try_run(lake, task, sql, sink, checks, false).await.expect("transform")
}

async fn try_run(
    lake: &Lake,
    task: &str,
    sql: &str,
    sink: &SinkSpec,
    checks: &[Expectation],
    full_refresh: bool,
) -> Result<Outcome, switchyard_transform::Error> {
    let versions = BTreeMap::new();
    let request = Request {
        job: "test",
        task,
        sql,
        sink,
        expectations: checks,
        full_refresh,
        input_versions: &versions,
        distributed: None,
    };
    switchyard_transform::run(lake, &request).await
}

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::new(dir.path().to_str().expect("utf-8")).expect("lake");
    (dir, lake)
}

async fn seed(lake: &Lake) {
    append(
        lake,
        "bronze.claims",
        claims(&[
            (1, Some("m1"), "p1", 100.0),
            (2, Some("m2"), "p1", 50.5),
            (3, None, "p2", 20.0),
            (4, Some("m4"), "p2", -5.0),
            (5, Some("m5"), "p3", 70.0),
            (6, Some("m6"), "p3", 0.0),
        ]),
    )
    .await;
    append(lake, "ref.providers", providers()).await;
}

#[tokio::test]
async fn golden_filter_aggregate_and_join() {
    let (_dir, lake) = lake();
    seed(&lake).await;
    let overwrite = |t: &str| sink(serde_json::json!({"table": t, "mode": "overwrite"}));
    run(
        &lake,
        "filter",
        "SELECT claim_id, member_id, amount FROM bronze.claims WHERE amount > 10",
        &overwrite("silver.big"),
        &[],
    )
    .await;
    golden("filter", &rows(&lake, "silver.big").await);
    run(
        &lake,
        "aggregate",
        "SELECT provider, count(*) AS claims, sum(amount) AS total, min(amount) AS smallest FROM bronze.claims GROUP BY provider",
        &overwrite("gold.by_provider"),
        &[],
    )
    .await;
    golden("aggregate", &rows(&lake, "gold.by_provider").await);
    run(
        &lake,
        "join",
        "SELECT p.region, sum(c.amount) AS total FROM bronze.claims c JOIN ref.providers p ON c.provider = p.provider \
         WHERE c.member_id IS NOT NULL GROUP BY p.region",
        &overwrite("gold.by_region"),
        &[],
    )
    .await;
    golden("join", &rows(&lake, "gold.by_region").await);
}

#[tokio::test]
async fn expectations_warn_drop_quarantine_and_fail() {
    let (_dir, lake) = lake();
    seed(&lake).await;
    let checks = expectations(serde_json::json!([
        {"name": "known_member", "check": "member_id IS NOT NULL", "on_violation": "quarantine"},
        {"name": "positive_amount", "check": "amount > 0", "on_violation": "drop"},
        {"name": "small", "check": "amount < 90", "on_violation": "warn"},
    ]));
    let out = run(
        &lake,
        "silver",
        "SELECT * FROM bronze.claims",
        &sink(serde_json::json!({"table": "silver.claims", "mode": "overwrite"})),
        &checks,
    )
    .await;
    let counts: Vec<(String, &str, u64)> =
        out.expectations.iter().map(|c| (c.name.clone(), c.action, c.violations)).collect();
    assert_eq!(
        counts,
        vec![
            ("known_member".into(), "quarantine", 1),
            ("positive_amount".into(), "drop", 2),
            ("small".into(), "warn", 1)
        ]
    );
    assert_eq!(out.quarantined, 1);
    // Kept: amount > 0 and a member; the warned row (100.0) stays.
    let kept = rows(&lake, "silver.claims").await;
    assert_eq!(kept, vec!["1 | m1 | p1 | 100.0", "2 | m2 | p1 | 50.5", "5 | m5 | p3 | 70.0"]);
    assert_eq!(out.output.as_ref().map(|w| w.rows), Some(3));
    // The quarantined row carries the names of every check it failed.
    assert_eq!(rows(&lake, "silver.claims__quarantine").await, vec!["3 | NULL | p2 | 20.0 | [known_member]"]);

    // `fail`: the task fails as a data error and nothing is committed.
    let before = lake.version(&table("silver.strict")).await.expect("version");
    let fail = expectations(
        serde_json::json!([{"name": "positive_amount", "check": "amount > 0", "on_violation": "fail"}]),
    );
    let err = try_run(
        &lake,
        "strict",
        "SELECT * FROM bronze.claims",
        &sink(serde_json::json!({"table": "silver.strict"})),
        &fail,
        false,
    )
    .await
    .expect_err("a violated `fail` expectation fails the task");
    assert_eq!(err.class(), switchyard_config::FailureClass::Data);
    assert!(err.to_string().contains("positive_amount") && err.to_string().contains("2 row(s)"), "{err}");
    assert_eq!(lake.version(&table("silver.strict")).await.expect("version"), before);
}

#[tokio::test]
async fn merge_on_keys_updates_and_inserts() {
    let (_dir, lake) = lake();
    append(&lake, "bronze.members", claims(&[(1, Some("a"), "p1", 1.0), (2, Some("b"), "p1", 2.0)])).await;
    let merge = sink(serde_json::json!({"table": "silver.members", "mode": "merge", "keys": ["claim_id"]}));
    let sql = "SELECT claim_id, member_id, amount FROM bronze.members";
    run(&lake, "merge", sql, &merge, &[]).await;
    // A correction of id 2 and a new id 3 arrive.
    append(&lake, "bronze.members", claims(&[(2, Some("b2"), "p1", 20.0), (3, Some("c"), "p2", 3.0)])).await;
    let out = run(&lake, "merge", sql, &merge, &[]).await;
    assert_eq!(out.refresh.mode, RefreshMode::Incremental, "{:?}", out.refresh);
    assert_eq!(rows(&lake, "silver.members").await, vec!["1 | a | 1.0", "2 | b2 | 20.0", "3 | c | 3.0"]);
}

#[tokio::test]
async fn same_inputs_twice_commit_once() {
    let (_dir, lake) = lake();
    seed(&lake).await;
    let s = sink(serde_json::json!({"table": "silver.copy"}));
    let first = run(&lake, "copy", "SELECT * FROM bronze.claims", &s, &[]).await;
    let version = lake.version(&table("silver.copy")).await.expect("version");
    let second = run(&lake, "copy", "SELECT * FROM bronze.claims", &s, &[]).await;
    assert_eq!(first.refresh.mode, RefreshMode::Full);
    assert_eq!(second.refresh.mode, RefreshMode::Skipped, "{:?}", second.refresh);
    assert!(second.output.is_none());
    assert_eq!(lake.version(&table("silver.copy")).await.expect("version"), version);
    assert_eq!(rows(&lake, "silver.copy").await.len(), 6);
    // A full refresh of the same inputs is still the same result: nothing to commit either.
    let third = try_run(&lake, "copy", "SELECT * FROM bronze.claims", &s, &[], true).await.expect("run");
    assert_eq!(third.refresh.mode, RefreshMode::Skipped);
}

/// Appends in steps; after each, an incremental run and a full recomputation into another table
/// must hold the same rows — for a row-wise query with expectations and for a mergeable aggregate.
#[tokio::test]
async fn incremental_equals_full_over_a_sequence_of_appends() {
    let (_dir, lake) = lake();
    seed(&lake).await;
    let checks = expectations(serde_json::json!([
        {"name": "known_member", "check": "member_id IS NOT NULL", "on_violation": "quarantine"},
        {"name": "positive_amount", "check": "doubled > 0", "on_violation": "drop"},
    ]));
    let rowwise = "SELECT claim_id, member_id, provider, amount * 2 AS doubled FROM bronze.claims WHERE provider <> 'p9'";
    let aggregate = "SELECT provider, count(*) AS n, sum(amount) AS total, min(amount) AS low, max(amount) AS high \
                     FROM bronze.claims WHERE amount <> 13 GROUP BY provider";
    let s = |t: &str| sink(serde_json::json!({"table": t, "mode": "overwrite"}));
    let mut modes = Vec::new();
    for step in 0..4i64 {
        if step > 0 {
            let base = 100 * step;
            append(
                &lake,
                "bronze.claims",
                claims(&[
                    (base + 1, Some("mx"), "p1", 10.0 * step as f64),
                    (base + 2, None, "p4", 5.0),
                    (base + 3, Some("my"), "p9", -1.0),
                    (base + 4, Some("mz"), "p2", 13.0),
                ]),
            )
            .await;
        }
        let inc = run(&lake, "rowwise", rowwise, &s("silver.inc"), &checks).await;
        let agg = run(&lake, "aggregate", aggregate, &s("gold.inc"), &[]).await;
        modes.push((inc.refresh.mode, agg.refresh.mode));
        // The same queries under other task names: always a first (full) run into fresh tables.
        let full_rowwise = format!("{rowwise} -- step {step}");
        let full_aggregate = format!("{aggregate} -- step {step}");
        let f1 = run(
            &lake,
            &format!("rowwise_full_{step}"),
            &full_rowwise,
            &s(&format!("silver.full{step}")),
            &checks,
        )
        .await;
        let f2 = run(
            &lake,
            &format!("aggregate_full_{step}"),
            &full_aggregate,
            &s(&format!("gold.full{step}")),
            &[],
        )
        .await;
        assert_eq!((f1.refresh.mode, f2.refresh.mode), (RefreshMode::Full, RefreshMode::Full));
        assert_eq!(
            rows(&lake, "silver.inc").await,
            rows(&lake, &format!("silver.full{step}")).await,
            "row-wise, step {step}"
        );
        assert_eq!(
            rows(&lake, "gold.inc").await,
            rows(&lake, &format!("gold.full{step}")).await,
            "aggregate, step {step}"
        );
        assert_eq!(
            rows(&lake, "silver.inc__quarantine").await,
            rows(&lake, &format!("silver.full{step}__quarantine")).await,
            "quarantine, step {step}"
        );
    }
    assert_eq!(modes[0], (RefreshMode::Full, RefreshMode::Full));
    for m in &modes[1..] {
        assert_eq!(*m, (RefreshMode::Incremental, RefreshMode::Incremental));
    }
    // A join is always recomputed, and says why.
    append(&lake, "ref.providers", providers()).await;
    let join =
        "SELECT c.claim_id, p.region FROM bronze.claims c JOIN ref.providers p ON c.provider = p.provider";
    run(&lake, "join", join, &s("silver.join"), &[]).await;
    append(&lake, "bronze.claims", claims(&[(999, Some("m"), "p1", 1.0)])).await;
    let again = run(&lake, "join", join, &s("silver.join"), &[]).await;
    assert_eq!(again.refresh.mode, RefreshMode::Full);
    assert!(again.refresh.reason.contains("join"), "{}", again.refresh.reason);
}

#[tokio::test]
async fn urls_and_paths_are_refused_as_outside_the_lake() {
    let (_dir, lake) = lake();
    seed(&lake).await;
    let s = sink(serde_json::json!({"table": "silver.x"}));
    for sql in [
        r#"SELECT * FROM "https://127.0.0.2:8443/v1/claims""#,
        "SELECT * FROM 'https://api.partner.example.com/claims.json'",
        r#"SELECT * FROM "/etc/passwd""#,
    ] {
        let err = try_run(&lake, "x", sql, &s, &[], false).await.expect_err("refused");
        assert!(matches!(err, switchyard_transform::Error::OutsideLake { .. }), "{sql}: {err}");
        assert_eq!(err.class(), switchyard_config::FailureClass::Access);
    }
    assert_eq!(lake.version(&table("silver.x")).await.expect("version"), None);
}

/// A lake under a fresh prefix of the S3 server's test bucket (`SWITCHYARD_TEST_S3`, moto, started
/// by scripts/test).
fn s3_lake() -> Lake {
    let endpoint = std::env::var("SWITCHYARD_TEST_S3").expect("SWITCHYARD_TEST_S3: run through scripts/test");
    let root = format!("s3://switchyard-test/{}", switchyard_testkit::unique_name("transform-race-"));
    let options = std::collections::HashMap::from([
        ("aws_endpoint_url".to_owned(), endpoint),
        ("aws_region".to_owned(), "us-east-1".to_owned()),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_access_key_id".to_owned(), "testing".to_owned()),
        ("aws_secret_access_key".to_owned(), "testing".to_owned()),
    ]);
    Lake::with_options(&root, options, false).expect("s3 lake")
}

/// Transforms racing commits to one table on S3 (conditional PUT, no DynamoDB): four appending
/// tasks all commit and every row is there once; two overwriting tasks leave the output of one
/// of them whole (never a mix), and a loser that cannot retry fails as `data`, naming versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transforms_on_s3_lose_no_commit() {
    let lake = s3_lake();
    seed(&lake).await;
    let append_sink = sink(serde_json::json!({"table": "silver.race"}));
    let mut racers = Vec::new();
    for task in ["a", "b", "c", "d"] {
        let (lake, sink) = (lake.clone(), append_sink.clone());
        racers.push(tokio::spawn(async move {
            let sql = format!("SELECT claim_id, provider, '{task}' AS writer FROM bronze.claims");
            try_run(&lake, task, &sql, &sink, &[], false).await
        }));
    }
    for r in racers {
        let outcome = r.await.expect("join");
        assert!(outcome.is_ok(), "an append lost its race instead of retrying: {:?}", outcome.err());
    }
    let all = rows(&lake, "silver.race").await;
    assert_eq!(all.len(), 4 * 6, "{all:#?}");
    for task in ["a", "b", "c", "d"] {
        assert_eq!(all.iter().filter(|l| l.ends_with(&format!("| {task}"))).count(), 6, "{all:#?}");
    }

    let overwrite_sink = sink(serde_json::json!({"table": "gold.race", "mode": "overwrite"}));
    let mut racers = Vec::new();
    for task in ["x", "y"] {
        let (lake, sink) = (lake.clone(), overwrite_sink.clone());
        racers.push(tokio::spawn(async move {
            let sql = format!(
                "SELECT provider, count(*) AS n, '{task}' AS writer FROM bronze.claims GROUP BY provider"
            );
            try_run(&lake, task, &sql, &sink, &[], false).await
        }));
    }
    let mut won = 0;
    for r in racers {
        match r.await.expect("join") {
            Ok(_) => won += 1,
            Err(e) => {
                assert_eq!(e.class(), switchyard_config::FailureClass::Data, "{e}");
                assert!(e.to_string().contains("version"), "the loser names the versions: {e}");
            }
        }
    }
    assert!(won >= 1, "one of two racing overwrites commits");
    let gold = rows(&lake, "gold.race").await;
    assert_eq!(gold.len(), 3, "one whole output, not a mix: {gold:#?}");
    let writers: std::collections::BTreeSet<&str> =
        gold.iter().filter_map(|l| l.rsplit("| ").next()).collect();
    assert_eq!(writers.len(), 1, "{gold:#?}");
}
