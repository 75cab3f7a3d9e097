//! `engine: distributed` against a real Ballista cluster: `switchyard ballista-scheduler` and two
//! `switchyard executor` processes on 127.0.0.1, the lake on the S3 server (`SWITCHYARD_TEST_S3`,
//! moto, started by scripts/test). Nothing is shared between the test, the scheduler and the
//! executors but the bucket and the network.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::FailureClass;
use switchyard_config::manifest::{Expectation, SinkSpec};
use switchyard_config::value::TableName;
use switchyard_lake::arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::arrow::util::display::{ArrayFormatter, FormatOptions};
use switchyard_lake::{Lake, WriteMode};
use switchyard_transform::{Outcome, Request};

const SILVER: &str = "SELECT claim_id, member_id, trim(provider) AS provider, amount, service_date, lower(status) AS status \
                      FROM bronze.claims";
const GOLD: &str =
    "SELECT provider, count(*) AS claims, sum(amount) AS total_amount FROM silver.claims GROUP BY provider";

fn s3_options() -> HashMap<String, String> {
    let endpoint = std::env::var("SWITCHYARD_TEST_S3").expect("SWITCHYARD_TEST_S3: run through scripts/test");
    HashMap::from([
        ("aws_endpoint_url".to_owned(), endpoint),
        ("aws_region".to_owned(), "us-east-1".to_owned()),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_access_key_id".to_owned(), "testing".to_owned()),
        ("aws_secret_access_key".to_owned(), "testing".to_owned()),
    ])
}

fn s3_lake(prefix: &str) -> Lake {
    let root = format!("s3://switchyard-test/{}", switchyard_testkit::unique_name(prefix));
    Lake::with_options(&root, s3_options(), false).expect("s3 lake")
}

fn table(name: &str) -> TableName {
    name.parse().expect("table name")
}

/// The demo's silver expectations: quarantine, drop and warn.
fn silver_checks() -> Vec<Expectation> {
    serde_json::from_value(serde_json::json!([
        { "name": "valid_member", "check": "member_id IS NOT NULL", "on_violation": "quarantine" },
        { "name": "positive_amount", "check": "amount >= 0", "on_violation": "drop" },
        { "name": "known_status", "check": "status IN ('paid', 'pending', 'denied')", "on_violation": "warn" },
    ]))
    .expect("expectations")
}

fn sink(name: &str) -> SinkSpec {
    serde_json::from_value(serde_json::json!({ "table": name, "mode": "overwrite" })).expect("sink")
}

/// `n` demo-shaped claims in batches of 100,000 (one Parquet file each), with members missing,
/// negative amounts and odd statuses sprinkled in so every expectation acts.
async fn bronze(lake: &Lake, n: usize) {
    write_claims(lake, 0..n, WriteMode::Overwrite).await;
}

/// Claims with ids in `ids`, written to `bronze.claims` with `mode`.
async fn write_claims(lake: &Lake, ids: std::ops::Range<usize>, mode: WriteMode) {
    let n = ids.end;
    let providers = [" Acme Clinic", "Beta Health ", "Cedar Labs", "Delta Care", "Elm Hospital"];
    let statuses = ["PAID", "pending", "Denied", "unknown"];
    let mut batches = Vec::new();
    for start in ids.step_by(100_000) {
        let ids: Vec<usize> = (start..n.min(start + 100_000)).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "claim_id",
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("C{i:08}")))) as ArrayRef,
            ),
            (
                "member_id",
                Arc::new(StringArray::from_iter(
                    ids.iter().map(|i| (i % 97 != 0).then(|| format!("M{:05}", i % 5000))),
                )),
            ),
            ("provider", Arc::new(StringArray::from_iter_values(ids.iter().map(|i| providers[i % 5])))),
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|i| if i % 89 == 0 { -1.0 } else { (i % 1000) as f64 * 1.25 }),
                )),
            ),
            (
                "service_date",
                Arc::new(Date32Array::from_iter_values(ids.iter().map(|i| 19_700 + (i % 365) as i32))),
            ),
            ("status", Arc::new(StringArray::from_iter_values(ids.iter().map(|i| statuses[i % 4])))),
        ])
        .expect("batch");
        batches.push(batch);
    }
    lake.commit(&table("bronze.claims"), batches, mode, &[]).await.expect("bronze");
}

