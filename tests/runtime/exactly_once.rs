//! Exactly once under kill -9: a real control plane (PostgreSQL state) and a real node agent
//! ingest ≥ 100,000 rows from PostgreSQL, Kafka and an mTLS HTTPS API; the node agent is killed
//! with SIGKILL five times at random moments while the task runs, a new agent of the same pool is
//! started each time, the control plane reclaims the lease and requeues the task, and the run
//! succeeds. The Delta table must then equal the source: the same row count, no duplicate ids and
//! the same order-independent checksum (sum of ids, sum of a hash of each row's values). Kafka
//! also carries a poison message that must land once in `<table>__dlq` while the rest of its
//! partition is ingested. The PostgreSQL and Kafka tests run twice: with the lake in the setup
//! directory and with it under a fresh prefix of a bucket on the S3 server (`SWITCHYARD_TEST_S3`:
//! moto, started by scripts/test). The commit points are read from the table's Delta log through
//! the lake's object store, so the same checks hold on both.
//!
//! Kill moments: for each kill a random row count is drawn between the rows committed at the
//! previous kill and its share of the first half of the source; once the table has committed that
//! many rows (so the new agent's attempt is running and has made progress), a random 0–400 ms
//! more pass (cut short by the next commit) before the SIGKILL, which lands anywhere in reading,
//! encoding or committing a chunk. A kill thus lets at most two commits past its target, so the
//! fifth still comes before the last commit (asserted). The control plane fails a task that loses
//! its node more than 5 times, so exactly 5 kills are made, and each must be seen as a lost
//! attempt.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchyard_config::settings::IdentityFiles;
use switchyard_config::value::TableName;
use switchyard_lake::Lake;
use switchyard_lake::arrow::array::{Array, ArrayRef, AsArray};
use switchyard_lake::arrow::datatypes::{DataType, Float64Type, Int16Type, Int32Type, Int64Type};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::deltalake::logstore::ObjectStoreRef;
use switchyard_lake::deltalake::{ObjectStoreError, Path as StorePath};
use switchyard_scheduler::engine::{AttemptState, RunState};
use switchyard_scheduler::views::RunView;

use crate::harness::*;
use switchyard_testkit::{Nginx, Pki};

/// SIGKILLs per test. The control plane fails a task that lost its node more than 5 times.
const KILLS: u64 = 5;
/// Short, so a killed agent's lease is reclaimed quickly; nodes heartbeat three times per period.
const LEASE_TTL: &str = "2s";
/// Rows per commit: many commit points for the kills to fall between.
const FLUSH_ROWS: u64 = 8_000;

// ---------------------------------------------------------------------------------------------
// Settings, processes and the kill loop.

/// A setup for one pool `ingest` whose nodes leave from `ip`: PostgreSQL state, the lake
/// `lake_settings` (a `[lake]` section) names, a short lease, the egress policy `egress` and
/// optionally a client identity.
fn configure(
    setup: &Setup,
    state: &str,
    lake_settings: &str,
    ip: &str,
    egress: &str,
    identity: Option<(&str, &IdentityFiles)>,
) {
    let (pool_identities, identities) = match identity {
        Some((name, files)) => (
            format!("identities = [\"{name}\"]\n"),
            format!(
                "\n[identities.{name}]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
                files.cert.display(),
                files.key.display(),
                files.ca.as_ref().unwrap().display()
            ),
        ),
        None => (String::new(), String::new()),
    };
    let settings = format!(
        r#"[control_plane]
listen = "127.0.0.1:{port}"
state = "{state}"
token_file = "{token}"
lease_ttl = "{LEASE_TTL}"

{lake_settings}
[[pools]]
name = "ingest"
egress_ips = ["{ip}"]
slots = 2
{pool_identities}
[serverless]
max_workers = 0
{identities}"#,
        port = setup.port,
        token = setup.path("admin.token").display(),
    );
    std::fs::write(setup.path("switchyard.toml"), settings).unwrap();
    std::fs::write(setup.path("egress.yaml"), egress).unwrap();
}

