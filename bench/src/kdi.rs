//! `kafka-ingest` next to kafka-delta-ingest (KDI, the delta-io/kafka-delta-ingest daemon, a
//! binary built from its public source by whoever runs the benchmark, named by
//! `SWITCHYARD_BENCH_KDI`; nothing of KDI is kept in this repository): the same
//! topic on the same broker, each run from the start of its own fresh consumer group into a fresh
//! local Delta table, both in their own processes so that each peak RSS is its own. Rounds
//! alternate Switchyard (this binary's `kafka-child`) and KDI so both see the same machine.
//!
//! How KDI is driven, and why:
//!
//! - KDI only appends to a table that exists (it opens it and builds its writer from the table's
//!   schema), so version 0 is written here by hand, exactly like KDI's own test fixtures
//!   (`protocol` 1/2, a `metaData` with the schema): the columns and types Switchyard infers for
//!   the benchmark's messages (arrow-json: integers `long`, decimals `double`, the rest `string`)
//!   plus the two identity columns Switchyard adds, filled by KDI's well-known transforms
//!   (`-t '_kafka_partition: kafka.partition' -t '_kafka_offset: kafka.offset'`).
//! - KDI has no "stop when caught up" that keeps its data: `-e/--ends_at_latest_offsets` stops a
//!   partition when it *reads* the message whose offset equals the high watermark seen at start
//!   (on Kafka, the first message produced after the start; never, on an idle topic), and exits
//!   without flushing what it buffered (its own test `end_at_initial_offsets` shows it). On tansu
//!   0.6, which reports the end as the last record batch's base + 1, it would stop inside the
//!   last batch. So KDI runs without `-e`; the bench polls `_delta_log` until the committed
//!   `add` actions hold all the messages, reads KDI's VmHWM, then kills it (what is committed is
//!   durable; KDI has no graceful shutdown to wait for anyway).
//! - KDI commits a file when its Parquet buffer reaches `-b` bytes or when `-l` seconds passed
//!   since the last file, and not when it is caught up: the last file waits up to `-l` seconds,
//!   which the figures include. `-l` defaults to 1 s here (KDI's default is 300 s), `-b` and `-m`
//!   stay KDI's defaults (128 MiB, 5,000); `SWITCHYARD_BENCH_KDI_LATENCY`, `…_MIN_BYTES` and
//!   `…_BATCH` change them. A long `-l` also costs KDI CPU: it copies its whole in-memory Parquet
//!   buffer before each record batch (`DataArrowWriter::write_record_batch`), quadratic in the
//!   file size.
//! - KDI gets the same two librdkafka settings the Switchyard source sets
//!   (`queued.min.messages=200000`, `fetch.wait.max.ms=100`, through `-K`); nothing specific to
//!   tansu is needed by either. KDI subscribes (group join, rebalance callbacks) where Switchyard
//!   assigns every partition itself.
//! - The time of a run is from spawning the process to seeing every message committed (KDI) or
//!   to the process exiting after its last commit (Switchyard), polled every 25 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_ingest::Context;
use switchyard_lake::Lake;

use super::util::{Quiet, dialer, grouped, median, mib, size, unique};

/// KDI's app id: its `txn` actions are `{APP_ID}-{partition}` with the last offset committed.
const APP_ID: &str = "kdi-bench";

/// The columns of the bench's messages as Switchyard types them, then its identity columns.
const SCHEMA: &[(&str, &str)] = &[
    ("id", "long"),
    ("member", "string"),
    ("kind", "string"),
    ("amount", "double"),
    ("ts", "string"),
    ("channel", "string"),
    ("note", "string"),
    ("_kafka_partition", "integer"),
    ("_kafka_offset", "long"),
];

/// The Switchyard child's table, as in `ingest.rs`.
const TABLE: &str = "bronze.events";

/// How often `_delta_log` is read while KDI runs.
const POLL: Duration = Duration::from_millis(25);

