//! The event log end to end in one process: the engine records events in a real store (SQLite in
//! a temp file, and a fresh database on the PostgreSQL server at 127.0.0.1:5432), the exporter
//! writes them to a real Delta table in a temp lake, and the table is read back. Crashes are made
//! real where they matter: an export whose Delta commit succeeded but whose cursor update never
//! happened, two exporters (two replicas' store pools) racing on one PostgreSQL store with leases
//! short enough that they keep taking over from each other. `tests/runtime/event_log.rs` kills
//! whole `switchyard serve` processes.
//!
//! `SWITCHYARD_TEST_POSTGRES` overrides the admin URL (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Executor;
use switchyard_config::settings::{Pool, Settings};
use switchyard_lake::{EventFilter, EventRecord, Lake};
use switchyard_scheduler::Error;
use switchyard_scheduler::engine::{AuditRecord, Engine, EngineConfig, NodeInfo, NodeKind, Outcome, Report};
use switchyard_scheduler::observe::export::{
    EXPORT_APP_ID, EventSink, ExportPolicy, ExportStep, Exporter, LogEvent,
};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::{JobSpec, TaskSpec};
use switchyard_scheduler::store::Store;

fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A store URL (a temp SQLite file or a fresh PostgreSQL database, dropped at the end) and a lake.
struct Fixture {
    url: String,
    pg: Option<String>,
    _dir: tempfile::TempDir,
    lake: Lake,
}

impl Fixture {
    async fn new(postgres: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().join("lake").to_str().unwrap()).unwrap();
        if !postgres {
            let url = format!("sqlite://{}/state.db", dir.path().display());
            return Fixture { url, pg: None, _dir: dir, lake };
        }
        let name = switchyard_testkit::unique_name("sy_ev_");
        let admin = sqlx::PgPool::connect(&admin_url()).await.expect("PostgreSQL on 127.0.0.1:5432");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        admin.close().await;
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Fixture { url, pg: Some(name), _dir: dir, lake }
    }

    async fn engine(&self) -> Engine {
        let settings = Settings {
            pools: vec![Pool {
                name: "egress-a".into(),
                egress_ips: vec!["127.0.0.2".parse().unwrap()],
                slots: 4,
                identities: vec![],
            }],
            ..Settings::default()
        };
        let store = Store::open(&self.url).await.unwrap();
        Engine::new(store, EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings })
    }

    async fn finish(self) {
        if let Some(name) = &self.pg {
            let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
            admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
            admin.close().await;
        }
    }
}

/// The binary's sink, as it is written there (`src/cli/events.rs`): events to the lake's table.
#[derive(Clone)]
struct LakeSink {
    lake: Lake,
    /// When set, the next append commits to Delta and then fails, as if the process died before
    /// it could record the export in the store.
    crash_after_commit: Arc<AtomicBool>,
}

impl EventSink for LakeSink {
    async fn position(&self) -> Result<i64, Error> {
        self.lake.event_log_position(EXPORT_APP_ID).await.map_err(|e| sink_error(&e))
    }