/// The table's rows as sorted text lines.
async fn rows(lake: &Lake, name: &str) -> Vec<String> {
    let batches = lake.read(&table(name), None).await.expect("read");
    let options = FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for b in &batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..b.num_rows() {
            lines.push(columns.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join(" | "));
        }
    }
    lines.sort();
    lines
}

/// FNV-1a over the sorted rows: the checksum the closing note quotes.
fn checksum(lines: &[String]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.iter().flat_map(|l| l.bytes().chain([b'\n'])) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

async fn transform(
    lake: &Lake,
    task: &str,
    sql: &str,
    sink: &SinkSpec,
    checks: &[Expectation],
    scheduler: Option<&str>,
) -> Result<Outcome, switchyard_transform::Error> {
    let versions = std::collections::BTreeMap::new();
    let request = Request {
        job: "claims",
        task,
        sql,
        sink,
        expectations: checks,
        full_refresh: false,
        input_versions: &versions,
        distributed: scheduler,
    };
    switchyard_transform::run(lake, &request).await
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scheduler and two executors, with settings naming the lake's bucket.
struct Cluster {
    scheduler: String,
    executors: Vec<(Process, std::path::PathBuf)>,
    _scheduler: Process,
    _dir: tempfile::TempDir,
}

fn settings(dir: &Path) -> std::path::PathBuf {
    let mut text = format!("[lake]\nroot = \"s3://switchyard-test/{}\"\n[lake.storage_options]\n", "cluster");
    for (k, v) in s3_options() {
        text.push_str(&format!("{k} = \"{v}\"\n"));
    }
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).expect("settings");
    path
}

fn wait_port(port: u16, what: &str, process: &mut Child) {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        assert!(Instant::now() < until, "{what} did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    fn start(executors: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = settings(dir.path());
        let bin = env!("CARGO_BIN_EXE_switchyard");
        let port = switchyard_testkit::free_port();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let mut scheduler = Command::new(bin)
            .args(["ballista-scheduler", "--listen", &format!("127.0.0.1:{port}"), "--executor-timeout", "6"])
            .arg("--settings")
            .arg(&settings)
            .stdout(log("scheduler.log"))
            .stderr(log("scheduler.err"))
            .spawn()
            .expect("scheduler");
        wait_port(port, "the scheduler", &mut scheduler);
        let url = format!("df://127.0.0.1:{port}");
        let mut started = Vec::new();
        for i in 0..executors {
            let (flight, grpc) = (switchyard_testkit::free_port(), switchyard_testkit::free_port());
            let work = dir.path().join(format!("executor-{i}"));
            let mut child = Command::new(bin)
                .args(["executor", "--scheduler", &url, "--listen", &format!("127.0.0.1:{flight}")])
                .args(["--grpc-port", &grpc.to_string(), "--slots", "2", "--heartbeat", "2"])
                .arg("--work-dir")
                .arg(&work)
                .arg("--settings")
                .arg(&settings)
                .stdout(log(&format!("executor-{i}.log")))
                .stderr(log(&format!("executor-{i}.err")))
                .stdin(Stdio::null())
                .spawn()
                .expect("executor");
            wait_port(flight, "an executor", &mut child);
            started.push((Process(child), work));
        }
        // Executors register on their first heartbeat.
        std::thread::sleep(Duration::from_secs(3));
        Cluster { scheduler: url, executors: started, _scheduler: Process(scheduler), _dir: dir }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self._dir.path()).expect("dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log" || e == "err") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {}\n", path.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The demo's silver (with its quarantine, drop and warn expectations) and gold, once on one
/// worker and once on the cluster over an identical bronze table: the same rows, the same
/// checksums, the same expectation counts; the run's details name the stages and executors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_and_gold_on_ballista_match_the_local_engine() {
    let cluster = Cluster::start(2);
    let (local, remote) = (s3_lake("dist-local-"), s3_lake("dist-remote-"));
    for lake in [&local, &remote] {
        bronze(lake, 200_000).await;
    }
    let checks = silver_checks();
    let mut outcomes = Vec::new();
    for (lake, scheduler) in [(&local, None), (&remote, Some(cluster.scheduler.as_str()))] {
        let silver = transform(lake, "silver_claims", SILVER, &sink("silver.claims"), &checks, scheduler)
            .await
            .unwrap_or_else(|e| panic!("silver ({scheduler:?}): {e}\n{}", cluster.logs()));
        let gold =
            transform(lake, "gold_provider_totals", GOLD, &sink("gold.provider_totals"), &[], scheduler)
                .await
                .unwrap_or_else(|e| panic!("gold ({scheduler:?}): {e}\n{}", cluster.logs()));
        outcomes.push((silver, gold));
    }
    for name in ["silver.claims", "silver.claims__quarantine", "gold.provider_totals"] {
        let (a, b) = (rows(&local, name).await, rows(&remote, name).await);
        assert!(!a.is_empty(), "{name} is empty");
        assert_eq!(a.len(), b.len(), "{name}: row counts differ");
        assert!(a == b, "{name}: rows differ");
        println!("{name}: {} rows, checksum {} on both engines", a.len(), checksum(&a));
    }
    let (local_silver, remote_silver) = (&outcomes[0].0, &outcomes[1].0);
    let counts =
        |o: &Outcome| o.expectations.iter().map(|c| (c.name.clone(), c.violations)).collect::<Vec<_>>();
    assert_eq!(counts(local_silver), counts(remote_silver));
    assert_eq!(local_silver.quarantined, remote_silver.quarantined);
    assert!(local_silver.distributed.is_none());
    for (silver, gold) in [&outcomes[1]] {
        for o in [silver, gold] {
            let d = o.distributed.as_ref().expect("distributed details");
            assert_eq!(d.scheduler, cluster.scheduler);
            assert!(d.job.is_some(), "{d:?}");
            assert!(!d.stages.is_empty(), "no stages recorded: {d:?}");
            assert!(!d.executors.is_empty(), "no executors recorded: {d:?}");
        }
        // Gold aggregates across partitions: at least a shuffle stage and a final stage.
        let d = gold.distributed.as_ref().expect("gold details");
        assert!(d.stages.len() >= 2, "gold ran as one stage: {d:?}");
        println!(
            "gold on the cluster: job {:?}, {} stages, executors {:?}",
            d.job,
            d.stages.len(),
            d.executors
        );
    }
}

/// Failures keep their class on the cluster: a query whose data fails on the executors (a cast
/// that cannot hold) is `data`, and a scheduler that cannot be reached is `connectivity` (retried
/// by default). Neither commits anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failures_are_classified_and_commit_nothing() {
    let cluster = Cluster::start(1);
    let lake = s3_lake("dist-fail-");
    bronze(&lake, 1_000).await;
    let out = sink("silver.broken");
    let bad = "SELECT CAST(provider AS INT) AS p, count(*) AS n FROM bronze.claims GROUP BY 1";
    let e =
        transform(&lake, "broken", bad, &out, &[], Some(&cluster.scheduler)).await.expect_err("a bad cast");
    assert_eq!(e.class(), FailureClass::Data, "{e}");
    println!("bad data on the cluster: {e}; hint: {}", e.hint());
    let closed = format!("df://127.0.0.1:{}", switchyard_testkit::free_port());
    let e = transform(&lake, "broken", "SELECT provider FROM bronze.claims", &out, &[], Some(&closed))
        .await
        .expect_err("no scheduler there");
    assert_eq!(e.class(), FailureClass::Connectivity, "{e}");
    assert!(e.hint().contains("retried"), "{}", e.hint());
    println!("no scheduler: {e}");
    assert_eq!(lake.version(&table("silver.broken")).await.expect("version"), None, "nothing committed");
}