/// Environment a user may have set that KDI's clap arguments would read (`.env(…)`): removed so
/// that only the flags given here count.
const KDI_ENV: &[&str] = &[
    "KAFKA_TOPIC",
    "TABLE_LOCATION",
    "KAFKA_BROKERS",
    "KAFKA_CONSUMER_GROUP",
    "APP_ID",
    "KAFKA_SEEK_OFFSETS",
    "KAFKA_AUTO_OFFSET_RESET",
    "ALLOWED_LATENCY",
    "MAX_MESSAGES_PER_BATCH",
    "MIN_BYTES_PER_FILE",
    "TRANSFORMS",
    "DLQ_TABLE_LOCATION",
    "DLQ_TRANSFORMS",
    "WRITE_CHECKPOINTS",
    "STATSD_ENDPOINT",
    "JSON_REGISTRY",
    "AVRO_REGISTRY",
    "ENDS_AT_LATEST_OFFSETS",
    "DECOMPRESS_GZIP",
    "KAFKA_DELTA_INGEST_SCRAM_JSON",
    "KAFKA_DELTA_INGEST_CERT",
    "KAFKA_DELTA_INGEST_KEY",
    "KAFKA_DELTA_INGEST_CA",
];

/// KDI's flush settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `-l`: seconds from the last file to the next, whatever its size.
    pub(crate) allowed_latency_s: u64,
    /// `-m`: messages per record batch (a Parquet row group).
    pub(crate) max_messages_per_batch: u64,
    /// `-b`: buffered Parquet bytes (uncompressed row-group sizes) that complete a file early.
    pub(crate) min_bytes_per_file: u64,
}

impl Settings {
    /// 1 s latency and KDI's defaults otherwise, each changed by its `SWITCHYARD_BENCH_KDI_*`.
    pub(crate) fn from_env() -> Settings {
        let var = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
        };
        Settings {
            allowed_latency_s: var("SWITCHYARD_BENCH_KDI_LATENCY", 1).max(1),
            max_messages_per_batch: var("SWITCHYARD_BENCH_KDI_BATCH", 5_000).max(1),
            min_bytes_per_file: var("SWITCHYARD_BENCH_KDI_MIN_BYTES", 134_217_728).max(1),
        }
    }
}

/// One KDI run.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) binary: &'a Path,
    /// `host:port`.
    pub(crate) broker: &'a str,
    pub(crate) topic: &'a str,
    /// Every message of the topic: the run is done when the table holds this many rows.
    pub(crate) messages: u64,
    /// A directory that does not exist yet or is empty; the table is created in it.
    pub(crate) table: &'a Path,
    /// A consumer group nobody used.
    pub(crate) group: &'a str,
    pub(crate) settings: &'a Settings,
    /// Where KDI's stdout and stderr go.
    pub(crate) log: &'a Path,
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    pub(crate) rows: u64,
    /// Delta versions the ingester committed (the table's creation not counted).
    pub(crate) commits: u64,
    pub(crate) seconds: f64,
    pub(crate) peak_rss_bytes: u64,
    /// Bytes under the table's directory (Parquet and log).
    pub(crate) stored_bytes: u64,
    /// KDI: the last offset committed per partition (its `txn` versions).
    pub(crate) offsets: BTreeMap<i32, i64>,
}

impl Figures {
    pub(crate) fn per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.rows as f64 / self.seconds } else { 0.0 }
    }
}

/// The KDI binary: `SWITCHYARD_BENCH_KDI`.
pub(crate) fn binary() -> Result<PathBuf, String> {
    let Some(path) = std::env::var_os("SWITCHYARD_BENCH_KDI") else {
        return Err(
            "SWITCHYARD_BENCH_KDI is not set: build kafka-delta-ingest from github.com/delta-io/kafka-delta-ingest and set it to the binary's path".into()
        );
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("SWITCHYARD_BENCH_KDI={} is not a file", path.display()));
    }
    Ok(path)
}

/// What the builder noted beside the binary in `<binary>.source` (commit, features, rustc), if
/// anything: printed with the figures so they say which KDI they compare with.
pub(crate) fn build_label(binary: &Path) -> String {
    let mut note = binary.as_os_str().to_owned();
    note.push(".source");
    std::fs::read_to_string(PathBuf::from(note))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "source unknown".into())
}

