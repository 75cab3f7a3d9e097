//! The cost report against real stores (SQLite and PostgreSQL): history is made through the engine
//! (register, trigger, lease, complete), then its times are set to hand-picked values, and the
//! report's totals are checked against figures computed by hand below. The last part recomputes
//! the totals the way an operator would, from `runs --since` and the report's `nodes`.

mod common;

use std::time::Duration;

use common::{TestDb, job, task};
use switchyard_config::settings::{Pool, Settings};
use switchyard_scheduler::engine::{Engine, EngineConfig, NodeInfo, NodeKind, Report};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::Work;
use switchyard_scheduler::store::Store;

const S: i64 = 1000;
const H: i64 = 3600 * S;
/// The report's end: a fixed instant, so every figure below is exact.
const UNTIL: i64 = 1_800_000_000_000;
/// The window's start for `--since 10h`.
const T0: i64 = UNTIL - 10 * H;

fn settings() -> Settings {
    let mut s = Settings {
        pools: vec![
            Pool {
                name: "egress-a".into(),
                egress_ips: vec!["127.0.0.2".parse().unwrap()],
                slots: 4,
                identities: vec![],
            },
            Pool {
                name: "egress-b".into(),
                egress_ips: vec!["127.0.0.3".parse().unwrap()],
                slots: 4,
                identities: vec![],
            },
        ],
        ..Settings::default()
    };
    s.prices.dedicated_node_hour = 0.5;
    s.prices.serverless_vcpu_second = 0.0001;
    s.serverless.vcpus_per_worker = 2.0;
    s
}

fn info(kind: NodeKind, pool: Option<&str>, ip: Option<&str>) -> NodeInfo {
    NodeInfo {
        kind,
        pool: pool.map(Into::into),
        egress_ip: ip.map(|i| i.parse().unwrap()),
        identities: vec![],
        version: "test".into(),
        slots: 4,
        launched_at: None,
    }
}

fn ok(attempt: i64) -> Report {
    Report::succeeded(attempt)
}

/// Direct SQL on the store, to put history at chosen times.
struct Sql(sqlx::AnyPool);

impl Sql {
    async fn open(url: &str) -> Sql {
        sqlx::any::install_default_drivers();
        Sql(sqlx::AnyPool::connect(url).await.unwrap())
    }

    async fn attempt(&self, id: i64, started: i64, finished: Option<i64>) {
        sqlx::query("UPDATE attempts SET queued_at = $1, started_at = $1, finished_at = $2 WHERE id = $3")
            .bind(started)
            .bind(finished)
            .bind(id)
            .execute(&self.0)
            .await
            .unwrap();
    }

    async fn run_finished(&self, run: i64, at: Option<i64>) {
        sqlx::query("UPDATE job_runs SET created_at = $1, finished_at = $2 WHERE id = $3")
            .bind(at.unwrap_or(T0) - H)
            .bind(at)
            .bind(run)
            .execute(&self.0)
            .await
            .unwrap();
    }

    #[allow(clippy::too_many_arguments)]
    async fn node(
        &self,
        id: &str,
        state: &str,
        registered: i64,
        heartbeat: i64,
        launched: Option<i64>,
        first_lease: Option<i64>,
    ) {
        sqlx::query(
            "UPDATE nodes SET state = $1, registered_at = $2, heartbeat_at = $3, launched_at = $4, first_lease_at = $5 WHERE id = $6",
        )
        .bind(state)
        .bind(registered)
        .bind(heartbeat)
        .bind(launched)
        .bind(first_lease)
        .bind(id)
        .execute(&self.0)
        .await
        .unwrap();
    }
}

async fn lease_one(e: &Engine, node: &str, job: &str) -> (i64, i64) {
    let run = e.trigger(job).await.unwrap();
    let lease = e.lease(node, 1, Duration::from_secs(2)).await.unwrap().remove(0);
    assert_eq!(lease.run, run, "{node} leased from run {run}");
    (run, lease.attempt)
}

