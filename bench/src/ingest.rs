//! Ingestion into Delta through `switchyard_ingest::run`, next to what each source delivers alone,
//! so the ratio shows how much of the source's rate the pipeline keeps:
//!
//! - `kafka-ingest`: 1,000,000 JSON messages of ~200 bytes produced to a fresh topic on the local
//!   broker (`SWITCHYARD_TEST_KAFKA`, default 127.0.0.1:19092), read by plain rdkafka consumers
//!   (count only), then ingested in `triggered` mode into a fresh lake, several times; then the
//!   same messages replayed from memory through the Kafka source's decoder and commits (no
//!   broker), the ceiling of Switchyard's own part of the path.
//! - `pg-ingest`: 5,000,000 rows of 5 columns in a fresh database on `SWITCHYARD_TEST_POSTGRES`
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`), read by a binary `COPY` through
//!   tokio-postgres alone, then ingested without and with a `watermark`; the database is dropped.
//!
//! Both also time small appends (one row per commit) through the lake's writer, the ceiling that
//! makes large commits matter. The sources reach the broker and the server through a gateway
//! dialer whose policy allows exactly that address from egress IP 127.0.0.1, as on a node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_config::value::TableName;
use switchyard_gateway::dial::Dialer;
use switchyard_ingest::{Context, Limits, Summary, kafka};
use switchyard_lake::arrow::array::{ArrayRef, Int64Array};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Lake, Position, WriteMode};

use super::util::{Quiet, dialer, grouped, median, mib, size, unique};

/// End-to-end repetitions (each with a fresh lake and, for Kafka, a fresh consumer group): five,
/// so a median is of at least five runs, as the comparisons ask.
const RUNS: usize = 5;

const KAFKA_MESSAGES: u64 = 1_000_000;
const KAFKA_PARTITIONS: i32 = 4;
const KAFKA_MESSAGE_BYTES: usize = 200;
const KAFKA_FLUSH_ROWS: u64 = 250_000;
const KAFKA_TARGET: f64 = 300_000.0;

const PG_ROWS: u64 = 5_000_000;
const PG_FLUSH_ROWS: u64 = 500_000;
const PG_TARGET: f64 = 1_500_000.0;
const PG_QUERY: &str = "SELECT id, wm, name, amount, qty FROM t";

/// One-row commits timed for the small-append ceiling.
const SMALL_COMMITS: u64 = 60;

/// The machine the figures come from.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} cores, {model}", super::cores())
}

/// One end-to-end run into a fresh local lake: the summary, the wall time and the Parquet bytes.
async fn ingest(source: &Source, sink: &SinkSpec, dialer: &Dialer, task: &str) -> (Summary, Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::new(dir.path().to_str().expect("UTF-8 path")).expect("lake");
    let (summary, wall) = ingest_into(lake, source, sink, dialer, task).await;
    (summary, wall, size(dir.path()))
}

/// The same into a fresh prefix of the S3 server: the summary, the wall time, the bytes stored
/// and the requests the server logged meanwhile.
async fn ingest_s3(
    s3: &super::s3::S3,
    source: &Source,
    sink: &SinkSpec,
    dialer: &Dialer,
    task: &str,
) -> (Summary, Duration, u64, super::s3::Requests) {
    let root = s3.fresh_root(task);
    let lake = Lake::new(&root).expect("S3 lake");
    let before = s3.requests();
    let (summary, wall) = ingest_into(lake.clone(), source, sink, dialer, task).await;
    let requests = s3.requests().since(&before);
    (summary, wall, super::s3::stored_bytes(&lake).await, requests)
}

async fn ingest_into(
    lake: Lake,
    source: &Source,
    sink: &SinkSpec,
    dialer: &Dialer,
    task: &str,
) -> (Summary, Duration) {
    let ctx = Context {
        lake,
        dialer: dialer.clone(),
        job: "bench".into(),
        task: task.into(),
        run: 1,
        continuous: false,
    };
    let started = Instant::now();
    let summary = switchyard_ingest::run(source, sink, &ctx, Arc::new(Quiet)).await.expect("ingest");
    (summary, started.elapsed())
}

/// One-row appends, each its own commit with a position, through the lake's writer.
async fn small_commits_per_second() -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::new(dir.path().to_str().expect("UTF-8 path")).expect("lake");
    let table: TableName = "bench.small".parse().expect("table name");
    let mut writer = lake.writer(&table, WriteMode::Append).await.expect("writer");
    let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1i64])) as ArrayRef)])
        .expect("batch");
    let position = |version| [Position { app_id: "bench/small".into(), version }];
    // The first commit creates the table: not timed.
    writer.write(batch.clone()).await.expect("write");
    writer.commit(&position(0)).await.expect("commit");
    let started = Instant::now();
    for i in 1..=SMALL_COMMITS as i64 {
        writer.write(batch.clone()).await.expect("write");
        writer.commit(&position(i)).await.expect("commit");
    }
    SMALL_COMMITS as f64 / started.elapsed().as_secs_f64()
}

fn print_run(label: &str, i: usize, s: &Summary, wall: Duration, parquet: u64) {
    let secs = wall.as_secs_f64();
    println!(
        "  {label} run {}: {} rows, {} commits in {secs:.2} s → {:>9} rows/s, {:.2} commits/s, {:.0} MiB of Parquet",
        i + 1,
        grouped(s.rows as f64),
        s.commits,
        grouped(s.rows as f64 / secs),
        s.commits as f64 / secs,
        mib(parquet)
    );
}

// ---------------------------------------------------------------------------------------------
// Kafka

fn broker() -> String {
    std::env::var("SWITCHYARD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A JSON event of exactly `KAFKA_MESSAGE_BYTES` bytes (padded by its `note`).
fn message(i: u64) -> Vec<u8> {
    const KINDS: [&str; 4] = ["visit", "claim", "refund", "enquiry"];
    const TEXT: &str = "routine follow-up recorded by the front desk; nothing to escalate at this time, \
                        member informed by letter and by phone; see the attached notes for the history";
    let head = format!(
        r#"{{"id":{i},"member":"m{:06}","kind":"{}","amount":{}.{:02},"ts":"2024-05-{:02}T{:02}:{:02}:{:02}Z","channel":"web","note":""#,
        i % 250_000,
        KINDS[(i % 4) as usize],
        i % 10_000,
        i % 100,
        1 + i % 28,
        i % 24,
        i % 60,
        (i / 60) % 60,
    );
    let pad = KAFKA_MESSAGE_BYTES.saturating_sub(head.len() + 2);
    let start = (i as usize * 7) % (TEXT.len() - pad.min(TEXT.len()) + 1);
    let mut out = head.into_bytes();
    out.extend_from_slice(&TEXT.as_bytes()[start..start + pad.min(TEXT.len())]);
    out.extend_from_slice(b"\"}");
    out
}

pub(crate) fn kafka() {
    let broker = broker();
    println!(
        "Kafka → Delta: {} JSON messages of {} bytes over {KAFKA_PARTITIONS} partitions, broker {broker} (machine: {})",
        grouped(KAFKA_MESSAGES as f64),
        message(0).len(),
        machine()
    );
    let rt = super::runtime();
    let topic = unique("sy-bench-ingest");
    if let Err(e) = rt.block_on(create_topic(&broker, &topic)) {
        println!("  skipped: cannot create a topic on {broker} ({e})");
        return;
    }
    let produced = produce(&broker, &topic);
    println!(
        "  produce (rdkafka ThreadedProducer, acks=all, linger.ms=5): {:.2} s → {} msgs/s, {:.1} MiB/s",
        produced.as_secs_f64(),
        grouped(KAFKA_MESSAGES as f64 / produced.as_secs_f64()),
        mib(KAFKA_MESSAGES * KAFKA_MESSAGE_BYTES as u64) / produced.as_secs_f64()
    );

    let mut poll = Vec::new();
    let mut recv = Vec::new();
    for _ in 0..RUNS {
        let (n, t) = consume_base(&broker, &topic);
        if n != KAFKA_MESSAGES {
            println!("  broker alone (BaseConsumer::poll): only {n} messages arrived");
        }
        poll.push(n as f64 / t.as_secs_f64());
        let (n, t) = rt.block_on(consume_stream(&broker, &topic));
        if n != KAFKA_MESSAGES {
            println!("  broker alone (StreamConsumer::recv): only {n} messages arrived");
        }
        recv.push(n as f64 / t.as_secs_f64());
    }
    let list = |v: &[f64]| v.iter().map(|r| grouped(*r)).collect::<Vec<_>>().join(", ");
    println!(
        "  broker alone, BaseConsumer::poll, count only:      median {:>9} msgs/s  ({})",
        grouped(median(&poll)),
        list(&poll)
    );
    println!(
        "  broker alone, StreamConsumer::recv (the source's): median {:>9} msgs/s  ({})",
        grouped(median(&recv)),
        list(&recv)
    );

    let port: u16 = broker.rsplit(':').next().and_then(|p| p.parse().ok()).expect("broker port");
    let host = broker.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h).to_owned();
    let sink: SinkSpec = serde_json::from_value(serde_json::json!({
        "table": "bronze.events", "flush": {"rows": KAFKA_FLUSH_ROWS, "interval": "30s"},
    }))
    .expect("sink");
    let mut rates = Vec::new();
    let mut commit_rates = Vec::new();
    rt.block_on(async {
        let dialer = dialer(&host, port);
        for i in 0..RUNS {
            let source: Source = serde_json::from_value(serde_json::json!({"kafka": {
                "brokers": [broker.clone()], "topic": topic.clone(), "group": unique("sy-bench-group"), "format": "json",
            }}))
            .expect("source");
            let (s, wall, parquet) = ingest(&source, &sink, &dialer, "kafka").await;
            print_run("end to end", i, &s, wall, parquet);
            if s.rows != KAFKA_MESSAGES || s.dead_letters != 0 {
                println!("    (expected {KAFKA_MESSAGES} rows and no dead letters; got {:?})", s);
            }
            rates.push(s.rows as f64 / wall.as_secs_f64());
            commit_rates.push(s.commits as f64 / wall.as_secs_f64());
        }
    });
    let small = rt.block_on(small_commits_per_second());
    let e2e = median(&rates);
    println!(
        "  end to end (triggered, flush rows {}): median {} msgs/s = {:.2}× the broker alone (poll), {:.2}× (recv); {:.2}× the {} msgs/s target",
        grouped(KAFKA_FLUSH_ROWS as f64),
        grouped(e2e),
        e2e / median(&poll),
        e2e / median(&recv),
        e2e / KAFKA_TARGET,
        grouped(KAFKA_TARGET)
    );
    println!(
        "  commit cadence: median {:.2} commits/s; small one-row appends reach {small:.1} commits/s here ({:.0}% of that)",
        median(&commit_rates),
        100.0 * median(&commit_rates) / small
    );
    let ceiling = rt.block_on(without_broker());
    println!(
        "  without the broker (the same messages from memory: decode + encode + commit): median {} msgs/s = {:.2}× end to end",
        grouped(ceiling),
        ceiling / e2e
    );
    super::kdi::compare(&broker, &topic, KAFKA_MESSAGES, KAFKA_FLUSH_ROWS, RUNS);
    let _ = rt.block_on(delete_topic(&broker, &topic));
}

/// The consumer path's own ceiling: the benchmark's messages, partitioned as `produce` sends
/// them, replayed from memory through the Kafka source's decoder, commit points and Delta
/// commits (`switchyard_ingest::kafka::replay`), into a fresh local table per run.
async fn without_broker() -> f64 {
    let mut rates = Vec::new();
    for i in 0..RUNS {
        let messages: Vec<kafka::Message> = (0..KAFKA_MESSAGES)
            .map(|n| kafka::Message {
                partition: (n as i32) % KAFKA_PARTITIONS,
                offset: (n / KAFKA_PARTITIONS as u64) as i64,
                payload: message(n),
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(dir.path().to_str().expect("UTF-8 path")).expect("lake");
        let ctx = Context {
            lake,
            dialer: dialer("127.0.0.1", 9),
            job: "bench".into(),
            task: "replay".into(),
            run: 1,
            continuous: false,
        };
        let table: TableName = "bronze.events".parse().expect("table name");
        let limits = Limits { rows: KAFKA_FLUSH_ROWS, ..Limits::default() };
        let started = Instant::now();
        let s =
            kafka::replay("events", messages, &table, limits, &ctx, Arc::new(Quiet)).await.expect("replay");
        let wall = started.elapsed();
        print_run("without the broker", i, &s, wall, size(dir.path()));
        if s.rows != KAFKA_MESSAGES || s.dead_letters != 0 {
            println!("    (expected {KAFKA_MESSAGES} rows and no dead letters; got {:?})", s);
        }
        rates.push(s.rows as f64 / wall.as_secs_f64());
    }
    median(&rates)
}

async fn create_topic(broker: &str, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker).create().map_err(|e| e.to_string())?;
    let result = admin
        .create_topics(
            &[NewTopic::new(topic, KAFKA_PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in result {
        r.map_err(|(t, e)| format!("{t}: {e}"))?;
    }
    Ok(())
}

async fn delete_topic(broker: &str, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker).create().map_err(|e| e.to_string())?;
    admin.delete_topics(&[topic], &AdminOptions::new()).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Produces every message (round-robin over the partitions) and waits for all acknowledgements.
fn produce(broker: &str, topic: &str) -> Duration {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let payloads: Vec<Vec<u8>> = (0..KAFKA_MESSAGES).map(message).collect();
    let started = Instant::now();
    for (i, payload) in payloads.iter().enumerate() {
        let partition = (i as i32) % KAFKA_PARTITIONS;
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]).partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("every message acknowledged");
    started.elapsed()
}

/// The consumer settings the source uses, with a fresh group and every partition from the start.
fn consumer_config(broker: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("group.id", unique("sy-bench-alone"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("queued.min.messages", "200000")
        .set("fetch.wait.max.ms", "100");
    config
}

fn assignment(topic: &str) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in 0..KAFKA_PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    tpl
}

/// A plain blocking consumer counting messages: what the broker and librdkafka deliver.
fn consume_base(broker: &str, topic: &str) -> (u64, Duration) {
    let consumer: BaseConsumer = consumer_config(broker).create().expect("consumer");
    let started = Instant::now();
    consumer.assign(&assignment(topic)).expect("assign");
    let mut n = 0u64;
    let mut last = Instant::now();
    while n < KAFKA_MESSAGES && last.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                std::hint::black_box(m.payload_len());
                last = Instant::now();
            }
            Some(Err(e)) => {
                println!("  consumer error: {e}");
                break;
            }
            None => {}
        }
    }
    (n, started.elapsed())
}

/// The same through the async API the source uses (one `recv` per message).
async fn consume_stream(broker: &str, topic: &str) -> (u64, Duration) {
    let consumer: StreamConsumer = consumer_config(broker).create().expect("consumer");
    let started = Instant::now();
    consumer.assign(&assignment(topic)).expect("assign");
    let mut n = 0u64;
    while n < KAFKA_MESSAGES {
        match tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await {
            Ok(Ok(m)) => {
                n += 1;
                std::hint::black_box(m.payload_len());
            }
            Ok(Err(e)) => {
                println!("  consumer error: {e}");
                break;
            }
            Err(_) => break,
        }
    }
    (n, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

pub(crate) fn postgres() {
    let admin = std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!(
        "PostgreSQL → Delta: {} rows × 5 columns (bigint id, bigint watermark, text, double, int) (machine: {})",
        grouped(PG_ROWS as f64),
        machine()
    );
    let rt = super::runtime();
    let name = format!("sy_bench_ingest_{}", std::process::id());
    rt.block_on(pg_bench(&admin, &name));
    rt.block_on(async {
        if let Ok((client, conn)) = connect(&admin).await {
            let task = tokio::spawn(conn);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            drop(client);
            let _ = task.await;
        }
    });
}

type Connection = tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

async fn connect(url: &str) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
    let config: tokio_postgres::Config = url.parse()?;
    config.connect(tokio_postgres::NoTls).await
}

async fn pg_bench(admin: &str, name: &str) {
    let admin_cfg: tokio_postgres::Config = admin.parse().expect("SWITCHYARD_TEST_POSTGRES is a URL");
    let host = match admin_cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = admin_cfg.get_ports().first().copied().unwrap_or(5432);
    let client = match connect(admin).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            println!("  skipped: cannot reach {admin} ({e})");
            return;
        }
    };
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop");
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let mut cfg = admin_cfg.clone();
    cfg.dbname(name);
    let (db, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect to the new database");
    tokio::spawn(conn);

    let started = Instant::now();
    db.batch_execute(&format!(
        "CREATE TABLE t (id bigint NOT NULL, wm bigint NOT NULL, name text, amount double precision, qty int);
         INSERT INTO t SELECT g, g,
                CASE WHEN g % 100 = 0 THEN NULL ELSE 'member-' || (g % 100000) END,
                g * 0.25, (g % 1000)::int
           FROM generate_series(1, {PG_ROWS}) AS g"
    ))
    .await
    .expect("load");
    let load = started.elapsed();
    let started = Instant::now();
    db.batch_execute("CREATE INDEX ON t (wm)").await.expect("index");
    db.batch_execute("VACUUM ANALYZE t").await.expect("vacuum");
    let index = started.elapsed();
    println!(
        "  load: INSERT … SELECT generate_series {:.2} s ({} rows/s); index on the watermark + VACUUM ANALYZE {:.2} s",
        load.as_secs_f64(),
        grouped(PG_ROWS as f64 / load.as_secs_f64()),
        index.as_secs_f64()
    );

    // The queries exactly as the source sends them.
    let ordered = format!("SELECT * FROM ({PG_QUERY}) AS sy_src WHERE \"wm\" IS NOT NULL ORDER BY \"wm\"");
    let mut raw_plain = Vec::new();
    let mut raw_ordered = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let (b, t) = raw_copy(&db, PG_QUERY).await;
        bytes = b;
        raw_plain.push(t.as_secs_f64());
        let (_, t) = raw_copy(&db, &ordered).await;
        raw_ordered.push(t.as_secs_f64());
    }
    let (plain_s, ordered_s) = (median(&raw_plain), median(&raw_ordered));
    let raw_rate = PG_ROWS as f64 / plain_s;
    let raw_ordered_rate = PG_ROWS as f64 / ordered_s;
    println!(
        "  raw read, binary COPY through tokio-postgres alone: median {plain_s:.2} s → {} rows/s, {:.0} MiB/s ({:.0} MiB)",
        grouped(raw_rate),
        mib(bytes) / plain_s,
        mib(bytes)
    );
    println!(
        "  raw read of the watermark query (ORDER BY wm):      median {ordered_s:.2} s → {} rows/s",
        grouped(raw_ordered_rate)
    );

    let user = admin_cfg.get_user().unwrap_or("postgres").to_owned();
    let secrets = tempfile::tempdir().expect("tempdir");
    let password_file = admin_cfg.get_password().map(|p| {
        let path = secrets.path().join("pw");
        std::fs::write(&path, p).expect("password file");
        path
    });
    let dialer = dialer(&host, port);
    let sink: SinkSpec = serde_json::from_value(serde_json::json!({
        "table": "bronze.rows", "flush": {"rows": PG_FLUSH_ROWS, "interval": "60s"},
    }))
    .expect("sink");
    let s3 = super::s3::S3::from_env();
    let mut s3_results = Vec::new();
    let mut results = Vec::new();
    for (label, watermark, reference) in
        [("whole query", None, raw_rate), ("watermark wm", Some("wm"), raw_ordered_rate)]
    {
        let source: Source = serde_json::from_value(serde_json::json!({"postgres": {
            "host": host, "port": port, "database": name, "user": user,
            "password_file": password_file, "query": PG_QUERY, "watermark": watermark,
        }}))
        .expect("source");
        let mut rates = Vec::new();
        let mut commit_rates = Vec::new();
        let mut commits = 0;
        let mut s3_rates = Vec::new();
        for i in 0..RUNS {
            let (s, wall, parquet) = ingest(&source, &sink, &dialer, "pg").await;
            print_run(label, i, &s, wall, parquet);
            if s.rows != PG_ROWS {
                println!("    (expected {PG_ROWS} rows; got {s:?})");
            }
            rates.push(s.rows as f64 / wall.as_secs_f64());
            commit_rates.push(s.commits as f64 / wall.as_secs_f64());
            commits = s.commits;
            // Alternating with the local run, so both see the same machine.
            if let Some(s3) = &s3 {
                let (s, wall, stored, requests) = ingest_s3(s3, &source, &sink, &dialer, "pg").await;
                print_run(&format!("{label} on S3"), i, &s, wall, stored);
                println!("    S3 requests: {requests}");
                s3_rates.push(s.rows as f64 / wall.as_secs_f64());
            }
        }
        if !s3_rates.is_empty() {
            s3_results.push((label, median(&s3_rates), median(&rates)));
        }
        results.push((label, median(&rates), median(&commit_rates), commits, reference));
    }
    let small = small_commits_per_second().await;
    for (label, rate, commit_rate, commits, reference) in results {
        println!(
            "  end to end, {label:<12}: median {:>9} rows/s = {:.2}× the raw COPY read, {:.2}× the {} rows/s target; {commits} commits, {commit_rate:.2} commits/s",
            grouped(rate),
            rate / reference,
            rate / PG_TARGET,
            grouped(PG_TARGET)
        );
    }
    println!(
        "  flush rows {} (the whole query is one commit without a watermark); small one-row appends reach {small:.1} commits/s here",
        grouped(PG_FLUSH_ROWS as f64)
    );
    match &s3 {
        Some(s3) => {
            for (label, s3_rate, local_rate) in s3_results {
                println!(
                    "  lake on S3 ({}), {label:<12}: median {:>9} rows/s = {:.2}× the local-disk lake's {} rows/s (goal ≥ 0.7×)",
                    s3.endpoint,
                    grouped(s3_rate),
                    s3_rate / local_rate,
                    grouped(local_rate)
                );
            }
        }
        None => println!("  lake on S3: skipped ({})", super::s3::SKIPPED),
    }
}

/// `COPY (sql) TO STDOUT (FORMAT binary)`, every byte read and dropped.
async fn raw_copy(client: &tokio_postgres::Client, sql: &str) -> (u64, Duration) {
    let started = Instant::now();
    let stream = client.copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)")).await.expect("COPY");
    let mut stream = Box::pin(stream);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.expect("COPY data").len() as u64;
    }
    (bytes, started.elapsed())
}