/// Creates the table KDI appends to: version 0 with the schema and nothing else.
pub(crate) fn create_table(dir: &Path) -> Result<(), String> {
    let log = dir.join("_delta_log");
    std::fs::create_dir_all(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let fields: Vec<serde_json::Value> = SCHEMA
        .iter()
        .map(|(name, ty)| serde_json::json!({"name": name, "type": ty, "nullable": true, "metadata": {}}))
        .collect();
    let schema = serde_json::json!({"type": "struct", "fields": fields}).to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = now.as_millis() as u64;
    let commit_info = serde_json::json!({"commitInfo": {
        "timestamp": millis, "operation": "CREATE TABLE", "isBlindAppend": true,
        "operationParameters": {"isManaged": "false", "description": null, "partitionBy": "[]", "properties": "{}"},
    }});
    let protocol = serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}});
    let metadata = serde_json::json!({"metaData": {
        "id": table_id(now), "format": {"provider": "parquet", "options": {}}, "schemaString": schema,
        "partitionColumns": [], "configuration": {}, "createdTime": millis,
    }});
    let path = log.join(format!("{:020}.json", 0));
    std::fs::write(&path, format!("{commit_info}\n{protocol}\n{metadata}\n"))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// A UUID-shaped id (Delta does not check its version bits).
fn table_id(now: Duration) -> String {
    let h = format!("{:032x}", now.as_nanos() ^ (u128::from(std::process::id()) << 96));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Kills the child when dropped, so a failed or panicking bench leaves no KDI behind.
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Creates the table, runs KDI until the table holds every message, then stops it.
pub(crate) fn run(r: &Run<'_>) -> Result<Figures, String> {
    create_table(r.table)?;
    let table = r.table.to_str().ok_or("the table path is not UTF-8")?;
    let log = File::create(r.log).map_err(|e| format!("create {}: {e}", r.log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let s = r.settings;
    let mut command = Command::new(r.binary);
    command
        .args(["ingest", r.topic, table])
        .args(["-k", r.broker, "-g", r.group, "-a", APP_ID, "-o", "earliest"])
        .args(["-l", &s.allowed_latency_s.to_string()])
        .args(["-m", &s.max_messages_per_batch.to_string()])
        .args(["-b", &s.min_bytes_per_file.to_string()])
        .args(["-t", "_kafka_partition: kafka.partition", "-t", "_kafka_offset: kafka.offset"])
        .args(["-K", "queued.min.messages=200000", "-K", "fetch.wait.max.ms=100"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    for name in KDI_ENV {
        command.env_remove(name);
    }
    let started = Instant::now();
    let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", r.binary.display()))?;
    let mut child = Reaped(child);
    let pid = child.0.id();
    // The first commit also waits for the group join; later ones come every `-l` seconds.
    let stall = Duration::from_secs(120).max(Duration::from_secs(10 * s.allowed_latency_s));
    let mut log_state = LogState::default();
    let mut last_progress = Instant::now();
    loop {
        if log_state.read(r.table)? {
            last_progress = Instant::now();
        }
        if log_state.rows >= r.messages {
            break;
        }
        if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "KDI exited ({status}) after committing {} of {} rows; {}",
                log_state.rows,
                r.messages,
                tail(r.log)
            ));
        }
        if last_progress.elapsed() > stall {
            return Err(format!(
                "KDI committed {} of {} rows and nothing for {} s; {}",
                log_state.rows,
                r.messages,
                stall.as_secs(),
                tail(r.log)
            ));
        }
        std::thread::sleep(POLL);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_bytes = super::transform::peak_kib(pid) * 1024;
    drop(child);
    Ok(Figures {
        rows: log_state.rows,
        commits: log_state.versions.len() as u64,
        seconds,
        peak_rss_bytes,
        stored_bytes: size(r.table),
        offsets: log_state.offsets,
    })
}

/// What the table's commits said so far.
#[derive(Debug, Default)]
struct LogState {
    /// Versions after 0 already read.
    versions: BTreeSet<u64>,
    /// `numRecords` of every `add`.
    rows: u64,
    offsets: BTreeMap<i32, i64>,
}

impl LogState {
    /// Reads the commits not read yet; whether there was one. A commit file is complete once
    /// visible: delta-rs writes a temporary file and renames it into place.
    fn read(&mut self, table: &Path) -> Result<bool, String> {
        let dir = table.join("_delta_log");
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        let mut new: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let digits = name.strip_suffix(".json")?;
                if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None; // a temporary file, a checkpoint, `_last_checkpoint`
                }
                digits.parse::<u64>().ok()
            })
            .filter(|v| *v > 0 && !self.versions.contains(v))
            .collect();
        new.sort_unstable();
        for version in &new {
            let path = dir.join(format!("{version:020}.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let action: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some(stats) = action["add"]["stats"].as_str() {
                    let stats: serde_json::Value = serde_json::from_str(stats).unwrap_or_default();
                    self.rows += stats["numRecords"].as_u64().unwrap_or(0);
                }
                let txn = &action["txn"];
                let partition: Option<i32> = txn["appId"]
                    .as_str()
                    .and_then(|id| id.strip_prefix(APP_ID)?.strip_prefix('-')?.parse().ok());
                if let (Some(partition), Some(offset)) = (partition, txn["version"].as_i64()) {
                    self.offsets.insert(partition, offset);
                }
            }
            self.versions.insert(*version);
        }
        Ok(!new.is_empty())
    }
}