/// The lake in the setup directory: its `[lake]` settings and a reader.
fn local_lake(setup: &Setup) -> (String, Lake) {
    let root = setup.path("lake");
    let settings = format!("[lake]\nroot = \"{}\"\n", root.display());
    (settings, Lake::new(root.to_str().unwrap()).unwrap())
}

/// A lake under a prefix `<name>-<pid>-<nanos>` of the bucket `switchyard-test` on the S3 server
/// (`SWITCHYARD_TEST_S3`: moto, started by scripts/test): its `[lake]` settings and a reader.
fn s3_lake(name: &str) -> (String, Lake) {
    let root = format!("s3://switchyard-test/{}", switchyard_testkit::unique_name(&format!("{name}-")));
    let options = s3_test_options();
    let mut settings = format!("[lake]\nroot = \"{root}\"\n[lake.storage_options]\n");
    for (key, value) in &options {
        settings.push_str(&format!("{key} = \"{value}\"\n"));
    }
    let options = options.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    println!("lake on S3: {root}");
    (settings, Lake::with_options(&root, options, false).unwrap())
}

/// A table's Delta log, read through the lake's object store (a directory or S3 alike): its
/// commit files `_delta_log/NNNN.json` by version, each one's actions. A commit file appears
/// whole (renamed into place on a directory, written only if absent on S3) and never changes, so
/// each is fetched once however often the log is polled.
struct DeltaLog {
    store: ObjectStoreRef,
    dir: StorePath,
    versions: BTreeMap<u64, Vec<serde_json::Value>>,
}

impl DeltaLog {
    fn new(lake: &Lake, table: &TableName) -> DeltaLog {
        let location = lake.location(table);
        let relative =
            location.as_str().strip_prefix(lake.root().as_str()).expect("a table lives under the lake root");
        DeltaLog {
            store: lake.object_store().unwrap(),
            dir: StorePath::from(format!("{relative}_delta_log")),
            versions: BTreeMap::new(),
        }
    }

    /// The commits so far by version (none before the table exists), fetching the new ones.
    async fn versions(&mut self) -> &BTreeMap<u64, Vec<serde_json::Value>> {
        let objects = match self.store.list_with_delimiter(Some(&self.dir)).await {
            Ok(listed) => listed.objects,
            Err(ObjectStoreError::NotFound { .. }) => vec![],
            Err(e) => panic!("cannot list {}: {e}", self.dir),
        };
        for object in objects {
            let name = object.location.filename().unwrap_or_default();
            let Some(Ok(version)) = name.strip_suffix(".json").map(str::parse::<u64>) else { continue };
            if self.versions.contains_key(&version) {
                continue;
            }
            let bytes = match self.store.get_opts(&object.location, Default::default()).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            }
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", object.location));
            let actions = bytes
                .split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
                .collect();
            self.versions.insert(version, actions);
        }
        &self.versions
    }

    /// Versions and rows committed to the table so far (`numRecords` of each added file): cheap
    /// enough to poll, and exact once the writer is dead.
    async fn committed(&mut self) -> (u64, u64) {
        let versions = self.versions().await;
        let mut rows = 0;
        for action in versions.values().flatten() {
            assert!(action.get("remove").is_none(), "an append-only ingest removed a file: {action}");
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value =
                    serde_json::from_str(add["stats"].as_str().expect("add actions carry stats")).unwrap();
                rows += stats["numRecords"].as_u64().expect("stats carry numRecords");
            }
        }
        (versions.len() as u64, rows)
    }
}

