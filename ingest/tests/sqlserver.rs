//! The SQL Server source, end to end through `switchyard_ingest::run`: gateway dialer → tiberius →
//! Arrow → Delta, with watermarks and failure classes.
//!
//! SQL Server itself cannot run on this machine. These tests exercise tiberius (the driver the
//! source uses) and our describe step, type mapping, chunking, watermarks and error classification
//! against a minimal TDS 7.4 server written here (`tds/`), which answers the way SQL Server
//! documents. Real SQL Server is not exercised, and neither is TLS: the fixture is on loopback and
//! declares no encryption, the one case where the source accepts a server without TLS.

mod tds;

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType,
};
use arrow::temporal_conversions::{date32_to_datetime, timestamp_us_to_datetime};
use serde_json::json;
use switchyard_config::FailureClass;
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_config::value::TableName;
use switchyard_gateway::audit::{AuditEvent, AuditSink, Verdict};
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_ingest::{Context, Error, Progress, Summary};
use switchyard_lake::Lake;
use tds::{Fixture, Reply, Table, Ty, Val};
use tokio::sync::mpsc::UnboundedReceiver;

const PASSWORD: &str = "s3cret-Pa55";
const CLAIMS: &str = "SELECT * FROM dbo.claims";
const EVENTS: &str = "SELECT seq, n FROM dbo.events";
const READINGS: &str = "SELECT * FROM dbo.readings";
const JOB: &str = "claims_daily";
const TASK: &str = "ingest_claims";

/// Commits and row counts as the node agent would see them.
#[derive(Debug, Default)]
struct Seen {
    commits: Mutex<Vec<(u64, u64)>>,
    rows: Mutex<Vec<u64>>,
}

impl Progress for Seen {
    fn rows(&self, total: u64, _: f64) {
        self.rows.lock().unwrap().push(total);
    }

    fn committed(&self, _: &TableName, version: u64, rows: u64) {
        self.commits.lock().unwrap().push((version, rows));
    }
}

/// A fixture, a lake and a gateway dialer allowed to reach the fixture.
struct Env {
    dir: tempfile::TempDir,
    lake: Lake,
    fixture: Fixture,
    dialer: Dialer,
    audit: UnboundedReceiver<AuditEvent>,
}

impl Env {
    async fn new() -> Env {
        let fixture = Fixture::start(PASSWORD).await;
        let port = fixture.port;
        Env::with(fixture, &[port]).await
    }

    /// With an egress policy that allows 127.0.0.1 on `ports` only.
    async fn with(fixture: Fixture, ports: &[u16]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().join("lake").to_str().unwrap()).unwrap();
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        let (dialer, audit) = dialer(ports);
        Env { dir, lake, fixture, dialer, audit }
    }

    fn source(&self, query: &str, watermark: Option<&str>) -> Source {
        self.source_as(query, watermark, &self.dir.path().join("password"))
    }

    fn source_as(&self, query: &str, watermark: Option<&str>, password_file: &Path) -> Source {
        serde_json::from_value(json!({ "sqlserver": {
            "host": "127.0.0.1",
            "port": self.fixture.port,
            "database": "claims",
            "user": "ingest",
            "password_file": password_file,
            "query": query,
            "watermark": watermark,
        }}))
        .unwrap()
    }

    async fn run(&self, source: &Source, sink: &SinkSpec, run: i64) -> (Result<Summary, Error>, Arc<Seen>) {
        let ctx = Context {
            lake: self.lake.clone(),
            dialer: self.dialer.clone(),
            job: JOB.into(),
            task: TASK.into(),
            run,
            continuous: false,
        };
        let seen = Arc::new(Seen::default());
        let result = switchyard_ingest::run(source, sink, &ctx, seen.clone()).await;
        (result, seen)
    }

    async fn table(&self, name: &str) -> Option<RecordBatch> {
        let batches = self.lake.read(&table(name), None).await.unwrap();
        let schema = batches.first()?.schema();
        Some(arrow::compute::concat_batches(&schema, &batches).unwrap())
    }

    async fn watermark(&self, name: &str) -> Option<i64> {
        self.lake.position(&table(name), &format!("switchyard/{JOB}/{TASK}/wm")).await.unwrap()
    }

    fn audit(&mut self) -> Vec<Verdict> {
        std::iter::from_fn(|| self.audit.try_recv().ok()).map(|e| e.verdict).collect()
    }
}

