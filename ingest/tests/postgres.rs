//! The PostgreSQL source against the real server on 127.0.0.1:5432 (a fresh database per test;
//! `SWITCHYARD_TEST_POSTGRES` overrides the admin URL): types, incremental watermark loads whose
//! commit points never split equal watermark values, resumption after a dropped attempt, and the
//! failure classes — including the server's own source-IP refusal (pg_hba.conf) of an egress IP.

mod common;

use std::sync::Arc;

use common::{Recorder, context, count, dialer, int64s, table};
use switchyard_config::FailureClass;
use switchyard_config::manifest::{SinkSpec, Source};
use switchyard_ingest::run;
use switchyard_lake::Lake;
use switchyard_lake::arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use switchyard_lake::arrow::datatypes::DataType;

fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

struct Db {
    name: String,
    client: tokio_postgres::Client,
    user: String,
    password: Option<String>,
}

impl Db {
    async fn fresh() -> Db {
        let admin_cfg: tokio_postgres::Config = admin_url().parse().unwrap();
        let (admin, conn) = admin_cfg
            .connect(tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        tokio::spawn(conn);
        let name = switchyard_testkit::unique_name("sy_ingest_");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let mut cfg = admin_cfg.clone();
        cfg.dbname(&name);
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let user = admin_cfg.get_user().unwrap_or("postgres").to_owned();
        let password = admin_cfg.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
        Db { name, client, user, password }
    }

    fn source(&self, query: &str, watermark: Option<&str>) -> Source {
        // A password (when the server asks for one) goes through a file, as a mounted secret would.
        let password_file = self.password.as_ref().map(|p| {
            let path = std::env::temp_dir().join(format!("{}.pw", self.name));
            std::fs::write(&path, format!("{p}\n")).unwrap();
            path
        });
        serde_json::from_value(serde_json::json!({"postgres": {
            "host": "127.0.0.1", "port": 5432, "database": self.name, "user": self.user,
            "password_file": password_file, "query": query, "watermark": watermark,
        }}))
        .unwrap()
    }
}

fn sink(table: &str, rows: u64) -> SinkSpec {
    serde_json::from_value(serde_json::json!({"table": table, "flush": {"rows": rows}})).unwrap()
}

#[tokio::test]
async fn every_supported_type_arrives_with_its_value() {
    let db = Db::fresh().await;
    db.client
        .batch_execute(
            "CREATE TABLE t (b bool, s smallint, i int, l bigint, r real, d double precision, n numeric(12,3),
               v varchar(10), c char(3), tx text, by bytea, dt date, ts timestamp, tz timestamptz, u uuid, j jsonb);
             INSERT INTO t VALUES (true, -2, 3, 9000000000, 1.5, 2.25, -1234.5, 'v', 'ab', 'text', '\\x00ff',
               '2024-02-29', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": 1}');
             INSERT INTO t VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let ctx = context(&lake, dialer("127.0.0.1", 5432, "127.0.0.1"), "types", 1);
    let progress = Arc::new(Recorder::default());
    let summary = run(
        &db.source("SELECT * FROM t ORDER BY l NULLS LAST", None),
        &sink("bronze.types", 1000),
        &ctx,
        progress.clone(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows, 2);
    assert_eq!(summary.commits, 1);
    let rows = lake.read(&table("bronze.types"), None).await.unwrap();
    let b = &rows[0];
    let schema = b.schema();
    let types: Vec<String> = schema.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(
        types.join(","),
        "Boolean,Int16,Int32,Int64,Float32,Float64,Utf8,Utf8,Utf8,Utf8,Binary,Date32,Timestamp(µs),Timestamp(µs, \"UTC\"),Utf8,Utf8"
            .replace("Timestamp(µs)", &DataType::Timestamp(switchyard_lake::arrow::datatypes::TimeUnit::Microsecond, None).to_string())
            .replace("Timestamp(µs, \"UTC\")", &DataType::Timestamp(switchyard_lake::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())).to_string())
    );
    let text = |c: &str| {
        b.column_by_name(c).unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0).to_owned()
    };
    assert_eq!(text("n"), "-1234.500");
    assert_eq!(text("c"), "ab ");
    assert_eq!(text("u"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(text("j"), "{\"k\": 1}");
    let ts = |c: &str| {
        b.column_by_name(c).unwrap().as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().value(0)
    };
    assert_eq!(ts("ts"), 1_704_164_645_678_901);
    assert_eq!(ts("tz"), 1_704_157_445_000_000, "timestamptz is UTC");
    assert_eq!(int64s(&rows, "l"), vec![Some(9_000_000_000), None]);
    assert!((0..b.num_columns()).all(|c| b.column(c).is_null(1)), "the second row is all NULL");
    assert_eq!(progress.commits.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn watermark_loads_only_new_rows_and_never_splits_equal_values() {
    let db = Db::fresh().await;
    // 10,000 rows whose watermark repeats 7 times: commit points every ~500 rows must fall between
    // groups, or a resume (`> last`) would skip the rest of a group.
    db.client
        .batch_execute(
            "CREATE TABLE ev (id bigint primary key, wm bigint, payload text);
             INSERT INTO ev SELECT g, g / 7, md5(g::text) FROM generate_series(1, 10000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.events");
    let source = db.source("SELECT id, wm, payload FROM ev", Some("wm"));
    let ctx = context(&lake, dialer("127.0.0.1", 5432, "127.0.0.1"), "events", 1);
    let first = run(&source, &sink("bronze.events", 500), &ctx, Arc::new(Recorder::default())).await.unwrap();
    assert_eq!(first.rows, 10_000);
    assert!(first.commits >= 19, "commits every ~500 rows: {}", first.commits);
    let app = "switchyard/test/events/wm";
    assert_eq!(lake.position(&t, app).await.unwrap(), Some(10_000 / 7));

    // Nothing new: nothing committed.
    let again = run(&source, &sink("bronze.events", 500), &ctx, Arc::new(Recorder::default())).await.unwrap();
    assert_eq!((again.rows, again.commits), (0, 0));

    // New rows, including more of the last group's watermark value: read from `> last` on.
    db.client
        .batch_execute("INSERT INTO ev SELECT g, g / 7, 'new' FROM generate_series(10001, 12345) g")
        .await
        .unwrap();
    let ctx2 = context(&lake, dialer("127.0.0.1", 5432, "127.0.0.1"), "events", 2);
    let second =
        run(&source, &sink("bronze.events", 500), &ctx2, Arc::new(Recorder::default())).await.unwrap();
    let all = lake.read(&t, None).await.unwrap();
    let mut ids: Vec<i64> = int64s(&all, "id").into_iter().flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    // Rows 10,001..=10,002 share the watermark 1428 with rows already loaded, and so are not
    // re-read: a watermark must only grow for rows that are new.
    assert_eq!(second.rows, 12_345 - 10_002);
    assert_eq!(count(&all), 10_000 + 12_345 - 10_002);
    assert_eq!(ids.len(), count(&all), "no duplicates");
    assert_eq!(lake.position(&t, app).await.unwrap(), Some(12_345 / 7));
}

/// An attempt dropped mid-load (the node died) leaves only whole commits; the next attempt of
/// the same run resumes after them, and the table ends equal to the source.
#[tokio::test]
async fn a_dropped_attempt_resumes_without_duplicates_or_gaps() {
    let db = Db::fresh().await;
    db.client
        .batch_execute(
            "CREATE TABLE big (id bigint, wm bigint, a text, b double precision, c int);
             INSERT INTO big SELECT g, g, 'row ' || g, g * 0.5, g % 100 FROM generate_series(1, 200000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let t = table("bronze.big");
    let source = db.source("SELECT * FROM big", Some("wm"));
    let progress = Arc::new(Recorder::default());
    let ctx = context(&lake, dialer("127.0.0.1", 5432, "127.0.0.1"), "big", 1);
    let big_sink = sink("bronze.big", 20_000);
    let attempt = run(&source, &big_sink, &ctx, progress.clone());
    let watcher = async {
        while progress.commits.lock().unwrap().len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        r = attempt => panic!("the load should have been interrupted: {r:?}"),
        () = watcher => {}
    }
    let partial = count(&lake.read(&t, None).await.unwrap());
    assert!(partial > 0 && partial < 200_000, "{partial}");
    run(&source, &sink("bronze.big", 20_000), &ctx, Arc::new(Recorder::default())).await.unwrap();
    let all = lake.read(&t, None).await.unwrap();
    let ids: Vec<i64> = int64s(&all, "id").into_iter().flatten().collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 200_000);
    assert_eq!(unique.len(), 200_000);
    assert_eq!(ids.iter().sum::<i64>(), 200_000 * 200_001 / 2);
}

#[tokio::test]
async fn failures_carry_their_class() {
    let db = Db::fresh().await;
    db.client
        .batch_execute("CREATE TABLE p (id bigint, spot point); INSERT INTO p VALUES (1, '(1,2)')")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
    let ok_dialer = || dialer("127.0.0.1", 5432, "127.0.0.1");
    let class = |r: Result<switchyard_ingest::Summary, switchyard_ingest::Error>| {
        let e = r.unwrap_err();
        (e.class(), format!("{e}\n{}", e.hint()))
    };
    let s = sink("bronze.p", 100);
    let rec = || Arc::new(Recorder::default());

    let (c, m) = class(
        run(&db.source("SELECT * FROM p", None), &s, &context(&lake, ok_dialer(), "p", 1), rec()).await,
    );
    assert_eq!(c, FailureClass::Data, "{m}");
    assert!(m.contains("`spot`") && m.contains("point"), "{m}");

    let (c, m) = class(
        run(&db.source("SELECT * FROM nope", None), &s, &context(&lake, ok_dialer(), "p", 1), rec()).await,
    );
    assert_eq!(c, FailureClass::Data, "{m}");
    assert!(m.contains("nope"), "{m}");

    let (c, m) = class(
        run(&db.source("SELECT id FROM p", Some("missing")), &s, &context(&lake, ok_dialer(), "p", 1), rec())
            .await,
    );
    assert_eq!(c, FailureClass::Data, "{m}");
    assert!(m.contains("missing") && m.contains("id"), "{m}");

    // A role without SELECT.
    db.client.batch_execute("DROP ROLE IF EXISTS sy_nobody; CREATE ROLE sy_nobody LOGIN").await.ok();
    let mut denied = db.source("SELECT id FROM p", None);
    if let Source::Postgres(spec) = &mut denied {
        spec.user = "sy_nobody".into();
    }
    let (c, m) = class(run(&denied, &s, &context(&lake, ok_dialer(), "p", 1), rec()).await);
    assert_eq!(c, FailureClass::Access, "{m}");

    // The server only accepts 127.0.0.1 (pg_hba.conf): from egress IP 127.0.0.2 it refuses.
    let (c, m) = class(
        run(
            &db.source("SELECT id FROM p", None),
            &s,
            &context(&lake, dialer("127.0.0.1", 5432, "127.0.0.2"), "p", 1),
            rec(),
        )
        .await,
    );
    if !m.contains("pg_hba") {
        eprintln!("note: this server accepts 127.0.0.2 too; the pg_hba refusal was not exercised: {m}");
    } else {
        assert_eq!(c, FailureClass::Access, "{m}");
    }

    // Egress policy without a rule for the port: the gateway refuses before any packet.
    let (c, m) = class(
        run(
            &db.source("SELECT id FROM p", None),
            &s,
            &context(&lake, dialer("127.0.0.1", 5999, "127.0.0.1"), "p", 1),
            rec(),
        )
        .await,
    );
    assert_eq!(c, FailureClass::Access, "{m}");
    assert!(m.contains("denied"), "{m}");

    // Nothing listens: connectivity.
    let mut closed = db.source("SELECT 1", None);
    if let Source::Postgres(spec) = &mut closed {
        spec.port = Some(switchyard_config::value::Port(1));
    }
    let (c, m) =
        class(run(&closed, &s, &context(&lake, dialer("127.0.0.1", 1, "127.0.0.1"), "p", 1), rec()).await);
    assert_eq!(c, FailureClass::Connectivity, "{m}");
}