/// Starts the control plane and a node of pool `ingest` on `ip`, submits `job`, SIGKILLs the node
/// agent [`KILLS`] times while the task runs (starting a new one each time), and waits for the run
/// to succeed. Returns the run.
async fn ingest_with_kills(
    setup: &Setup,
    ip: &str,
    job: &Path,
    lake: &Lake,
    table: &TableName,
    total: u64,
) -> RunView {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    println!("{table}: {total} source rows, kill seed {seed}");
    let _cp = setup.serve();
    let url = setup.url();
    let mut node = setup.node(&url, "ingest", ip);
    let client = setup.client(&url);
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.nodes().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the node agent did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut log = DeltaLog::new(lake, table);
    let started = Instant::now();
    let run = setup.submit(&client, job).await;
    // Kill targets fall in the first half of the rows: the rest is left for the overshoot of
    // each kill (up to two commits) and for the last attempt.
    let ceiling = total / 2;
    // Rows committed when each kill landed.
    let mut kills: Vec<u64> = Vec::new();
    let mut last_rows = 0;
    for i in 0..KILLS {
        // A random point in this kill's share of the rows still below the ceiling.
        let share = (ceiling.saturating_sub(last_rows) / (KILLS - i)).max(1);
        let target = last_rows + rng.random_range(1..=share);
        let delay_ms = rng.random_range(0..=400);
        let wait_until = Instant::now() + Duration::from_secs(120);
        let mut checked = Instant::now();
        let (mut versions, mut rows) = log.committed().await;
        while rows < target {
            if Instant::now() > wait_until {
                let view = client.run(run).await.unwrap();
                let nodes = client.nodes().await.unwrap();
                let alive = node.child.try_wait().map(|s| s.is_none()).unwrap_or(false);
                panic!(
                    "no progress to {target} rows (kill {}); the node agent is {}; nodes {nodes:#?}; run {view:#?}",
                    i + 1,
                    if alive { "running" } else { "gone" }
                );
            }
            if checked.elapsed() > Duration::from_secs(1) {
                checked = Instant::now();
                let view = client.run(run).await.unwrap();
                assert_eq!(view.state, RunState::Running, "the run ended before kill {}: {view:#?}", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            (versions, rows) = log.committed().await;
        }
        // Then a random delay, cut short by the next commit (bounding the progress).
        let until = Instant::now() + Duration::from_millis(delay_ms);
        while Instant::now() < until && log.committed().await.0 == versions {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.kill9();
        let (_, rows) = log.committed().await;
        println!(
            "  kill {} at {:.2}s: {rows} rows committed (waited for {target}, then up to {delay_ms} ms)",
            i + 1,
            started.elapsed().as_secs_f64(),
        );
        assert!(rows < total, "kill {} came after the last commit ({rows} rows)", i + 1);
        last_rows = rows;
        kills.push(rows);
        node = setup.node(&url, "ingest", ip);
    }
    let view = wait_finished(&client, run, Duration::from_secs(240)).await;
    let elapsed = started.elapsed();
    for task in &view.tasks {
        for a in &task.attempts {
            let took = a.finished_at.map_or(0, |f| f - a.started_at);
            println!(
                "  attempt {}: {:?} after {:.2}s on {}: {}",
                a.number,
                a.state,
                took as f64 / 1000.0,
                a.node_id,
                a.message.as_deref().unwrap_or("")
            );
        }
    }
    assert_eq!(view.state, RunState::Succeeded, "{view:#?}");
    let attempts = &view.tasks[0].attempts;
    let lost = attempts.iter().filter(|a| a.state == AttemptState::Lost).count() as u64;
    assert_eq!(lost, KILLS, "every kill hit a running attempt: {attempts:#?}");
    assert_eq!(attempts.last().unwrap().state, AttemptState::Succeeded);
    assert_eq!(
        attempts.len() as u64,
        KILLS + 1,
        "no attempt failed on what a killed one left: {attempts:#?}"
    );
    assert_attempts_never_overlap(&view);
    println!(
        "{table}: {} kills at rows {kills:?}; run succeeded {:.1}s after submission, in {} attempts",
        kills.len(),
        elapsed.as_secs_f64(),
        attempts.len()
    );
    view
}

/// The table's Delta log, one line per version: rows added and the positions (`txn`) recorded.
/// Printed when a check fails.
async fn history(lake: &Lake, table: &TableName) -> String {
    let mut out = format!("{table} history:");
    let mut log = DeltaLog::new(lake, table);
    for (version, actions) in log.versions().await {
        let (mut rows, mut txns) = (0, Vec::new());
        for action in actions {
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value =
                    serde_json::from_str(add["stats"].as_str().unwrap_or("{}")).unwrap();
                rows += stats["numRecords"].as_u64().unwrap_or(0);
            }
            if let Some(txn) = action.get("txn") {
                txns.push(format!("{}={}", txn["appId"].as_str().unwrap_or("?"), txn["version"]));
            }
        }
        out.push_str(&format!("\n  v{version}: +{rows} rows {}", txns.join(" ")));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Checksums.

/// The table equals the source: row count, no duplicates, checksums. Shows the table's history
/// when not.
async fn assert_equals_source(lake: &Lake, table: &TableName, got: &Checksum, expected: &Checksum) {
    println!("{table}: {got:?}");
    if got != expected {
        println!("{}", history(lake, table).await);
    }
    assert_eq!(got.rows, expected.rows, "{table}: row count");
    assert_eq!(got.distinct_ids, got.rows, "{table}: duplicates");
    assert_eq!(got, expected, "{table}: the table differs from the source");
}

/// Row count, distinct ids, and order-independent sums of the ids and of a hash of each row.
#[derive(Debug, PartialEq, Eq)]
struct Checksum {
    rows: u64,
    distinct_ids: u64,
    id_sum: i64,
    row_hashes: u64,
}

impl Checksum {
    /// Rows as (id, the row's values rendered by [`cell`] and joined with `|`).
    fn of(rows: impl IntoIterator<Item = (i64, String)>) -> Checksum {
        let (mut n, mut id_sum, mut row_hashes, mut ids) = (0, 0i64, 0u64, HashSet::new());
        for (id, row) in rows {
            n += 1;
            id_sum += id;
            let mut h = std::hash::DefaultHasher::new();
            row.hash(&mut h);
            row_hashes = row_hashes.wrapping_add(h.finish());
            ids.insert(id);
        }
        Checksum { rows: n, distinct_ids: ids.len() as u64, id_sum, row_hashes }
    }

    /// The table's rows, `columns` in this order, `id` being the first.
    fn table(batches: &[RecordBatch], columns: &[&str]) -> Checksum {
        Checksum::of(table_rows(batches, columns))
    }
}

fn table_rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let arrays: Vec<&ArrayRef> = columns
            .iter()
            .map(|c| b.column_by_name(c).unwrap_or_else(|| panic!("no column {c} in {:?}", b.schema())))
            .collect();
        let ids = arrays[0].as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let row: Vec<String> = arrays.iter().map(|a| cell(a, i)).collect();
            out.push((ids.value(i), row.join("|")));
        }
    }
    out
}

/// One value as the source side renders it: integers and booleans plainly, floats and strings
/// with `{:?}`, NULL as `null`.
fn cell(a: &ArrayRef, i: usize) -> String {
    if a.is_null(i) {
        return "null".into();
    }
    match a.data_type() {
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Float64 => format!("{:?}", a.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Utf8 => format!("{:?}", a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => format!("{:?}", a.as_string::<i64>().value(i)),
        DataType::Utf8View => format!("{:?}", a.as_string_view().value(i)),
        other => panic!("no rendering for {other}"),
    }
}

fn text(s: Option<&str>) -> String {
    s.map_or_else(|| "null".into(), |s| format!("{s:?}"))
}

fn table(name: &str) -> TableName {
    name.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.

/// user, password, host, port of a `postgres://user[:password]@host[:port]/db` URL.
fn pg_parts(url: &str) -> (String, Option<String>, String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, rest) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
        None => (auth.to_owned(), None),
    };
    let hostport = rest.split(['/', '?']).next().unwrap();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap()),
        None => (hostport.to_owned(), 5432),
    };
    (user, password, host, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_postgres_watermark_ingest_survives_kill_9_of_the_node_agent() {
    let setup = Setup::new("sqlite://unused", LEASE_TTL);
    let (lake_settings, lake) = local_lake(&setup);
    postgres_ingest_with_kills(&setup, &lake_settings, &lake).await;
}

/// The same with the lake on the S3 server (moto, started by scripts/test): the node agents
/// commit to the bucket, the commit points the kills fall between are read from there, and so
/// is the table compared with the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_postgres_ingest_on_s3_survives_kill_9() {
    let setup = Setup::new("sqlite://unused", LEASE_TTL);
    let (lake_settings, lake) = s3_lake("eo-pg");
    postgres_ingest_with_kills(&setup, &lake_settings, &lake).await;
}

/// 120,000 rows from PostgreSQL into `bronze.big` on the lake `lake_settings` names (`lake`
/// reads it), with [`KILLS`] kills of the node agent; then the table equals the source and its
/// recorded watermark is the last one. The state is a fresh PostgreSQL database: [`configure`]
/// rewrites `setup`'s settings.
async fn postgres_ingest_with_kills(setup: &Setup, lake_settings: &str, lake: &Lake) {
    const ROWS: i64 = 120_000;
    let state = PgDb::create().await;
    let source = PgDb::create().await;
    let database = source.url.rsplit('/').next().unwrap().to_owned();
    let pool = sqlx::PgPool::connect(&source.url).await.unwrap();
    // Five columns; the watermark repeats (3 rows per value), so commit points must fall between
    // equal values; some names are NULL.
    sqlx::query(
        "CREATE TABLE big (id bigint PRIMARY KEY, wm bigint NOT NULL, name text, amount double precision, qty int)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO big SELECT g, g / 3, CASE WHEN g % 1000 = 0 THEN NULL ELSE 'row ' || g END, g * 0.25, (g % 100)::int \
         FROM generate_series(1, {ROWS}) g"
    ))
    .execute(&pool)
    .await
    .unwrap();

    let (user, password, host, port) = pg_parts(&source.url);
    // PostgreSQL here trusts 127.0.0.1 only (pg_hba.conf): the pool's egress IP is 127.0.0.1.
    let ip = "127.0.0.1";
    configure(
        setup,
        &state.url,
        lake_settings,
        ip,
        &format!(
            "destinations:\n  - {{ name: source-db, host: {host}, ports: [{port}], egress_ips: [{ip}] }}\n"
        ),
        None,
    );
    let password_file = password.map(|p| {
        let path = setup.path("source.pw");
        std::fs::write(&path, format!("{p}\n")).unwrap();
        format!("      password_file: {}\n", path.display())
    });
    let job = setup.write_job(
        "pg.yaml",
        &format!(
            "job: pg_exactly_once\ntasks:\n  - name: load_big\n    source:\n      kind: postgres\n      host: {host}\n      \
             port: {port}\n      database: {database}\n      user: {user}\n{}      \
             query: SELECT id, wm, name, amount, qty FROM big\n      watermark: wm\n    \
             sink: {{ table: bronze.big, flush: {{ rows: {FLUSH_ROWS} }} }}\n    \
             retries: {{ max: 20, backoff: 100ms }}\n    timeout: 5m\n",
            password_file.unwrap_or_default()
        ),
    );
    let t = table("bronze.big");
    ingest_with_kills(setup, ip, &job, lake, &t, ROWS as u64).await;

    let expected: Vec<(i64, i64, Option<String>, f64, i32)> =
        sqlx::query_as("SELECT id, wm, name, amount, qty FROM big").fetch_all(&pool).await.unwrap();
    let expected = Checksum::of(expected.into_iter().map(|(id, wm, name, amount, qty)| {
        (id, format!("{id}|{wm}|{}|{amount:?}|{qty}", text(name.as_deref())))
    }));
    pool.close().await;
    let batches = lake.read(&t, None).await.unwrap();
    let got = Checksum::table(&batches, &["id", "wm", "name", "amount", "qty"]);
    assert_eq!(expected.rows, ROWS as u64);
    assert_equals_source(lake, &t, &got, &expected).await;
    assert_eq!(lake.position(&t, "switchyard/pg_exactly_once/load_big/wm").await.unwrap(), Some(ROWS / 3));
}