/// Incremental refresh on the cluster: after bronze gains an append, a row-wise silver appending
/// to its table reads only the added files on the cluster, as on one worker, and both tables hold
/// the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_ships_only_the_added_files() {
    use switchyard_transform::RefreshMode;
    let cluster = Cluster::start(1);
    let (local, remote) = (s3_lake("dist-incr-local-"), s3_lake("dist-incr-remote-"));
    let sql = "SELECT claim_id, member_id, amount FROM bronze.claims WHERE amount >= 0";
    let out: SinkSpec =
        serde_json::from_value(serde_json::json!({ "table": "silver.paid", "mode": "append" }))
            .expect("sink");
    let mut modes = Vec::new();
    for (lake, scheduler) in [(&local, None), (&remote, Some(cluster.scheduler.as_str()))] {
        bronze(lake, 100_000).await;
        let first = transform(lake, "paid", sql, &out, &[], scheduler).await.expect("first run");
        write_claims(lake, 100_000..150_000, WriteMode::Append).await;
        let second = transform(lake, "paid", sql, &out, &[], scheduler)
            .await
            .unwrap_or_else(|e| panic!("second run ({scheduler:?}): {e}\n{}", cluster.logs()));
        modes.push((first.refresh.mode, second.refresh.mode, second.output.map(|w| w.rows)));
        if scheduler.is_some() {
            assert!(second.distributed.is_some_and(|d| !d.stages.is_empty()), "ran on the cluster");
        }
    }
    assert_eq!(modes[0], modes[1], "local vs distributed");
    assert_eq!((modes[1].0, modes[1].1), (RefreshMode::Full, RefreshMode::Incremental), "{modes:?}");
    let (a, b) = (rows(&local, "silver.paid").await, rows(&remote, "silver.paid").await);
    assert_eq!(a.len(), b.len());
    assert!(a == b, "rows differ");
    println!(
        "silver.paid: {} rows after an incremental run of {:?} rows, checksum {}",
        b.len(),
        modes[1].2,
        checksum(&b)
    );
}