/// The last lines of a log, for an error.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    format!("last lines of {}:\n      {}", path.display(), lines[start..].join("\n      "))
}

// ---------------------------------------------------------------------------------------------
// Switchyard in its own process

/// `kafka-child BROKER TOPIC GROUP LAKE_ROOT FLUSH_ROWS`: one `triggered` ingestion into a fresh
/// lake, as `kafka-ingest` runs it in-process, then one JSON line with its figures and peak RSS.
pub(crate) fn child(args: &[String]) {
    let [broker, topic, group, root, flush_rows] = args else {
        eprintln!("usage: kafka-child BROKER TOPIC GROUP LAKE_ROOT FLUSH_ROWS");
        std::process::exit(2);
    };
    let flush_rows: u64 = flush_rows.parse().expect("flush rows");
    let (host, port) = broker.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("broker port");
    let source: Source = serde_json::from_value(serde_json::json!({"kafka": {
        "brokers": [broker], "topic": topic, "group": group, "format": "json",
    }}))
    .expect("source");
    let sink: SinkSpec = serde_json::from_value(serde_json::json!({
        "table": TABLE, "flush": {"rows": flush_rows, "interval": "30s"},
    }))
    .expect("sink");
    let rt = super::runtime();
    let started = Instant::now();
    let result = rt.block_on(async {
        let ctx = Context {
            lake: Lake::new(root).expect("lake"),
            dialer: dialer(host, port),
            job: "bench".into(),
            task: "kafka".into(),
            run: 1,
            continuous: false,
        };
        switchyard_ingest::run(&source, &sink, &ctx, Arc::new(Quiet)).await
    });
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(s) => println!(
            "{}",
            serde_json::json!({
                "seconds": seconds, "rows": s.rows, "commits": s.commits,
                "dead_letters": s.dead_letters, "peak_kib": super::transform::peak_kib(std::process::id()),
            })
        ),
        Err(e) => {
            eprintln!("ingest failed: {e}");
            std::process::exit(1);
        }
    }
}