// ---------------------------------------------------------------------------------------------
// Kafka.

fn broker() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

async fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker()).create().expect("admin client");
    let result = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("cannot create topic on {} (scripts/test starts tansu): {e}", broker()));
    for r in result {
        r.unwrap();
    }
}

/// Produces `messages` (partition, payload) in order, waiting until all are acknowledged.
fn produce(topic: &str, messages: impl Iterator<Item = (i32, Vec<u8>)>) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        // One request in flight per partition: a retried batch cannot overtake the next.
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .unwrap();
    for (partition, payload) in messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]).partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Event `id`: (partition, JSON payload, the row as the table renders it without its offset).
fn event(id: i64) -> (i32, Vec<u8>, String) {
    let partition = (id % 3) as i32;
    let amount = (id % 1000) as f64 + 0.5;
    let member = format!("m{}", id % 97);
    let json = format!(r#"{{"id": {id}, "kind": "visit", "amount": {amount:?}, "member": "{member}"}}"#);
    (partition, json.into_bytes(), format!("{id}|\"visit\"|{amount:?}|{member:?}|{partition}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_kafka_ingest_survives_kill_9_and_sends_the_poison_message_to_dlq() {
    let setup = Setup::new("sqlite://unused", LEASE_TTL);
    let (lake_settings, lake) = local_lake(&setup);
    kafka_ingest_with_kills(&setup, &lake_settings, &lake).await;
}

/// The same with the lake on the S3 server (moto, started by scripts/test), the dead letter
/// table included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_kafka_ingest_on_s3_survives_kill_9() {
    let setup = Setup::new("sqlite://unused", LEASE_TTL);
    let (lake_settings, lake) = s3_lake("eo-kafka");
    kafka_ingest_with_kills(&setup, &lake_settings, &lake).await;
}

/// 120,000 events and a poison message from a fresh 3-partition topic into `bronze.events` on
/// the lake `lake_settings` names (`lake` reads it), with [`KILLS`] kills of the node agent; then
/// the table equals the source, each partition's offsets are there exactly once but for the
/// poison message's, and that one is once in `bronze.events__dlq`. The state is a fresh
/// PostgreSQL database: [`configure`] rewrites `setup`'s settings.
async fn kafka_ingest_with_kills(setup: &Setup, lake_settings: &str, lake: &Lake) {
    const EVENTS: i64 = 120_000;
    /// The poison message follows this event, in partition 1.
    const POISON_AFTER: i64 = 60_001;
    const POISON: &[u8] = b"{broken";
    let topic = switchyard_testkit::unique_name("sy-exactly-once-");
    create_topic(&topic, 3).await;
    let produced = Instant::now();
    produce(
        &topic,
        (1..=EVENTS).flat_map(|id| {
            let (partition, payload, _) = event(id);
            let poison = (id == POISON_AFTER).then(|| (1, POISON.to_vec()));
            std::iter::once((partition, payload)).chain(poison)
        }),
    );
    println!("produced {} messages to {topic} in {:.1}s", EVENTS + 1, produced.elapsed().as_secs_f64());
    // Partition 1 holds ids 1, 4, 7, …: the poison message's offset is the count of those up to
    // POISON_AFTER.
    let poison_offset = (POISON_AFTER - 1) / 3 + 1;
    assert_eq!(POISON_AFTER % 3, 1);

    let state = PgDb::create().await;
    let broker = broker();
    let (host, port) = broker.rsplit_once(':').unwrap();
    let ip = "127.0.0.2";
    configure(
        setup,
        &state.url,
        lake_settings,
        ip,
        &format!(
            "destinations:\n  - {{ name: broker, host: {host}, ports: [{port}], egress_ips: [{ip}] }}\n"
        ),
        None,
    );
    let job = setup.write_job(
        "kafka.yaml",
        &format!(
            "job: kafka_exactly_once\ntasks:\n  - name: consume\n    source: {{ kind: kafka, brokers: [\"{broker}\"], topic: {topic}, \
             group: {topic}-g, format: json }}\n    sink: {{ table: bronze.events, flush: {{ rows: {FLUSH_ROWS}, interval: 1s }} }}\n    \
             retries: {{ max: 20, backoff: 100ms }}\n    timeout: 5m\n"
        ),
    );
    let t = table("bronze.events");
    ingest_with_kills(setup, ip, &job, lake, &t, EVENTS as u64).await;

    let batches = lake.read(&t, None).await.unwrap();
    let got = Checksum::table(&batches, &["id", "kind", "amount", "member", "_kafka_partition"]);
    let expected = Checksum::of((1..=EVENTS).map(|id| (id, event(id).2)));
    // No gaps: each partition's offsets are 0..end, but for the poison message's.
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for b in &batches {
        let p = b.column_by_name("_kafka_partition").unwrap().as_primitive::<Int32Type>();
        let o = b.column_by_name("_kafka_offset").unwrap().as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            offsets.entry(p.value(i)).or_default().push(o.value(i));
        }
    }
    let mut wrong = Vec::new();
    for partition in 0..3 {
        let got = offsets.entry(partition).or_default();
        got.sort_unstable();
        let count = (1..=EVENTS).filter(|id| (id % 3) as i32 == partition).count() as i64;
        let expected: Vec<i64> = if partition == 1 {
            (0..=count).filter(|o| *o != poison_offset).collect()
        } else {
            (0..count).collect()
        };
        if *got != expected {
            let seen: HashSet<i64> = got.iter().copied().collect();
            let missing: Vec<i64> = expected.iter().copied().filter(|o| !seen.contains(o)).take(20).collect();
            let twice: Vec<i64> = got.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(20).collect();
            wrong.push(format!("partition {partition}: missing offsets {missing:?}, duplicated {twice:?}"));
        }
    }
    if !wrong.is_empty() {
        println!("{}", history(lake, &t).await);
        println!("{}", history(lake, &table("bronze.events__dlq")).await);
    }
    assert!(wrong.is_empty(), "offsets are not each partition's 0..end exactly once: {wrong:#?}");
    assert_equals_source(lake, &t, &got, &expected).await;

    // The poison message, once, with where it was.
    let dlq = lake.read(&table("bronze.events__dlq"), None).await.unwrap();
    let rows: usize = dlq.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1, "one dead letter");
    let b = dlq.iter().find(|b| b.num_rows() == 1).unwrap();
    assert_eq!(b.column_by_name("topic").unwrap().as_string::<i32>().value(0), topic);
    assert_eq!(b.column_by_name("partition").unwrap().as_primitive::<Int32Type>().value(0), 1);
    assert_eq!(b.column_by_name("offset").unwrap().as_primitive::<Int64Type>().value(0), poison_offset);
    assert_eq!(b.column_by_name("payload").unwrap().as_binary::<i32>().value(0), POISON);
    println!(
        "bronze.events__dlq: partition 1 offset {poison_offset}: {}",
        b.column_by_name("error").unwrap().as_string::<i32>().value(0)
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS.

/// Item `id` of the partner API: its JSON, and the row as the table renders it.
fn item(id: u64) -> (serde_json::Value, String) {
    let name = format!("item-{id}");
    let score = id as f64 / 4.0;
    let active = id.is_multiple_of(3);
    let ts = format!("2024-05-01T12:{:02}:{:02}Z", id / 60 % 60, id % 60);
    let day = format!("2024-05-{:02}", id % 28 + 1);
    let json =
        serde_json::json!({ "id": id, "name": name, "score": score, "active": active, "ts": ts, "day": day });
    (json, format!("{id}|{name:?}|{score:?}|{active}|{ts:?}|{day:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_https_cursor_pages_over_mtls_survive_kill_9() {
    const PAGES: u64 = 120;
    const PER_PAGE: u64 = 1000;
    const TOTAL: u64 = PAGES * PER_PAGE;
    let pki = Pki::new();
    let www = pki.path("nginx/www/items");
    std::fs::create_dir_all(&www).unwrap();
    for p in 1..=PAGES {
        let data: Vec<serde_json::Value> =
            ((p - 1) * PER_PAGE + 1..=p * PER_PAGE).map(|id| item(id).0).collect();
        let mut page = serde_json::json!({ "data": data });
        if p < PAGES {
            page["next"] = serde_json::json!((p + 1).to_string());
        }
        std::fs::write(www.join(format!("{p}.json")), serde_json::to_vec(&page).unwrap()).unwrap();
    }
    let nginx = Nginx::start(
        &pki,
        switchyard_testkit::free_port(),
        "map $arg_cursor $cursor_page { \"\" 1; default $arg_cursor; }",
        "location = /api/items { try_files /items/$cursor_page.json =404; }",
    );
    let partner = pki.leaf("partner", &["partner"], None);

    let state = PgDb::create().await;
    let setup = Setup::new(&state.url, LEASE_TTL);
    let (lake_settings, lake) = local_lake(&setup);
    // nginx allows source 127.0.0.2 only, with the partner's client certificate.
    let ip = "127.0.0.2";
    configure(
        &setup,
        &state.url,
        &lake_settings,
        ip,
        &format!(
            "destinations:\n  - {{ name: partner-api, host: localhost, ports: [{}], egress_ips: [{ip}], identity: partner }}\n",
            nginx.port
        ),
        Some(("partner", &partner)),
    );
    let job = setup.write_job(
        "https.yaml",
        &format!(
            "job: https_exactly_once\ntasks:\n  - name: fetch_items\n    source:\n      kind: https\n      \
             url: https://localhost:{}/api/items\n      identity: partner\n      records: data\n      \
             pagination: {{ cursor_field: next }}\n    sink: {{ table: bronze.items, flush: {{ rows: {FLUSH_ROWS} }} }}\n    \
             retries: {{ max: 20, backoff: 100ms }}\n    timeout: 5m\n",
            nginx.port
        ),
    );
    let t = table("bronze.items");
    let view = ingest_with_kills(&setup, ip, &job, &lake, &t, TOTAL).await;

    let batches = lake.read(&t, None).await.unwrap();
    let got = Checksum::table(&batches, &["id", "name", "score", "active", "ts", "day"]);
    let expected = Checksum::of((1..=TOTAL).map(|id| (id as i64, item(id).1)));
    assert_equals_source(&lake, &t, &got, &expected).await;
    // Every request was answered (mTLS from 127.0.0.2): nothing was refused along the way (499:
    // the client went away mid-request, i.e. was killed).
    let accesses = nginx.accesses();
    assert!(accesses.iter().all(|(status, _, _)| matches!(status, 200 | 499)), "{accesses:?}");
    println!(
        "nginx served {} page requests for {PAGES} pages over {} attempts",
        accesses.len(),
        view.tasks[0].attempts.len()
    );
}