/// One executor killed in the middle of a query: the run either still finishes (Ballista runs the
/// lost tasks again elsewhere) or fails as `connectivity`, which transforms retry by default; a
/// second attempt on the surviving executor finishes. Either way the output is committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_query_loses_and_duplicates_nothing() {
    let mut cluster = Cluster::start(2);
    let (lake, reference) = (s3_lake("dist-kill-"), s3_lake("dist-kill-ref-"));
    for l in [&lake, &reference] {
        bronze(l, 1_000_000).await;
    }
    let sql = "SELECT member_id, provider, count(*) AS claims, sum(amount) AS total, min(claim_id) AS first_claim \
               FROM bronze.claims GROUP BY member_id, provider";
    let out = sink("gold.member_costs");
    let expected = {
        transform(&reference, "member_costs", sql, &out, &[], None).await.expect("local reference run");
        rows(&reference, "gold.member_costs").await
    };
    let scheduler = cluster.scheduler.clone();
    let run = {
        let (lake, sql, out, scheduler) = (lake.clone(), sql.to_owned(), out.clone(), scheduler.clone());
        tokio::spawn(async move { transform(&lake, "member_costs", &sql, &out, &[], Some(&scheduler)).await })
    };
    // Kill the second executor once it has written shuffle output of this query.
    let (victim, work) = cluster.executors.pop().expect("two executors");
    let until = Instant::now() + Duration::from_secs(120);
    let mut victim = victim;
    loop {
        let has_files = walk(&work) > 0;
        if has_files || run.is_finished() {
            break;
        }
        assert!(Instant::now() < until, "the executor wrote nothing in 120 s\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mid_query = !run.is_finished();
    victim.0.kill().expect("kill the executor");
    let _ = victim.0.wait();
    assert!(mid_query, "the query finished before the executor had written anything; make the input larger");
    let first = match tokio::time::timeout(Duration::from_secs(240), run).await {
        Ok(joined) => joined.expect("join"),
        Err(_) => {
            panic!("the query neither finished nor failed within 240 s of the kill\n{}", cluster.logs())
        }
    };
    let attempts = match first {
        Ok(_) => 1,
        Err(e) => {
            assert_eq!(
                e.class(),
                FailureClass::Connectivity,
                "a lost executor is a connectivity failure: {e}"
            );
            println!("first attempt failed as connectivity (retried by default): {e}");
            let retry = transform(&lake, "member_costs", sql, &out, &[], Some(&scheduler));
            tokio::time::timeout(Duration::from_secs(240), retry)
                .await
                .unwrap_or_else(|_| panic!("the second attempt did not finish in 240 s\n{}", cluster.logs()))
                .unwrap_or_else(|e| panic!("second attempt: {e}\n{}", cluster.logs()));
            2
        }
    };
    let got = rows(&lake, "gold.member_costs").await;
    assert_eq!(got.len(), expected.len(), "row count after {attempts} attempt(s)");
    assert!(got == expected, "rows differ from the local engine's after {attempts} attempt(s)");
    // Committed once: the output's only version is its first.
    assert_eq!(lake.version(&table("gold.member_costs")).await.expect("version"), Some(0));
    println!("{} rows, checksum {}, {attempts} attempt(s), output version 0", got.len(), checksum(&got));
    drop(cluster);
}

/// Files under `dir`, recursively.
fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()
}