/// One Switchyard run in a child process into a fresh lake, timed from the spawn.
fn switchyard(broker: &str, topic: &str, group: &str, flush_rows: u64) -> Result<(Figures, f64), String> {
    let lake = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = lake.path().to_str().ok_or("the lake path is not UTF-8")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let output = Command::new(exe)
        .args(["kafka-child", broker, topic, group, root, &flush_rows.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("exited ({}): {}", output.status, stderr.lines().last().unwrap_or("")));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().ok_or("no output")?;
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let figures = Figures {
        rows: v["rows"].as_u64().unwrap_or(0),
        commits: v["commits"].as_u64().unwrap_or(0),
        seconds,
        peak_rss_bytes: v["peak_kib"].as_u64().unwrap_or(0) * 1024,
        stored_bytes: size(lake.path()),
        offsets: BTreeMap::new(),
    };
    Ok((figures, v["seconds"].as_f64().unwrap_or(0.0)))
}

// ---------------------------------------------------------------------------------------------
// The comparison

fn print_run(label: &str, i: usize, f: &Figures, extra: &str) {
    println!(
        "  {label} run {}: {} rows, {} commits in {:.2} s → {:>9} msgs/s, peak RSS {:.0} MiB, {:.0} MiB stored{extra}",
        i + 1,
        grouped(f.rows as f64),
        f.commits,
        f.seconds,
        grouped(f.per_second()),
        mib(f.peak_rss_bytes),
        mib(f.stored_bytes)
    );
}

/// `rounds` rounds of one Switchyard run (own process) then one KDI run on `topic`, which holds
/// exactly `messages` messages; prints each run, the medians and the ratios. Without a KDI
/// binary, says why and runs nothing.
pub(crate) fn compare(broker: &str, topic: &str, messages: u64, flush_rows: u64, rounds: usize) {
    let binary = match binary() {
        Ok(b) => b,
        Err(e) => {
            println!("  vs kafka-delta-ingest: skipped ({e})");
            return;
        }
    };
    let settings = Settings::from_env();
    println!(
        "  vs kafka-delta-ingest ({}): `ingest` -l {} -m {} -b {}, transforms for _kafka_partition/_kafka_offset; each in its own process, alternating, a fresh group and local table per run",
        build_label(&binary),
        settings.allowed_latency_s,
        settings.max_messages_per_batch,
        settings.min_bytes_per_file
    );
    let logs = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench-kdi")))
        .unwrap_or_else(|| PathBuf::from("target/bench-kdi"));
    let _ = std::fs::create_dir_all(&logs);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut kdi_failed = false;
    for i in 0..rounds {
        match switchyard(broker, topic, &unique("sy-bench-child"), flush_rows) {
            Ok((f, inner)) => {
                print_run("switchyard (own process)", i, &f, &format!(" ({inner:.2} s inside)"));
                if f.rows != messages {
                    println!("    (expected {messages} rows)");
                }
                ours.push(f);
            }
            Err(e) => println!("  switchyard (own process) run {}: failed: {e}", i + 1),
        }
        if kdi_failed {
            continue;
        }
        let table = match tempfile::tempdir() {
            Ok(t) => t,
            Err(e) => {
                println!("  kafka-delta-ingest run {}: no temporary directory: {e}", i + 1);
                continue;
            }
        };
        let log = logs.join(format!("kdi-run-{}.log", i + 1));
        let group = unique("kdi-bench-group");
        let spec = Run {
            binary: &binary,
            broker,
            topic,
            messages,
            table: table.path(),
            group: &group,
            settings: &settings,
            log: &log,
        };
        match run(&spec) {
            Ok(f) => {
                let offsets = f.offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(" ");
                print_run("kafka-delta-ingest", i, &f, &format!("; last offsets {offsets}"));
                if f.rows != messages {
                    println!("    (expected {messages} rows: more means duplicates)");
                }
                theirs.push(f);
            }
            Err(e) => {
                println!("  kafka-delta-ingest run {}: failed: {e}", i + 1);
                kdi_failed = true;
            }
        }
    }
    let rate = |v: &[Figures]| median(&v.iter().map(Figures::per_second).collect::<Vec<_>>());
    let peak = |v: &[Figures]| median(&v.iter().map(|f| f.peak_rss_bytes as f64).collect::<Vec<_>>());
    let commits = |v: &[Figures]| median(&v.iter().map(|f| f.commits as f64).collect::<Vec<_>>());
    if ours.is_empty() || theirs.is_empty() {
        println!("  vs kafka-delta-ingest: no ratio (a side has no successful run)");
        return;
    }
    println!(
        "  switchyard: median {} msgs/s, {:.0} commits, peak RSS {:.0} MiB; kafka-delta-ingest: median {} msgs/s, {:.0} commits, peak RSS {:.0} MiB",
        grouped(rate(&ours)),
        commits(&ours),
        peak(&ours) / (1024.0 * 1024.0),
        grouped(rate(&theirs)),
        commits(&theirs),
        peak(&theirs) / (1024.0 * 1024.0)
    );
    println!(
        "  ratio switchyard/kafka-delta-ingest: {:.2}× msgs/s, {:.2}× peak RSS",
        rate(&ours) / rate(&theirs),
        peak(&ours) / peak(&theirs)
    );
}