async fn cost_from_hand_computed_history(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let e = Engine::new(
        store,
        EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings: settings() },
    );
    let mut ingest = task("ingest", Compute::Dedicated, &["egress-a"], &[]);
    if let Work::Run { destinations, .. } = &mut ingest.work {
        destinations.push("api.partner.example:443".into());
    }
    let mut stream = task("stream", Compute::Serverless, &[], &[]);
    stream.continuous = true;
    e.upsert_jobs(&[
        job("ingest_job", vec![ingest]),
        job("transform_job", vec![task("silver", Compute::Serverless, &[], &[])]),
        job("stream_job", vec![stream]),
    ])
    .await
    .unwrap();
    let d1 =
        e.register(&info(NodeKind::Dedicated, Some("egress-a"), Some("127.0.0.2"))).await.unwrap().node_id;
    let d2 =
        e.register(&info(NodeKind::Dedicated, Some("egress-b"), Some("127.0.0.3"))).await.unwrap().node_id;
    let d3 =
        e.register(&info(NodeKind::Dedicated, Some("egress-a"), Some("127.0.0.2"))).await.unwrap().node_id;
    let w1 = e.register(&info(NodeKind::Serverless, None, None)).await.unwrap().node_id;
    let w2 = e.register(&info(NodeKind::Serverless, None, None)).await.unwrap().node_id;
    let w3 = e.register(&info(NodeKind::Serverless, None, None)).await.unwrap().node_id;

    // Three ingest runs on d1 (the first before the window, the second straddling its start).
    let mut ingest_attempts = vec![];
    for _ in 0..3 {
        let (run, attempt) = lease_one(&e, &d1, "ingest_job").await;
        e.complete(&d1, &[ok(attempt)]).await.unwrap();
        ingest_attempts.push((run, attempt));
    }
    let (silver1_run, silver1) = lease_one(&e, &w1, "transform_job").await;
    e.complete(&w1, &[ok(silver1)]).await.unwrap();
    let (silver2_run, silver2) = lease_one(&e, &w2, "transform_job").await;
    e.complete(&w2, &[ok(silver2)]).await.unwrap();
    let (stream_run, stream_attempt) = lease_one(&e, &w3, "stream_job").await; // still running

    let sql = Sql::open(&db.url).await;
    // Nodes: d1 up since before the window and heartbeating (10 h counted); d2 up 4 h inside it;
    // d3 gone before it (not counted).
    sql.node(&d1, "active", T0 - 5 * H, UNTIL - S, None, Some(T0 - 3 * H)).await;
    sql.node(&d2, "gone", T0 + 2 * H, T0 + 6 * H, None, None).await;
    sql.node(&d3, "gone", T0 - 20 * H, T0 - 12 * H, None, None).await;
    // Workers: cold starts (launch → first lease) of 30 s, 10 s and 50 s → median 30 s.
    // w1: 3660 s alive; w2: 1840 s; w3: launched 7 h before the end and still heartbeating: 25200 s.
    sql.node(&w1, "gone", T0 + H + 20 * S, T0 + 2 * H + 60 * S, Some(T0 + H), Some(T0 + H + 30 * S)).await;
    sql.node(
        &w2,
        "gone",
        T0 + 3 * H + 5 * S,
        T0 + 3 * H + 1840 * S,
        Some(T0 + 3 * H),
        Some(T0 + 3 * H + 10 * S),
    )
    .await;
    sql.node(&w3, "active", T0 + 3 * H + 40 * S, UNTIL - S, Some(T0 + 3 * H), Some(T0 + 3 * H + 50 * S))
        .await;
    // Attempts: ingest before the window (excluded), 1800 s inside it of one that started an hour
    // before, and 1200 s; silver 3600 s and 1800 s; stream running for the last 7 h − 50 s.
    let [(r1, a1), (r2, a2), (r3, a3)] = ingest_attempts[..] else { unreachable!() };
    sql.attempt(a1, T0 - 3 * H, Some(T0 - 2 * H)).await;
    sql.run_finished(r1, Some(T0 - 2 * H)).await;
    sql.attempt(a2, T0 - H, Some(T0 + 1800 * S)).await;
    sql.run_finished(r2, Some(T0 + 1800 * S)).await;
    sql.attempt(a3, T0 + 5 * H, Some(T0 + 5 * H + 1200 * S)).await;
    sql.run_finished(r3, Some(T0 + 5 * H + 1200 * S)).await;
    sql.attempt(silver1, T0 + H + 30 * S, Some(T0 + 2 * H + 30 * S)).await;
    sql.run_finished(silver1_run, Some(T0 + 2 * H + 30 * S)).await;
    sql.attempt(silver2, T0 + 3 * H + 10 * S, Some(T0 + 3 * H + 1810 * S)).await;
    sql.run_finished(silver2_run, Some(T0 + 3 * H + 1810 * S)).await;
    sql.attempt(stream_attempt, T0 + 3 * H + 50 * S, None).await;
    sql.run_finished(stream_run, None).await;

    let r = e.views().cost_until("10h", UNTIL).await.unwrap();
    assert_eq!((r.from, r.until, r.window_hours), (T0, UNTIL, 10.0));
    assert_eq!(r.inputs.cold_start_seconds, Some(30.0));
    assert_eq!(r.inputs.cold_starts_measured, 3);
    assert_eq!(r.inputs.peak_serverless_attempts, 2, "silver's second attempt overlaps stream");
    assert_eq!(r.inputs.slots_per_node, 4);
    // 0.5 / (4 slots × 3600 × 2 vCPU × 0.0001) = 0.173611…
    assert_eq!(r.inputs.break_even_busy_share, Some(0.173611));

    // Measured: dedicated 10 h + 4 h = 14 node-h × 0.5 = 7.00; serverless (3660 + 1840 + 25200) s
    // = 30700 worker-s × 2 vCPU = 61400 vCPU-s × 0.0001 = 6.14.
    assert_eq!(r.actual.dedicated.quantity, 14.0);
    assert_eq!(r.actual.dedicated.cost, 7.0);
    assert_eq!(r.actual.serverless.quantity, 61400.0);
    assert_eq!(r.actual.serverless.cost, 6.14);
    assert_eq!(r.actual.total, 13.14);
    assert_eq!(r.actual.dedicated.arithmetic, "2 node(s), 14 node-h × 0.5 = 7.00");
    assert_eq!(r.actual.serverless.arithmetic, "3 worker(s), 30700 worker-s × 2 vCPU × 0.0001 = 6.14");
    assert_eq!(r.actual.arithmetic, "7.00 + 6.14 = 13.14");
    assert!(r.actual.allowed);

    // All-dedicated: 14 node-h + ⌈2 / 4⌉ = 1 node × 10 h = 24 node-h × 0.5 = 12.00.
    assert_eq!(r.all_dedicated.dedicated.quantity, 24.0);
    assert_eq!(r.all_dedicated.total, 12.0);
    assert!(r.all_dedicated.allowed);
    // All-serverless: 30700 worker-s + (1800 + 1200) s of 2 ingest attempts + 2 × 30 s cold start
    // = 33760 s × 2 vCPU = 67520 vCPU-s × 0.0001 = 6.752; not allowed (ingest needs egress).
    assert_eq!(r.all_serverless.serverless.quantity, 67520.0);
    assert_eq!(r.all_serverless.total, 6.752);
    assert_eq!(r.all_serverless.dedicated.cost, 0.0);
    assert!(!r.all_serverless.allowed);
    assert_eq!(r.all_serverless.blocked.len(), 1);
    assert_eq!(
        (r.all_serverless.blocked[0].job.as_str(), r.all_serverless.blocked[0].task.as_str()),
        ("ingest_job", "ingest")
    );
    assert!(
        r.all_serverless.blocked[0].reason.contains("api.partner.example:443"),
        "{:?}",
        r.all_serverless.blocked
    );

    // Nodes: d3 is not in the window; d1 counted from the window's start.
    let ids: Vec<&str> = r.nodes.iter().map(|n| n.id.as_str()).collect();
    assert!(!ids.contains(&d3.as_str()), "{ids:?}");
    assert_eq!(r.nodes.len(), 5);
    let n1 = r.nodes.iter().find(|n| n.id == d1).unwrap();
    assert_eq!(
        (n1.counted_from, n1.counted_until, n1.seconds, n1.busy_seconds, n1.cost),
        (T0, UNTIL, 36000.0, 3000.0, 5.0)
    );
    let n2 = r.nodes.iter().find(|n| n.id == d2).unwrap();
    assert_eq!((n2.seconds, n2.busy_seconds, n2.cost), (14400.0, 0.0, 2.0), "idle d2 still costs");
    let nw3 = r.nodes.iter().find(|n| n.id == w3).unwrap();
    assert_eq!((nw3.seconds, nw3.busy_seconds, nw3.cold_start_seconds), (25200.0, 25150.0, Some(50.0)));
    assert_eq!(nw3.cost, 5.04); // 25200 × 2 × 0.0001

    // Tasks, by job then task.
    let names: Vec<String> = r.tasks.iter().map(|t| format!("{}.{}", t.job, t.task)).collect();
    assert_eq!(names, ["ingest_job.ingest", "stream_job.stream", "transform_job.silver"]);
    let (ti, ts, tv) = (&r.tasks[0], &r.tasks[1], &r.tasks[2]);
    // ingest: (3000 + 2 × 30) × 2 × 0.0001 = 0.612 serverless; 1 × 10 h × 0.5 / 4 = 1.25 dedicated.
    assert_eq!(
        (ti.attempts, ti.busy_seconds, ti.serverless_cost, ti.dedicated_cost),
        (2, 3000.0, 0.612, 1.25)
    );
    assert!(!ti.serverless_allowed);
    // stream: (25150 + 30) × 2 × 0.0001 = 5.036 serverless against 1.25 for a dedicated slot.
    assert_eq!(
        (ts.attempts, ts.busy_seconds, ts.serverless_cost, ts.dedicated_cost),
        (1, 25150.0, 5.036, 1.25)
    );
    assert!(ts.continuous && ts.serverless_allowed);
    // silver: (5400 + 60) × 2 × 0.0001 = 1.092, cheaper than the 1.25 slot.
    assert_eq!(
        (tv.attempts, tv.busy_seconds, tv.serverless_cost, tv.dedicated_cost),
        (2, 5400.0, 1.092, 1.25)
    );
    assert_eq!(ts.serverless_arithmetic, "(25150 s busy + 1 × 30 s cold start) × 2 vCPU × 0.0001 = 5.036");
    assert_eq!(ts.dedicated_arithmetic, "1 of 4 slots of an always-on node: 1 × 10 h × 0.5 / 4 = 1.25");

    // Recommendations, biggest saving first: stream to dedicated (5.036 − 1.25 = 3.786); ingest
    // would be cheaper serverless (1.25 − 0.612 = 0.638) but may not move, and says why.
    assert_eq!(r.recommendations.len(), 2, "{:#?}", r.recommendations);
    let (a, b) = (&r.recommendations[0], &r.recommendations[1]);
    assert_eq!((a.task.as_str(), a.to.as_str(), a.allowed, a.saving), ("stream", "dedicated", true, 3.786));
    assert!(a.message.contains("runs continuously"), "{}", a.message);
    // The advice names the manifest change (this store's specs carry no file: the job instead).
    assert_eq!(
        a.change.as_deref(),
        Some(
            "add `compute: dedicated` to task `stream` in the manifest of job `stream_job` (and `pool: NAME` to choose the pool)"
        )
    );
    assert_eq!(b.change, None, "ingest may not move");
    assert_eq!((b.task.as_str(), b.to.as_str(), b.allowed, b.saving), ("ingest", "serverless", false, 0.638));
    assert!(
        b.message.contains("cannot move") && b.message.contains("api.partner.example:443"),
        "{}",
        b.message
    );

    // By hand, as an operator would: node intervals from the report, attempts from `runs --since`.
    let price_d = r.inputs.dedicated_node_hour;
    let (price_s, vcpus) = (r.inputs.serverless_vcpu_second, r.inputs.vcpus_per_worker);
    let secs = |kind: &str| -> f64 {
        r.nodes
            .iter()
            .filter(|n| n.kind == kind)
            .map(|n| (n.counted_until - n.counted_from) as f64 / 1000.0)
            .sum()
    };
    let dedicated = secs("dedicated") / 3600.0 * price_d;
    let serverless = secs("serverless") * vcpus * price_s;
    assert!((dedicated + serverless - r.actual.total).abs() < 1e-6);
    let runs = e.views().runs_since(None, Some(r.from), 1000).await.unwrap();
    let listed: Vec<i64> = runs.iter().map(|run| run.id).collect();
    assert!(!listed.contains(&r1) && listed.contains(&r2) && listed.contains(&stream_run), "{listed:?}");
    let (mut moved, mut moved_attempts) = (0.0, 0.0);
    for run in &runs {
        for t in run.tasks.iter().filter(|t| t.compute == "dedicated") {
            for a in &t.attempts {
                let end = a.finished_at.unwrap_or(r.until).min(r.until);
                let start = a.started_at.max(r.from);
                if end > start {
                    moved += (end - start) as f64 / 1000.0;
                    moved_attempts += 1.0;
                }
            }
        }
    }
    let cold = r.inputs.cold_start_seconds.unwrap();
    let all_serverless = (secs("serverless") + moved + moved_attempts * cold) * vcpus * price_s;
    assert!((all_serverless - r.all_serverless.total).abs() < 1e-6, "{all_serverless}");

    // Nothing in an empty window before all of it.
    let early = e.views().cost_until("1h", T0 - 30 * H).await.unwrap();
    assert_eq!((early.actual.total, early.nodes.len(), early.tasks.len()), (0.0, 0, 0));
    assert!(e.views().cost_until("7", UNTIL).await.unwrap_err().to_string().contains("unit"));
    sql.0.close().await;
    e.store().close().await;
}
both_stores!(cost_report, cost_from_hand_computed_history);

