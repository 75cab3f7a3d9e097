//! Durable dispatch: tasks through the lease API over loopback HTTP, every state change committed
//! to the store. Four node agents (the real HTTP client, two per pool) lease in batches and report
//! each batch together with their next lease request, executing nothing (no-op tasks), so the
//! figure is the control plane's: queueing, granting, fencing, recording, completing.
//!
//! Two phases: a burst of 10,000 queued tasks (throughput), then single tasks trickled to idle,
//! long-polling nodes (queue→start latency).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_scheduler::api::types::{LeaseRequest, ReportRequest};
use switchyard_scheduler::api::{AppState, PlanningInputs, router, serve};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::{Engine, EngineConfig, NodeInfo, NodeKind, Report, Role, RunState};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::{JobSpec, TaskSpec};
use switchyard_scheduler::store::{Store, now_ms};

const NODES: usize = 4;
const BATCH: usize = 64;

fn settings() -> switchyard_config::settings::Settings {
    use switchyard_config::settings::{Pool, Settings};
    Settings {
        pools: vec![
            Pool {
                name: "egress-a".into(),
                egress_ips: vec!["127.0.0.2".parse().unwrap()],
                slots: BATCH as u32,
                identities: vec![],
            },
            Pool {
                name: "egress-b".into(),
                egress_ips: vec!["127.0.0.3".parse().unwrap()],
                slots: BATCH as u32,
                identities: vec![],
            },
        ],
        ..Settings::default()
    }
}

fn noop(name: String) -> TaskSpec {
    TaskSpec::command(&name, Compute::Dedicated, &["egress-a", "egress-b"], &["true"])
}

pub(crate) struct Figures {
    pub(crate) tasks_per_s: f64,
    pub(crate) burst_p50_ms: f64,
    pub(crate) burst_p99_ms: f64,
    pub(crate) idle_p50_ms: f64,
    pub(crate) idle_p99_ms: f64,
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// Runs both phases against the store at `url`.
pub(crate) async fn run(url: &str, tasks: usize, trickle: usize) -> Figures {
    let store = Store::open(url).await.expect("store");
    let engine = Engine::new(
        store,
        EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings: settings() },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let app = router(AppState { engine: engine.clone(), planning: Arc::new(PlanningInputs::default()) });
    tokio::spawn(serve(listener, app, None, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let token = engine.create_token(Role::Node, "bench").await.unwrap();

    let (done_tx, _) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for i in 0..NODES {
        let client = Client::new(&base, token.clone(), None).unwrap();
        let (pool, ip) = if i % 2 == 0 { ("egress-a", "127.0.0.2") } else { ("egress-b", "127.0.0.3") };
        let info = NodeInfo {
            kind: NodeKind::Dedicated,
            pool: Some(pool.into()),
            egress_ip: Some(ip.parse().unwrap()),
            identities: vec![],
            version: "bench".into(),
            slots: BATCH as u32,
            launched_at: None,
        };
        let node = client.register(&info).await.unwrap().node_id;
        let mut done = done_tx.subscribe();
        agents.push(tokio::spawn(async move {
            let mut leases = client.lease(&node, &LeaseRequest { max: BATCH, wait_ms: 1000 }).await.unwrap();
            loop {
                if *done.borrow() {
                    return;
                }
                let reports: Vec<Report> = leases.iter().map(|l| Report::succeeded(l.attempt)).collect();
                let request =
                    ReportRequest { reports, lease: Some(LeaseRequest { max: BATCH, wait_ms: 1000 }) };
                leases = tokio::select! {
                    r = client.report(&node, &request) => r.unwrap().leases,
                    _ = done.changed() => return,
                };
            }
        }));
    }

    // Phase 1: a burst.
    let specs: Vec<TaskSpec> = (0..tasks).map(|i| noop(format!("t{i}"))).collect();
    engine
        .upsert_jobs(&[JobSpec {
            job: "burst".into(),
            schedule: None,
            tasks: specs,
            sla_ms: None,
            expected_interval_ms: None,
        }])
        .await
        .unwrap();
    let since = now_ms();
    let started = Instant::now();
    let run = engine.trigger("burst").await.unwrap();
    let queued_at = started.elapsed();
    while engine.views().run_state(run).await.unwrap() == RunState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let mut burst = engine.views().start_latencies(since).await.unwrap();
    burst.sort_unstable();
    println!(
        "  burst: {tasks} tasks queued in {:.0} ms, all leased, recorded and completed in {:.0} ms",
        queued_at.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1000.0
    );

    // Phase 2: one task at a time to idle nodes.
    engine
        .upsert_jobs(&[JobSpec {
            job: "single".into(),
            schedule: None,
            tasks: vec![noop("one".into())],
            sla_ms: None,
            expected_interval_ms: None,
        }])
        .await
        .unwrap();
    let since = now_ms();
    for _ in 0..trickle {
        let run = engine.trigger("single").await.unwrap();
        while engine.views().run_state(run).await.unwrap() == RunState::Running {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut idle = engine.views().start_latencies(since).await.unwrap();
    idle.sort_unstable();

    let _ = done_tx.send(true);
    for a in agents {
        let _ = a.await;
    }
    let _ = stop.send(true);
    engine.store().close().await;
    Figures {
        tasks_per_s: tasks as f64 / elapsed.as_secs_f64(),
        burst_p50_ms: percentile(&burst, 0.5),
        burst_p99_ms: percentile(&burst, 0.99),
        idle_p50_ms: percentile(&idle, 0.5),
        idle_p99_ms: percentile(&idle, 0.99),
    }
}