    async fn append(&self, events: &[LogEvent], upto: i64) -> Result<(), Error> {
        let records: Vec<EventRecord> = events
            .iter()
            .map(|e| EventRecord {
                id: e.id,
                sequence: e.sequence,
                origin: e.origin.clone(),
                timestamp_ms: e.at_ms,
                level: e.level.as_str().to_owned(),
                event_type: e.event_type.clone(),
                message: e.message.clone(),
                details: e.details.clone(),
            })
            .collect();
        self.lake.append_events(&records, EXPORT_APP_ID, upto).await.map_err(|e| sink_error(&e))?;
        if self.crash_after_commit.swap(false, Ordering::SeqCst) {
            return Err(Error::EventExport {
                target: "test".into(),
                cause: "crashed after commit".into(),
                hint: "",
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.lake.event_log_location().to_string()
    }
}

fn sink_error(e: &switchyard_lake::Error) -> Error {
    Error::EventExport { target: "test lake".into(), cause: e.to_string(), hint: e.hint() }
}

fn sink(lake: &Lake) -> LakeSink {
    LakeSink { lake: lake.clone(), crash_after_commit: Arc::new(AtomicBool::new(false)) }
}

fn node() -> NodeInfo {
    NodeInfo {
        kind: NodeKind::Dedicated,
        pool: Some("egress-a".into()),
        egress_ip: Some("127.0.0.2".parse().unwrap()),
        identities: vec![],
        version: "test".into(),
        slots: 4,
        launched_at: None,
    }
}

fn job(name: &str, tasks: usize) -> JobSpec {
    let tasks = (0..tasks)
        .map(|i| TaskSpec::command(&format!("t{i}"), Compute::Dedicated, &["egress-a"], &["true"]))
        .collect();
    JobSpec { job: name.into(), schedule: None, tasks, sla_ms: None, expected_interval_ms: None }
}

/// Makes events of every kind the engine records: a node registered, a run whose tasks are
/// queued, run, one failed; the run finished; an egress denial.
async fn make_events(e: &Engine, name: &str, tasks: usize) {
    e.upsert_jobs(&[job(name, tasks)]).await.unwrap();
    e.trigger(name).await.unwrap();
    let node = e.register(&node()).await.unwrap().node_id;
    loop {
        let leases = e.lease(&node, 4, Duration::ZERO).await.unwrap();
        if leases.is_empty() {
            break;
        }
        let reports: Vec<Report> = leases
            .iter()
            .map(|l| {
                let fail = l.spec.name == "t0";
                Report {
                    attempt: l.attempt,
                    outcome: if fail { Outcome::Failed } else { Outcome::Succeeded },
                    exit_code: Some(i64::from(fail)),
                    error_class: fail.then_some(switchyard_config::FailureClass::Data),
                    message: fail.then(|| "exit status 1".into()),
                    log_tail: None,
                    details: None,
                }
            })
            .collect();
        e.complete(&node, &reports).await.unwrap();
    }
    e.record_audit(&[AuditRecord {
        at: 1_000,
        egress_ip: "127.0.0.2".into(),
        task: Some(format!("{name}/t1")),
        destination: "api.example.com:443".into(),
        verdict: "denied".into(),
        code: Some("no_rule".into()),
        rule: None,
        reason: Some("no rule allows api.example.com:443".into()),
        count: 1,
        bytes: 0,
        duration_ms: 0,
    }])
    .await
    .unwrap();
}

/// Exports until there is nothing left; returns how many cycles exported something.
async fn drain<S: EventSink>(e: &Engine, sink: &S, owner: &str, policy: &ExportPolicy) -> usize {
    let mut exported = 0;
    for _ in 0..10_000 {
        match exporter(e).export_events(sink, owner, policy).await.unwrap() {
            ExportStep::Exported { .. } => exported += 1,
            ExportStep::Idle => return exported,
            ExportStep::NotLeader => panic!("{owner} should hold the lease"),
        }
    }
    panic!("export never became idle");
}

/// Every event the store recorded is in the table exactly once, with sequences 1..=N in order.
async fn assert_exactly_once(e: &Engine, lake: &Lake) -> Vec<EventRecord> {
    let table = lake.read_events(&EventFilter::default()).await.unwrap();
    let sequences: Vec<i64> = table.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences, (1..=table.len() as i64).collect::<Vec<_>>(), "gapless, once each, in order");
    let ids: Vec<i64> = table.iter().map(|r| r.id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no event twice");
    let recorded = exporter(e).recorded_events().await.unwrap();
    let recorded_ids: HashSet<i64> = recorded.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), recorded_ids, "no event missing");
    for (id, sequence, _) in &recorded {
        let row = table.iter().find(|r| r.id == *id).unwrap();
        assert_eq!(Some(row.sequence), *sequence, "the table and the store agree on event {id}'s sequence");
    }
    assert_eq!(lake.event_log_position(EXPORT_APP_ID).await.unwrap(), table.len() as i64);
    table
}

async fn exported_once(postgres: bool) {
    let f = Fixture::new(postgres).await;
    let e = f.engine().await;
    make_events(&e, "claims", 3).await;
    let policy = ExportPolicy { batch: 7, ..ExportPolicy::default() };
    let s = sink(&f.lake);
    assert!(drain(&e, &s, "replica-1", &policy).await > 1, "several batches of 7");
    let table = assert_exactly_once(&e, &f.lake).await;
    let types: HashSet<&str> = table.iter().map(|r| r.event_type.as_str()).collect();
    for t in ["node_registered", "task_state", "run_finished", "egress_denied"] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
    let failed =
        table.iter().find(|r| r.event_type == "task_state" && r.message.contains("→ failed")).unwrap();
    assert_eq!(failed.level, "error");
    assert!(failed.message.starts_with("claims/t0 (run "), "{}", failed.message);
    let details: serde_json::Value = serde_json::from_str(&failed.details).unwrap();
    assert_eq!((details["job"].as_str(), details["task"].as_str()), (Some("claims"), Some("t0")));
    assert!(failed.origin.starts_with("task_run/"), "{}", failed.origin);
    let finished = table.iter().find(|r| r.event_type == "run_finished").unwrap();
    assert_eq!((finished.level.as_str(), finished.origin.starts_with("job_run/")), ("error", true));
    let denied = table.iter().find(|r| r.event_type == "egress_denied").unwrap();
    assert_eq!((denied.level.as_str(), denied.origin.as_str()), ("warn", "gateway/127.0.0.2"));

    // Nothing new: nothing written. New events: only they are.
    let version =
        f.lake.table(&"_switchyard.event_log".parse().unwrap(), None).await.unwrap().unwrap().version();
    assert_eq!(drain(&e, &s, "replica-1", &policy).await, 0);
    let after =
        f.lake.table(&"_switchyard.event_log".parse().unwrap(), None).await.unwrap().unwrap().version();
    assert_eq!(version, after, "an idle export commits nothing");
    make_events(&e, "members", 2).await;
    drain(&e, &s, "replica-1", &policy).await;
    let table2 = assert_exactly_once(&e, &f.lake).await;
    assert!(table2.len() > table.len());
    assert_eq!(&table2[..table.len()], &table[..], "exported events never change");
    e.store().close().await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_exported_once_sqlite() {
    exported_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_exported_once_postgres() {
    exported_once(true).await;
}

/// The Delta commit happened, the store never heard of it (the exporter died in between), and a
/// restarted exporter — or another replica after the lease expired — goes on without a duplicate.
async fn crash_between_commit_and_cursor(postgres: bool) {
    let f = Fixture::new(postgres).await;
    let e = f.engine().await;
    // Enough events for every crash below to land mid-log (batches of 5).
    make_events(&e, "claims", 20).await;
    let policy = ExportPolicy { batch: 5, ..ExportPolicy::default() };
    let s = sink(&f.lake);
    for round in 0..3 {
        s.crash_after_commit.store(true, Ordering::SeqCst);
        assert!(
            exporter(&e).export_events(&s, "replica-1", &policy).await.is_err(),
            "round {round}: the crash"
        );
        // The same exporter again (a restart keeps its name only by chance; both cases matter).
        exporter(&e).export_events(&s, "replica-1", &policy).await.unwrap();
    }
    // A lease that expires: another replica takes over mid-log after a commit the store missed.
    s.crash_after_commit.store(true, Ordering::SeqCst);
    assert!(exporter(&e).export_events(&s, "replica-1", &policy).await.is_err());
    let short = ExportPolicy { lease_ttl: Duration::ZERO, ..policy.clone() };
    tokio::time::sleep(Duration::from_millis(5)).await;
    // replica-1's lease (30 s) has not expired: replica-2 must wait…
    assert_eq!(exporter(&e).export_events(&s, "replica-2", &policy).await.unwrap(), ExportStep::NotLeader);
    // …until it does (replica-1 renews with a zero TTL, as if it had stalled that long).
    let _ = exporter(&e).export_events(&s, "replica-1", &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    drain(&e, &s, "replica-2", &policy).await;
    assert_exactly_once(&e, &f.lake).await;
    // A fresh engine on the same store and lake (a restarted process) finds nothing to redo.
    let e2 = f.engine().await;
    assert_eq!(drain(&e2, &s, "replica-2", &policy).await, 0);
    e.store().close().await;
    e2.store().close().await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_delta_commit_duplicates_nothing_sqlite() {
    crash_between_commit_and_cursor(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_delta_commit_duplicates_nothing_postgres() {
    crash_between_commit_and_cursor(true).await;
}

/// Two replicas (two store pools) export from one PostgreSQL store at the same time, each with a
/// lease so short that they keep taking it from each other mid-batch, while both record events.
/// The Delta table still holds each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_on_one_postgres_store_export_each_event_once() {
    let f = Fixture::new(true).await;
    let a = f.engine().await;
    let b = f.engine().await;
    let racing = ExportPolicy { batch: 3, lease_ttl: Duration::ZERO, ..ExportPolicy::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0)]);
    // Different batch sizes: a replica may take over a batch the other sequenced and commit it
    // in other slices.
    let exporter = |e: Engine, owner: &'static str, batch: usize, slot: usize| {
        let s = sink(&f.lake);
        let stop = stop.clone();
        let counts = counts.clone();
        let policy = ExportPolicy { batch, ..racing.clone() };
        tokio::spawn(async move {
            let (mut exported, mut failed) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                match exporter(&e).export_events(&s, owner, &policy).await {
                    Ok(ExportStep::Exported { .. }) => {
                        exported += 1;
                        counts[slot].fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                    // Losing a race for the same rows is a Delta conflict: retried next cycle.
                    Err(_) => failed += 1,
                }
            }
            (exported, failed)
        })
    };
    let ea = exporter(a.clone(), "replica-a", 3, 0);
    let eb = exporter(b.clone(), "replica-b", 5, 1);
    // Both replicas record events in rounds until each exporter has exported at least once (at
    // least 3 rounds, at most 60): on a loaded machine one replica can win every race of a
    // fixed window, and the point is that they raced.
    for round in 0..60 {
        let (name_a, name_b) = (format!("a{round}"), format!("b{round}"));
        tokio::join!(make_events(&a, &name_a, 3), make_events(&b, &name_b, 3));
        let both = counts.iter().all(|c| c.load(Ordering::SeqCst) > 0);
        if round >= 2 && both {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (a_done, a_failed) = ea.await.unwrap();
    let (b_done, b_failed) = eb.await.unwrap();
    eprintln!(
        "replica-a exported {a_done} batches ({a_failed} failed), replica-b {b_done} ({b_failed} failed)"
    );
    assert!(a_done > 0 && b_done > 0, "both replicas exported: a {a_done}, b {b_done}");
    // Whatever the race left behind, one more exporter finishes it, once.
    drain(&a, &sink(&f.lake), "replica-a", &ExportPolicy { lease_ttl: Duration::ZERO, ..racing }).await;
    let table = assert_exactly_once(&a, &f.lake).await;
    assert!(table.len() > 50, "{} events", table.len());
    a.store().close().await;
    b.store().close().await;
    f.finish().await;
}

fn exporter(e: &Engine) -> Exporter {
    Exporter::new(e.store().clone())
}