fn dialer(ports: &[u16]) -> (Dialer, UnboundedReceiver<AuditEvent>) {
    let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        "destinations:\n  - {{ name: sql, host: 127.0.0.1, ports: [{ports}], egress_ips: [127.0.0.1] }}\n"
    );
    let (policy, diagnostics) =
        switchyard_config::parse_policy(Path::new("egress.yaml"), yaml.as_bytes(), None);
    assert!(policy.clean, "{diagnostics:?}");
    let (audit, events) = AuditSink::channel();
    let enforcer = Enforcer::new(policy.policy, "127.0.0.1".parse().unwrap(), Mode::Enforce);
    (Dialer::new(enforcer, Arc::new(Identities::default()), audit, DialerConfig::default()), events)
}

fn table(name: &str) -> TableName {
    name.parse().unwrap()
}

fn sink(name: &str, mode: &str, flush_rows: Option<u64>) -> SinkSpec {
    let flush = flush_rows.map(|rows| json!({ "rows": rows }));
    serde_json::from_value(json!({ "table": name, "mode": mode, "flush": flush })).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The claims table: every supported type, NULLs in every fifth row.

fn claims_columns() -> Vec<(String, Ty)> {
    [
        ("id", Ty::BigInt),
        ("tiny", Ty::TinyInt),
        ("small", Ty::SmallInt),
        ("qty", Ty::Int),
        ("flag", Ty::Bit),
        ("amount", Ty::Decimal(18, 4)),
        ("big", Ty::Decimal(38, 6)),
        ("fee", Ty::Numeric(9, 2)),
        ("ratio", Ty::Float),
        ("score", Ty::Real),
        ("price", Ty::Money),
        ("code", Ty::Char(4)),
        ("name", Ty::VarChar(40)),
        ("label", Ty::NVarChar(60)),
        ("note", Ty::NVarCharMax),
        ("born", Ty::Date),
        ("created", Ty::DateTime),
        ("seen", Ty::SmallDateTime),
        ("updated", Ty::DateTime2(7)),
        ("at_local", Ty::DateTimeOffset(7)),
        ("uid", Ty::Guid),
        ("payload", Ty::VarBinary(64)),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect()
}

const HNS_PER_DAY: i64 = 864_000_000_000;

fn claim(id: i64) -> Vec<Val> {
    let mut row = vec![Val::Int(id)];
    if id % 5 == 0 {
        row.resize(claims_columns().len(), Val::Null);
        return row;
    }
    row.extend([
        Val::Int(id % 256),
        Val::Int(-(id % 30_000)),
        Val::Int(id * 1000 - 7),
        Val::Bit(id % 2 == 1),
        Val::Dec(i128::from(id) * 12_345 * if id % 3 == 0 { -1 } else { 1 }),
        Val::Dec(10_i128.pow(30) + i128::from(id)),
        Val::Dec(i128::from(id) * 101),
        Val::F64(id as f64 / 8.0),
        Val::F32(id as f32 * 0.5),
        Val::Money(id * 10_001),
        Val::Str(format!("C{:03}", id % 1000)),
        Val::Str(format!("Renée {id}")),
        Val::Str(format!("日本語 {id} ✓")),
        // Row 3's note spans several packets.
        Val::Str(if id == 3 { "x".repeat(9_000) } else { format!("note {id}") }),
        Val::Date(19_000 + id % 1000),
        Val::DateTime { days: 19_000 + id % 365, ticks: id * 7 },
        Val::SmallDateTime { days: 19_000, minutes: id % 1440 },
        Val::DateTime2 { days: 19_500, hns: id * 1_234_567 % HNS_PER_DAY },
        Val::DateTimeOffset {
            days: 19_600,
            hns: id * 10_000_001 % HNS_PER_DAY,
            offset: [120, -330, 0][id as usize % 3],
        },
        Val::Guid(guid(id)),
        Val::Bytes((0..(id % 64) as u8).collect()),
    ]);
    if id == 1 {
        let set = |row: &mut Vec<Val>, name: &str, v: Val| {
            let i = claims_columns().iter().position(|(n, _)| n == name).unwrap();
            row[i] = v;
        };
        set(&mut row, "born", Val::date("1999-12-31"));
        set(&mut row, "created", Val::datetime("2024-01-15T10:20:30.997"));
        set(&mut row, "seen", Val::smalldatetime("2024-01-15T10:21:00"));
        set(&mut row, "updated", Val::datetime2("2024-01-15T10:20:30.1234567"));
        set(&mut row, "at_local", Val::datetimeoffset("2024-03-10T08:30:00.1234567+02:00"));
        set(&mut row, "uid", Val::guid("6f9619ff-8b86-d011-b42d-00c04fc964ff"));
    }
    row
}

fn guid(id: i64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&id.to_be_bytes());
    g[8..].copy_from_slice(&(id * 31).to_le_bytes());
    g
}

fn claims(ids: std::ops::RangeInclusive<i64>) -> Table {
    Table { columns: claims_columns(), rows: ids.map(claim).collect() }
}

/// The column `name` of `batch`, cast to `ty` (a Delta scan may hand strings back as views).
fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> ArrayRef {
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    arrow::compute::cast(col, ty).unwrap()
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    let col = column(batch, "id", &DataType::Int64);
    col.as_primitive::<Int64Type>().values().to_vec()
}

fn micros_text(v: i64) -> String {
    timestamp_us_to_datetime(v).unwrap().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

#[tokio::test]
async fn every_type_lands_in_delta_with_commits_at_watermarks() {
    let mut env = Env::new().await;
    env.fixture.reply(CLAIMS, Reply::Rows(claims(1..=10_000)));
    let source = env.source(CLAIMS, Some("id"));
    let (result, seen) = env.run(&source, &sink("bronze.claims", "append", Some(3_000)), 1).await;
    let summary = result.unwrap();
    assert_eq!((summary.rows, summary.commits), (10_000, 4));
    let rows: Vec<u64> = seen.commits.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(rows, [3_000, 3_000, 3_000, 1_000]);
    assert_eq!(env.watermark("bronze.claims").await, Some(10_000));

    let batch = env.table("bronze.claims").await.unwrap();
    let schema = batch.schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("tiny"), DataType::Int16);
    assert_eq!(ty("qty"), DataType::Int32);
    assert_eq!(ty("amount"), DataType::Decimal128(18, 4));
    assert_eq!(ty("big"), DataType::Decimal128(38, 6));
    assert_eq!(ty("fee"), DataType::Decimal128(9, 2));
    assert_eq!(ty("price"), DataType::Decimal128(19, 4));
    assert_eq!(ty("ratio"), DataType::Float64);
    assert_eq!(ty("score"), DataType::Float32);
    assert_eq!(ty("flag"), DataType::Boolean);
    assert_eq!(ty("born"), DataType::Date32);
    assert_eq!(ty("updated"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(ty("at_local"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    assert!(schema.fields().iter().all(|f| f.is_nullable()));

    let ids = ids(&batch);
    assert_eq!(ids.len(), 10_000);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (1..=10_000).collect::<Vec<_>>());
    let at = |id: i64| ids.iter().position(|&i| i == id).unwrap();

    let utf8 = |name: &str| column(&batch, name, &DataType::Utf8);
    let (code, name, label, note, uid) =
        (utf8("code"), utf8("name"), utf8("label"), utf8("note"), utf8("uid"));
    let binary = column(&batch, "payload", &DataType::Binary);
    let ts = |name: &str| column(&batch, name, &ty(name));
    let (created, seen_at, updated, at_local) = (ts("created"), ts("seen"), ts("updated"), ts("at_local"));
    let dec = |name: &str| column(&batch, name, &ty(name));
    let (amount, big, fee, price) = (dec("amount"), dec("big"), dec("fee"), dec("price"));
    let tiny = column(&batch, "tiny", &DataType::Int16);
    let small = column(&batch, "small", &DataType::Int16);
    let qty = column(&batch, "qty", &DataType::Int32);
    let flag = column(&batch, "flag", &DataType::Boolean);
    let ratio = column(&batch, "ratio", &DataType::Float64);
    let score = column(&batch, "score", &DataType::Float32);
    let born = column(&batch, "born", &DataType::Date32);

    // Row 1, checked against values written out by hand.
    let r = at(1);
    let micros = |a: &ArrayRef, r: usize| micros_text(a.as_primitive::<TimestampMicrosecondType>().value(r));
    assert_eq!(micros(&created, r), "2024-01-15T10:20:30.996667"); // .997 is tick 299 of 300
    assert_eq!(micros(&seen_at, r), "2024-01-15T10:21:00.000000");
    assert_eq!(micros(&updated, r), "2024-01-15T10:20:30.123456"); // 100 ns truncated
    assert_eq!(micros(&at_local, r), "2024-03-10T06:30:00.123456"); // +02:00 → UTC
    let day = date32_to_datetime(born.as_primitive::<Date32Type>().value(r)).unwrap();
    assert_eq!(day.format("%Y-%m-%d").to_string(), "1999-12-31");
    assert_eq!(uid.as_string::<i32>().value(r), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    assert_eq!(name.as_string::<i32>().value(r), "Renée 1");
    assert_eq!(label.as_string::<i32>().value(r), "日本語 1 ✓");
    assert_eq!(code.as_string::<i32>().value(r), "C001");
    let decimal = |a: &ArrayRef, r: usize| a.as_primitive::<Decimal128Type>().value_as_string(r);
    assert_eq!(decimal(&amount, r), "1.2345");
    assert_eq!(decimal(&big, r), "1000000000000000000000000.000001");
    assert_eq!(decimal(&fee, r), "1.01");
    assert_eq!(decimal(&price, r), "1.0001");
    assert_eq!(note.as_string::<i32>().value(at(3)), "x".repeat(9_000));

    // Every row, against the generator.
    for id in 1..=10_000 {
        let r = at(id);
        if id % 5 == 0 {
            let nulls = batch.columns().iter().filter(|c| c.is_null(r)).count();
            assert_eq!(nulls, batch.num_columns() - 1, "row {id}: every column but id is NULL");
            continue;
        }
        assert_eq!(tiny.as_primitive::<Int16Type>().value(r), (id % 256) as i16);
        assert_eq!(small.as_primitive::<Int16Type>().value(r), -(id % 30_000) as i16);
        assert_eq!(qty.as_primitive::<Int32Type>().value(r), (id * 1000 - 7) as i32);
        assert_eq!(flag.as_boolean().value(r), id % 2 == 1);
        let sign = if id % 3 == 0 { -1 } else { 1 };
        assert_eq!(amount.as_primitive::<Decimal128Type>().value(r), i128::from(id) * 12_345 * sign);
        assert_eq!(big.as_primitive::<Decimal128Type>().value(r), 10_i128.pow(30) + i128::from(id));
        assert_eq!(price.as_primitive::<Decimal128Type>().value(r), i128::from(id) * 10_001);
        assert_eq!(ratio.as_primitive::<Float64Type>().value(r), id as f64 / 8.0);
        assert_eq!(score.as_primitive::<Float32Type>().value(r), id as f32 * 0.5);
        assert_eq!(label.as_string::<i32>().value(r), format!("日本語 {id} ✓"));
        assert_eq!(binary.as_binary::<i32>().value(r), (0..(id % 64) as u8).collect::<Vec<_>>());
        assert_eq!(uid.as_string::<i32>().value(r).replace('-', "").len(), 32);
        if id > 1 {
            let day_us = |days: i64| days * 86_400_000_000;
            assert_eq!(born.as_primitive::<Date32Type>().value(r), (19_000 + id % 1000) as i32);
            let ts = |a: &ArrayRef| a.as_primitive::<TimestampMicrosecondType>().value(r);
            assert_eq!(ts(&created), day_us(19_000 + id % 365) + (id * 7 * 10_000 + 1) / 3);
            assert_eq!(ts(&seen_at), day_us(19_000) + (id % 1440) * 60_000_000);
            assert_eq!(ts(&updated), day_us(19_500) + id * 1_234_567 % HNS_PER_DAY / 10);
            assert_eq!(ts(&at_local), day_us(19_600) + id * 10_000_001 % HNS_PER_DAY / 10);
        }
    }

    // The load asked for the columns first, then for the rows in watermark order.
    let batches = env.fixture.batches();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(batches[0].starts_with("EXEC sp_describe_first_result_set @tsql = N'SELECT * FROM dbo.claims'"));
    assert!(batches[1].ends_with("WHERE [id] IS NOT NULL ORDER BY [id]"), "{}", batches[1]);
    // The gateway allowed the connection and audited its end with the bytes it carried.
    let audit = env.audit();
    assert!(matches!(audit.first(), Some(Verdict::Allowed { .. })), "{audit:?}");
    assert!(
        audit.iter().any(|v| matches!(v, Verdict::Closed { bytes, .. } if *bytes > 1_000_000)),
        "{audit:?}"
    );
}

#[tokio::test]
async fn the_next_run_reads_only_rows_past_the_watermark() {
    let env = Env::new().await;
    env.fixture.reply(CLAIMS, Reply::Rows(claims(1..=2_000)));
    let source = env.source(CLAIMS, Some("id"));
    let sink = sink("bronze.claims", "append", None);
    assert_eq!(env.run(&source, &sink, 1).await.0.unwrap().rows, 2_000);
    assert_eq!(env.watermark("bronze.claims").await, Some(2_000));

    env.fixture.rows(CLAIMS, |rows| rows.extend((2_001..=2_500).map(claim)));
    let (result, seen) = env.run(&source, &sink, 2).await;
    assert_eq!(result.unwrap().rows, 500);
    assert_eq!(seen.commits.lock().unwrap().len(), 1);
    assert!(env.fixture.batches().last().unwrap().contains("[id] IS NOT NULL AND [id] > 2000 ORDER BY [id]"));
    assert_eq!(env.watermark("bronze.claims").await, Some(2_500));
    let mut ids = ids(&env.table("bronze.claims").await.unwrap());
    ids.sort();
    assert_eq!(ids, (1..=2_500).collect::<Vec<_>>());

    // Nothing new: no commit, and the table stays as it is.
    let (result, seen) = env.run(&source, &sink, 3).await;
    let summary = result.unwrap();
    assert_eq!((summary.rows, summary.commits), (0, 0));
    assert!(seen.commits.lock().unwrap().is_empty());
    assert!(env.fixture.batches().last().unwrap().contains("[id] > 2500"));
}

/// `seq` repeats in runs of 7, so a 1000-row flush limit always falls inside a run.
fn events(rows: i64) -> Table {
    Table {
        columns: vec![("seq".into(), Ty::Int), ("n".into(), Ty::Int)],
        rows: (0..rows).map(|n| vec![Val::Int(n / 7), Val::Int(n)]).collect(),
    }
}

#[tokio::test]
async fn rows_sharing_a_watermark_are_never_split_and_a_broken_load_resumes() {
    let env = Env::new().await;
    env.fixture.reply(EVENTS, Reply::Rows(events(5_000)));
    env.fixture.state.lock().unwrap().break_after_rows = Some(2_500);
    let source = env.source(EVENTS, Some("seq"));
    let sink = sink("bronze.events", "append", Some(1_000));

    // The connection breaks after 2,500 rows: what was committed ends at a change of `seq`.
    let (result, seen) = env.run(&source, &sink, 1).await;
    let err = result.unwrap_err();
    assert_eq!(err.class(), FailureClass::Connectivity, "{err}");
    let rows: Vec<u64> = seen.commits.lock().unwrap().iter().map(|c| c.1).collect();
    // The 1000th row (n = 999) has seq 142, which runs to n = 1000: the commit takes 1001 rows.
    assert_eq!(rows, [1_001, 1_001]);
    assert_eq!(env.watermark("bronze.events").await, Some(285));

    // The retry reads past seq 285 and loses nothing, repeats nothing.
    let (result, _) = env.run(&source, &sink, 1).await;
    assert_eq!(result.unwrap().rows, 5_000 - 2_002);
    assert!(env.fixture.batches().last().unwrap().contains("[seq] > 285"));
    let batch = env.table("bronze.events").await.unwrap();
    let mut n = column(&batch, "n", &DataType::Int32).as_primitive::<Int32Type>().values().to_vec();
    n.sort();
    assert_eq!(n, (0..5_000).collect::<Vec<i32>>());
    assert_eq!(env.watermark("bronze.events").await, Some(4_999 / 7));
}

#[tokio::test]
async fn a_load_without_watermark_is_one_commit_per_run_streamed_in_batches() {
    let env = Env::new().await;
    env.fixture.reply(EVENTS, Reply::Rows(events(140_000)));
    let source = env.source(EVENTS, None);
    let (result, seen) = env.run(&source, &sink("bronze.events", "append", Some(1_000)), 7).await;
    let summary = result.unwrap();
    assert_eq!((summary.rows, summary.commits), (140_000, 1));
    // Handed over in batches of 65,536 rows, never all at once.
    assert_eq!(*seen.rows.lock().unwrap(), [65_536, 131_072, 140_000]);
    let app_id = format!("switchyard/{JOB}/{TASK}/run-7");
    assert_eq!(env.lake.position(&table("bronze.events"), &app_id).await.unwrap(), Some(1));

    // A retry of the same run finds its load committed and does not even log in.
    let logins = env.fixture.state.lock().unwrap().logins;
    let (result, _) = env.run(&source, &sink("bronze.events", "append", None), 7).await;
    assert_eq!(result.unwrap().rows, 0);
    assert_eq!(env.fixture.state.lock().unwrap().logins, logins);

    // The next run loads afresh; with `overwrite` it replaces the table.
    env.fixture.reply(EVENTS, Reply::Rows(events(10)));
    let (result, _) = env.run(&source, &sink("bronze.events", "overwrite", None), 8).await;
    assert_eq!(result.unwrap().rows, 10);
    assert_eq!(env.table("bronze.events").await.unwrap().num_rows(), 10);
}

/// Times in every watermark type; ids 0..n in time order, some sharing a microsecond.
fn reading(id: i64) -> Vec<Val> {
    let minute = id / 3; // three readings a minute
    let hns = minute * 600_000_000 + (id % 3) * 4; // the three within 1 µs of each other
    vec![
        Val::Int(id),
        Val::DateTime2 { days: 19_700, hns },
        Val::DateTime { days: 19_700, ticks: id * 100 / 3 }, // 1/300 s ticks, ~0.11 s apart
        Val::Date(19_700 + id / 40),
        Val::DateTimeOffset { days: 19_700, hns, offset: -300 },
        Val::SmallDateTime { days: 19_700, minutes: minute },
    ]
}

fn readings(ids: std::ops::Range<i64>) -> Table {
    let columns = [
        ("id", Ty::Int),
        ("taken_at", Ty::DateTime2(7)),
        ("logged", Ty::DateTime),
        ("day", Ty::Date),
        ("at_utc", Ty::DateTimeOffset(7)),
        ("minute", Ty::SmallDateTime),
    ];
    Table {
        columns: columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
        rows: ids.map(reading).collect(),
    }
}

#[tokio::test]
async fn date_and_time_watermarks_resume_exactly() {
    for (column, first, predicate) in [
        ("taken_at", 120, "[taken_at] >= CAST('2023-12-09T00:39:00.000001' AS datetime2(7))"),
        ("at_utc", 120, "[at_utc] >= CAST('2023-12-09T00:39:00.000001+00:00' AS datetimeoffset(7))"),
        ("logged", 120, "[logged] > CAST('2023-12-09T00:00:13.220' AS datetime)"),
        ("minute", 120, "[minute] > CAST('2023-12-09T00:39:00' AS smalldatetime)"),
        ("day", 120, "[day] > CAST('2023-12-11' AS date)"),
    ] {
        let env = Env::new().await;
        env.fixture.reply(READINGS, Reply::Rows(readings(0..first)));
        let source = env.source(READINGS, Some(column));
        // A flush every 10 rows: commits fall only between different watermarks.
        let sink = sink("bronze.readings", "append", Some(10));
        let (result, _) = env.run(&source, &sink, 1).await;
        assert_eq!(result.unwrap().rows, 120, "{column}");
        env.fixture.rows(READINGS, |rows| rows.extend((first..200).map(reading)));
        let (result, _) = env.run(&source, &sink, 2).await;
        assert_eq!(result.unwrap().rows, 80, "{column}");
        let sql = env.fixture.batches().last().unwrap().clone();
        assert!(sql.contains(predicate), "{column}: {sql}");
        let mut ids = column_ids(&env.table("bronze.readings").await.unwrap());
        ids.sort();
        assert_eq!(ids, (0..200).collect::<Vec<_>>(), "{column}");
    }
}

fn column_ids(batch: &RecordBatch) -> Vec<i32> {
    column(batch, "id", &DataType::Int32).as_primitive::<Int32Type>().values().to_vec()
}

#[tokio::test]
async fn a_column_of_an_unsupported_type_is_a_data_error_naming_it() {
    let env = Env::new().await;
    let docs = Table { columns: vec![("id".into(), Ty::Int), ("body".into(), Ty::Xml)], rows: vec![] };
    env.fixture.reply("SELECT id, body FROM dbo.docs", Reply::Rows(docs));
    let source = env.source("SELECT id, body FROM dbo.docs", None);
    let err = env.run(&source, &sink("bronze.docs", "append", None), 1).await.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data);
    assert!(err.to_string().contains("[body]") && err.to_string().contains("xml"), "{err}");
    assert!(err.hint().contains("CAST([body] AS nvarchar(max))"), "{}", err.hint());
    assert_eq!(env.fixture.batches().len(), 1, "no rows were asked for");
}

#[tokio::test]
async fn a_watermark_must_be_a_column_of_an_orderable_type() {
    let env = Env::new().await;
    env.fixture.reply(CLAIMS, Reply::Rows(claims(1..=3)));
    for (watermark, expected) in [("label", "nvarchar(60)"), ("nope", "not among the query's columns")] {
        let source = env.source(CLAIMS, Some(watermark));
        let err = env.run(&source, &sink("bronze.claims", "append", None), 1).await.0.unwrap_err();
        assert_eq!(err.class(), FailureClass::Data);
        assert!(
            err.to_string().contains(&format!("[{watermark}]")) && err.to_string().contains(expected),
            "{err}"
        );
    }
    let source = env.source(CLAIMS, Some("id"));
    let err = env.run(&source, &sink("bronze.claims", "overwrite", None), 1).await.0.unwrap_err();
    assert!(err.to_string().contains("overwrite"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_failure() {
    let env = Env::new().await;
    env.fixture.reply(CLAIMS, Reply::Rows(claims(1..=3)));
    let wrong = env.dir.path().join("wrong");
    std::fs::write(&wrong, "hunter2").unwrap();
    let source = env.source_as(CLAIMS, None, &wrong);
    let err = env.run(&source, &sink("bronze.claims", "append", None), 1).await.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Authentication, "{err}");
    assert!(err.to_string().contains("18456"), "{err}");
    assert!(!err.to_string().contains("hunter2") && !err.hint().contains("hunter2"));
}

#[tokio::test]
async fn a_permission_denied_is_an_access_failure_and_a_missing_table_a_data_one() {
    let env = Env::new().await;
    let secrets = "SELECT * FROM dbo.secrets";
    let message =
        "The SELECT permission was denied on the object 'secrets', database 'claims', schema 'dbo'.";
    env.fixture.reply(secrets, Reply::Error { code: 229, message: message.into() });
    let err =
        env.run(&env.source(secrets, None), &sink("bronze.secrets", "append", None), 1).await.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Access, "{err}");
    assert!(err.to_string().contains("229") && err.to_string().contains("denied"), "{err}");

    let err =
        env.run(&env.source("SELECT * FROM dbo.nope", None), &sink("bronze.nope", "append", None), 1).await;
    let err = err.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Data, "{err}");
    assert!(err.hint().contains("fix the query"), "{}", err.hint());
}

#[tokio::test]
async fn a_closed_port_is_a_connectivity_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fixture = Fixture::start(PASSWORD).await;
    let mut env = Env::with(fixture, &[closed]).await;
    env.fixture.port = closed;
    let err =
        env.run(&env.source(CLAIMS, None), &sink("bronze.claims", "append", None), 1).await.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Connectivity, "{err}");
}

#[tokio::test]
async fn egress_without_a_rule_is_denied_by_the_gateway() {
    let fixture = Fixture::start(PASSWORD).await;
    let other = fixture.port.wrapping_add(1).max(1);
    let mut env = Env::with(fixture, &[other]).await;
    env.fixture.reply(CLAIMS, Reply::Rows(claims(1..=3)));
    let err =
        env.run(&env.source(CLAIMS, None), &sink("bronze.claims", "append", None), 1).await.0.unwrap_err();
    assert_eq!(err.class(), FailureClass::Access, "{err}");
    assert!(err.to_string().contains("denied"), "{err}");
    assert!(matches!(env.audit().as_slice(), [Verdict::Denied { .. }]));
    assert_eq!(env.fixture.state.lock().unwrap().logins, 0);
}