/// `GET /api/v1/cost` over real HTTP through the client `switchyard cost` uses: viewer role, the
/// engine's report exactly (recomputed at the same `until`), 400 for a bad window; `runs --since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_api_returns_the_engine_report() {
    use switchyard_scheduler::api::{AppState, PlanningInputs, router, serve};
    use switchyard_scheduler::client::Client;
    use switchyard_scheduler::engine::Role;
    use switchyard_scheduler::views::CostReport;

    let db = TestDb::sqlite().await;
    let e = Engine::new(
        Store::open(&db.url).await.unwrap(),
        EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings: settings() },
    );
    e.upsert_jobs(&[job("transform_job", vec![task("silver", Compute::Serverless, &[], &[])])])
        .await
        .unwrap();
    e.register(&info(NodeKind::Dedicated, Some("egress-a"), Some("127.0.0.2"))).await.unwrap();
    let w = e.register(&info(NodeKind::Serverless, None, None)).await.unwrap().node_id;
    let (run, attempt) = lease_one(&e, &w, "transform_job").await;
    e.complete(&w, &[ok(attempt)]).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let app =
        router(AppState { engine: e.clone(), planning: std::sync::Arc::new(PlanningInputs::default()) });
    tokio::spawn(serve(listener, app, None, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));

    let viewer = Client::new(&url, e.create_token(Role::Viewer, "v").await.unwrap(), None).unwrap();
    let report: CostReport = viewer.cost("7d").await.unwrap();
    assert_eq!(report.since, "7d");
    assert_eq!(
        report,
        e.views().cost_until("7d", report.until).await.unwrap(),
        "the API serves the engine's report"
    );
    assert_eq!(report.nodes.len(), 2);
    assert_eq!(report.tasks.len(), 1);
    assert!(report.actual.dedicated.cost > 0.0, "a node alive for a moment still costs");

    let runs = viewer.runs_since(None, Some("1h"), 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run]);

    let node = Client::new(&url, e.create_token(Role::Node, "n").await.unwrap(), None).unwrap();
    match node.cost("7d").await {
        Err(switchyard_scheduler::Error::Api { status: 403, .. }) => {}
        other => panic!("a node token cannot read costs: {other:?}"),
    }
    // The server checks the window too (the client would refuse `7` before sending it).
    let token = e.create_token(Role::Viewer, "raw").await.unwrap();
    let (status, body) = get(&url, "/api/v1/cost?since=7", &token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("`since`: `7`"), "{body}");
    assert!(body["hint"].as_str().unwrap().contains("7d"), "{body}");
    let (status, body) = get(&url, "/api/v1/cost", &token).await;
    assert_eq!((status, body["since"].as_str()), (200, Some("7d")), "default window");
    let _ = stop.send(true);
    e.store().close().await;
}

async fn get(url: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
    (status, body)
}
