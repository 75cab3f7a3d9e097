//! The control plane under load: 100 node agents drain 10,000 queued no-op tasks, on SQLite and
//! on PostgreSQL, with the latency of every lease, heartbeat and report call.
//!
//! **What runs where.** The control plane is a separate `switchyard serve` process (the release
//! binary at `SWITCHYARD_BIN`, as for `cold-start`), started from a settings file with four pools
//! of 25 nodes (each node its own loopback egress IP, `127.0.P.K`) and the state store under
//! test; its tick, event-log exporter and logging (`info`, the daemon default, to a file) run as
//! in production. The node agents are **one benchmark process simulating 100 long-polling nodes**:
//! each has its own [`Client`], hence its own HTTP connection pool and its own keep-alive TCP
//! connection over loopback — 100 real connections — and it registers like `switchyard node`
//! (pool + egress IP, checked by the control plane). Client and server share the machine's cores.
//!
//! **The burst.** The job (10,000 tasks eligible on all four pools, `true` each) and a node token
//! are written into the store by this process; once the 100 nodes are registered the run is
//! triggered here too, straight into the store (as another replica would), and the nodes are
//! released together. Each node then loops as the real agent does, minus executing anything: a
//! long poll for up to `BATCH` leases (`wait_ms` 2 s, the agent's poll) when it holds none; the
//! report of a finished batch asks for the next batch in the same call (`lease` with `wait_ms`
//! 0, as the agent's report loop does for its free slots); heartbeats every third of the lease
//! TTL, naming the attempts held. Tasks/s is tasks completed over the time from the release (the
//! first lease calls) to the last accepted report.
//!
//! **Two loads.** *Drain*: no-op tasks reported at once, a closed loop — every node always has a
//! call in flight, so the mean call latency is about nodes ÷ calls per second (Little's law) and
//! only more throughput lowers it; this measures how fast 10,000 queued tasks drain. *Paced*:
//! each batch is held 0.5–1.5 × `SWITCHYARD_BENCH_HOLD_MS` (1,000) before its report and the
//! nodes start at spread-out moments within the first hold, as independent nodes would: an
//! offered load of about nodes × batch ÷ hold tasks/s (1,600/s) below capacity, at which the
//! latencies are what a node waits for the API in an ordinary deployment.
//!
//! **Latency** is per call as the node sees it (serialize, HTTP round trip, handler, store). Lease
//! calls that returned work are counted; long polls that found nothing and waited out `wait_ms`
//! (at the very end, when the queue is empty) are counted apart as "empty polls", their latency
//! being the wait by design.
//!
//! **Lease losses** (must be 0): attempts whose report was rejected (fenced: the attempt no longer
//! held its lease), attempts a heartbeat told the node to stop, calls refused as `lease_lost`,
//! and, checked in the store afterwards, attempts of the run that did not end `succeeded` (lost =
//! reclaimed after the TTL, or still running). Tasks attempted more than once are shown beside.
//!
//! Knobs: `SWITCHYARD_BENCH_RUNS` (default 5; medians are printed), `SWITCHYARD_BENCH_NODES`
//! (100), `SWITCHYARD_BENCH_TASKS` (10,000), `SWITCHYARD_BENCH_BATCH` (16, also the pools' slots),
//! `SWITCHYARD_BENCH_HOLD_MS` (1,000),
//! `SWITCHYARD_BENCH_SERVER_LOG` (the server's `RUST_LOG`), `SWITCHYARD_TEST_POSTGRES`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard_scheduler::Error as SchedulerError;
use switchyard_scheduler::api::types::{HeartbeatRequest, LeaseRequest, LogTail, ReportRequest};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::{
    Engine, EngineConfig, NodeInfo, NodeKind, Report, ReportResult, Role, TaskState,
};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::{JobSpec, TaskSpec};
use switchyard_scheduler::store::Store;
use tokio::sync::watch;

const POOLS: usize = 4;
/// The control plane's lease TTL (nodes are told to heartbeat every third of it).
const LEASE_TTL_S: u64 = 10;
/// A lease request's long-poll wait: the node agent's default poll.
const WAIT_MS: u64 = 2_000;
/// A run that has not drained by then is stopped and reported incomplete.
const DEADLINE: Duration = Duration::from_secs(300);
/// A node gives up after this many failed calls.
const MAX_ERRORS: usize = 20;
/// Goals (issue 16).
const GOAL_P99_MS: f64 = 50.0;
const GOAL_PG_TASKS_PER_S: f64 = 10_000.0;

#[derive(Debug, Clone, Copy)]
struct Config {
    nodes: usize,
    tasks: usize,
    batch: usize,
    runs: usize,
    /// How long each batch "runs" in the paced phase.
    hold: Duration,
}

/// How the nodes use their leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// No-op tasks reported at once: a closed loop measuring how fast the queue drains. Every
    /// node always has a call in flight, so the mean call latency is about nodes ÷ calls per
    /// second whatever the server does (Little's law): only throughput can lower it.
    Drain,
    /// Each batch runs this long before it is reported: an offered load below capacity (nodes ×
    /// batch ÷ hold tasks/s), at which the API's latency is what a node waits.
    Hold(Duration),
}

impl Pace {
    fn label(self) -> String {
        match self {
            Pace::Drain => "drain".to_owned(),
            Pace::Hold(d) => format!("paced ({} ms a batch)", d.as_millis()),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n: &usize| *n > 0).unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    calls: usize,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    Latency { p50: percentile_ms(&samples, 0.5), p99: percentile_ms(&samples, 0.99), calls: samples.len() }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_of(runs: &[Figures], f: impl Fn(&Figures) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

#[derive(Debug, Clone)]
struct Figures {
    completed: usize,
    wall: Duration,
    tasks_per_s: f64,
    queued_in: Duration,
    lease: Latency,
    /// The three slowest lease calls with work: (how long, when they started after the release).
    slowest_leases: Vec<(Duration, Duration)>,
    heartbeat: Latency,
    report: Latency,
    empty_polls: usize,
    losses: usize,
    loss_example: Option<String>,
    attempts: i64,
    retried: i64,
    errors: usize,
    first_error: Option<String>,
    per_node: (usize, usize),
    run_state: String,
    timed_out: bool,
}

impl Figures {
    fn print(&self, run: usize, tasks: usize) {
        println!(
            "  run {run}: {} of {tasks} tasks in {:.0} ms = {:.0} tasks/s (run queued in {:.0} ms){}",
            self.completed,
            self.wall.as_secs_f64() * 1000.0,
            self.tasks_per_s,
            self.queued_in.as_secs_f64() * 1000.0,
            if self.timed_out { "  — TIMED OUT" } else { "" }
        );
        println!(
            "         lease {:.1} / {:.1} ms ({} calls with work, {} empty polls)   heartbeat {} / {} ms ({})   report {:.1} / {:.1} ms ({})",
            self.lease.p50,
            self.lease.p99,
            self.lease.calls,
            self.empty_polls,
            ms(self.heartbeat.p50),
            ms(self.heartbeat.p99),
            self.heartbeat.calls,
            self.report.p50,
            self.report.p99,
            self.report.calls
        );
        println!(
            "         tasks per node {}–{}; {} attempts, {} tasks attempted more than once, {} lease losses; run {}",
            self.per_node.0, self.per_node.1, self.attempts, self.retried, self.losses, self.run_state
        );
        let slowest: Vec<String> = self
            .slowest_leases
            .iter()
            .map(|(d, at)| format!("{:.0} ms at +{:.2} s", d.as_secs_f64() * 1000.0, at.as_secs_f64()))
            .collect();
        println!("         slowest leases: {}", slowest.join(", "));
        if let Some(e) = &self.loss_example {
            println!("         first lease loss: {e}");
        }
        if self.errors > 0 {
            println!(
                "         {} failed calls; first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
    }
}

/// `load`: both stores, `SWITCHYARD_BENCH_RUNS` runs each.
pub(crate) fn run() {
    let exe = std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/release/switchyard".into());
    if !exe.exists() {
        eprintln!(
            "load needs the release binary at {} (bench/run builds it; or set SWITCHYARD_BIN)",
            exe.display()
        );
        std::process::exit(2);
    }
    let cfg = Config {
        nodes: env_usize("SWITCHYARD_BENCH_NODES", 100),
        tasks: env_usize("SWITCHYARD_BENCH_TASKS", 10_000),
        batch: env_usize("SWITCHYARD_BENCH_BATCH", 16),
        runs: env_usize("SWITCHYARD_BENCH_RUNS", 5),
        hold: Duration::from_millis(env_usize("SWITCHYARD_BENCH_HOLD_MS", 1_000) as u64),
    };
    assert!(cfg.nodes <= POOLS * 254, "at most {} nodes (254 loopback egress IPs per pool)", POOLS * 254);
    println!(
        "control plane under load: {} node agents ({} pools; one process, each node its own HTTP client and connection) \
         against a `switchyard serve` process, {} queued tasks, leases of up to {}; each report asks for the next batch in the \
         same call, a long poll only when that finds nothing, heartbeats every {} s; per store {} runs draining no-op tasks \
         (closed loop) and {} runs paced (each batch held {} ms: {:.0} tasks/s offered) (machine: {} cores, shared by the nodes \
         and the server)",
        cfg.nodes,
        POOLS,
        cfg.tasks,
        cfg.batch,
        LEASE_TTL_S as f64 / 3.0,
        cfg.runs,
        cfg.runs,
        cfg.hold.as_millis(),
        (cfg.nodes * cfg.batch) as f64 / cfg.hold.as_secs_f64(),
        super::cores()
    );
    let rt = super::runtime();
    let admin = std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pg_reachable = rt.block_on(async {
        match sqlx::PgPool::connect(&admin).await {
            Ok(pool) => {
                pool.close().await;
                true
            }
            Err(_) => false,
        }
    });
    let mut rows: Vec<(Kind, Pace, Vec<Figures>)> = Vec::new();
    // `SWITCHYARD_BENCH_STORES=postgres` (or `sqlite`) runs one store only, e.g. under a profiler.
    let stores = std::env::var("SWITCHYARD_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let known =
        |s: &str| !s.is_empty() && ["sqlite", "postgresql"].iter().any(|k| k.starts_with(&s.to_lowercase()));
    if let Some(bad) = stores.split(',').map(str::trim).find(|s| !known(s)) {
        eprintln!(
            "SWITCHYARD_BENCH_STORES: unknown store `{bad}` in `{stores}`; use sqlite, postgres or both, comma-separated"
        );
        std::process::exit(2);
    }
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let label = kind.label().to_lowercase();
        if !stores.split(',').map(str::trim).any(|s| !s.is_empty() && label.starts_with(&s.to_lowercase())) {
            continue;
        }
        if kind == Kind::Postgres && !pg_reachable {
            println!("PostgreSQL: skipped (cannot reach {admin})");
            continue;
        }
        for pace in [Pace::Drain, Pace::Hold(cfg.hold)] {
            println!("{}, {}:", kind.label(), pace.label());
            let mut figures = Vec::new();
            for i in 0..cfg.runs {
                match rt.block_on(once(kind, pace, &admin, &exe, cfg, i)) {
                    Ok(f) => {
                        f.print(i + 1, cfg.tasks);
                        figures.push(f);
                    }
                    Err(e) => println!("  run {}: failed: {e}", i + 1),
                }
            }
            if !figures.is_empty() {
                rows.push((kind, pace, figures));
            }
        }
    }
    if rows.is_empty() {
        return;
    }

    println!(
        "medians of the runs (lease losses: the sum over the runs; report = report + the next lease in one call)\n  store       load                        nodes   tasks   tasks/s   lease p50 / p99   heartbeat p50 / p99   report p50 / p99 (ms)   lease losses"
    );
    let mut verdicts = Vec::new();
    for (kind, pace, runs) in &rows {
        let tps = median_of(runs, |f| f.tasks_per_s);
        let (l50, l99) = (median_of(runs, |f| f.lease.p50), median_of(runs, |f| f.lease.p99));
        let (h50, h99) = (median_of(runs, |f| f.heartbeat.p50), median_of(runs, |f| f.heartbeat.p99));
        let (r50, r99) = (median_of(runs, |f| f.report.p50), median_of(runs, |f| f.report.p99));
        let losses: usize = runs.iter().map(|f| f.losses).sum();
        let incomplete = runs.iter().filter(|f| f.completed < cfg.tasks).count();
        println!(
            "  {:<11} {:<26} {:>6}  {:>6}  {:>8.0}   {:>6.1} / {:>6.1}     {:>6} / {:>6}       {:>6.1} / {:>6.1}         {:>6}{}",
            kind.label(),
            pace.label(),
            cfg.nodes,
            cfg.tasks,
            tps,
            l50,
            l99,
            ms(h50),
            ms(h99),
            r50,
            r99,
            losses,
            if incomplete > 0 { format!("   ({incomplete} runs incomplete)") } else { String::new() }
        );
        let worst_p99 = l99.max(h99).max(r99);
        let met = |ok: bool| if ok { "met" } else { "NOT met" };
        let throughput = match (kind, pace) {
            (Kind::Postgres, Pace::Drain) => format!(
                "≥ {GOAL_PG_TASKS_PER_S:.0} tasks/s {} ({tps:.0}; 4,335/s with 4 nodes before)",
                met(tps >= GOAL_PG_TASKS_PER_S)
            ),
            (_, Pace::Drain) => format!("{tps:.0} tasks/s (the throughput goal is PostgreSQL's)"),
            (_, Pace::Hold(_)) => format!(
                "{tps:.0} tasks/s of {:.0} offered",
                (cfg.nodes * cfg.batch) as f64 / cfg.hold.as_secs_f64()
            ),
        };
        verdicts.push(format!(
            "  {}, {}: API p99 ≤ {GOAL_P99_MS:.0} ms {} (worst call p99 {worst_p99:.1} ms); 0 lost leases {}; {throughput}",
            kind.label(),
            pace.label(),
            met(worst_p99 <= GOAL_P99_MS),
            met(losses == 0 && incomplete == 0)
        ));
    }
    println!("goals:");
    for v in verdicts {
        println!("{v}");
    }
}

/// One run on a fresh store: a new SQLite file, or a new PostgreSQL database dropped afterwards.
async fn once(
    kind: Kind,
    pace: Pace,
    admin: &str,
    exe: &Path,
    cfg: Config,
    index: usize,
) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let (url, database) = match kind {
        Kind::Sqlite => (format!("sqlite://{}/state.db", dir.path().display()), None),
        Kind::Postgres => {
            let name = format!("sy_load_{}_{index}", std::process::id());
            let pool =
                sqlx::PgPool::connect(admin).await.map_err(|e| format!("connecting to {admin}: {e}"))?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
            pool.close().await;
            (format!("{}/{name}", &admin[..admin.rfind('/').unwrap_or(admin.len())]), Some(name))
        }
    };
    let result = measure(&url, dir.path(), exe, cfg, pace).await;
    if let Some(name) = database {
        if let Ok(pool) = sqlx::PgPool::connect(admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
            pool.close().await;
        }
    }
    result
}

fn pool_name(p: usize) -> String {
    format!("pool-{}", p + 1)
}

/// Node `k` of pool `p`: `127.0.(p+1).(k+1)`.
fn egress_ip(p: usize, k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, (p + 1) as u8, (k + 1) as u8))
}

fn settings_toml(url: &str, dir: &Path, cfg: Config) -> String {
    let per_pool = cfg.nodes.div_ceil(POOLS);
    let mut toml = format!(
        "[control_plane]\nstate = \"{url}\"\ntoken_file = \"{}\"\nlease_ttl = \"{LEASE_TTL_S}s\"\n\n\
         [serverless]\nmax_workers = 0\n",
        dir.join("admin.token").display()
    );
    for p in 0..POOLS {
        let ips: Vec<String> = (0..per_pool).map(|k| format!("\"{}\"", egress_ip(p, k))).collect();
        toml.push_str(&format!(
            "\n[[pools]]\nname = \"{}\"\negress_ips = [{}]\nslots = {}\n",
            pool_name(p),
            ips.join(", "),
            cfg.batch
        ));
    }
    toml
}

/// `switchyard serve`, killed when dropped.
#[derive(Debug)]
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(exe: &Path, settings: &Path, port: u16, dir: &Path) -> Result<Server, String> {
        let log = dir.join("serve.log");
        let file =
            std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let filter = std::env::var("SWITCHYARD_BENCH_SERVER_LOG")
            .unwrap_or_else(|_| "info,sqlx=warn,hyper=warn".into());
        let child = Command::new(exe)
            .arg("serve")
            .arg("--settings")
            .arg(settings)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        Ok(Server { child, log })
    }

    /// The last lines the server logged, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n    ")
    }

    async fn wait_healthy(&mut self, port: u16) -> Result<(), String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("switchyard serve exited ({status}):\n    {}", self.log_tail()));
            }
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                let mut out = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
                if out.starts_with(b"HTTP/1.1 200") {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("switchyard serve did not answer /healthz within 30 s:\n    {}", self.log_tail()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

async fn measure(url: &str, dir: &Path, exe: &Path, cfg: Config, pace: Pace) -> Result<Figures, String> {
    let names: Vec<String> = (0..POOLS).map(pool_name).collect();
    let pools: Vec<&str> = names.iter().map(String::as_str).collect();

    // The job and a node token, written into the store by this process.
    let store = Store::open(url).await.map_err(|e| format!("opening the store: {e}"))?;
    let engine = Engine::new(
        store,
        EngineConfig {
            lease_ttl: Duration::from_secs(LEASE_TTL_S),
            max_losses: 3,
            settings: Default::default(),
        },
    );
    let token = engine.create_token(Role::Node, "load-bench").await.map_err(|e| format!("token: {e}"))?;
    let specs: Vec<TaskSpec> = (0..cfg.tasks)
        .map(|i| TaskSpec::command(&format!("t{i}"), Compute::Dedicated, &pools, &["true"]))
        .collect();
    engine
        .upsert_jobs(&[JobSpec {
            job: "load".into(),
            schedule: None,
            tasks: specs,
            sla_ms: None,
            expected_interval_ms: None,
        }])
        .await
        .map_err(|e| format!("registering the job: {e}"))?;

    // The control plane.
    let settings = dir.join("switchyard.toml");
    std::fs::write(&settings, settings_toml(url, dir, cfg))
        .map_err(|e| format!("cannot write {}: {e}", settings.display()))?;
    let port = free_port()?;
    let mut server = Server::start(exe, &settings, port, dir)?;
    server.wait_healthy(port).await?;
    let base = format!("http://127.0.0.1:{port}");

    // The nodes register as `switchyard node --pool P --egress-ip IP` would.
    let mut agents = Vec::with_capacity(cfg.nodes);
    for i in 0..cfg.nodes {
        let client = Client::new(&base, token.clone(), None).map_err(|e| format!("client: {e}"))?;
        let (p, k) = (i % POOLS, i / POOLS);
        let info = NodeInfo {
            kind: NodeKind::Dedicated,
            pool: Some(pool_name(p)),
            egress_ip: Some(egress_ip(p, k)),
            identities: vec![],
            version: "load-bench".into(),
            slots: cfg.batch as u32,
            launched_at: None,
        };
        let node = client
            .register(&info)
            .await
            .map_err(|e| format!("registering node {i}: {e}\n    {}", server.log_tail()))?
            .node_id;
        agents.push((client, node));
    }

    // The burst, then the nodes all at once.
    let queueing = Instant::now();
    let run_id = engine.trigger("load").await.map_err(|e| format!("triggering the run: {e}"))?;
    let queued_in = queueing.elapsed();
    engine.store().close().await;
    drop(engine);

    let completed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (go_tx, go_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(agents.len());
    for (client, node) in agents {
        let shared =
            Shared { completed: completed.clone(), done: done.clone(), target: cfg.tasks, batch: cfg.batch };
        handles.push(tokio::spawn(agent(client, node, shared, pace, handles.len(), go_rx.clone())));
    }
    let started = Instant::now();
    let _ = go_tx.send(true);
    let watchdog = {
        let (done, timed_out) = (done.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(DEADLINE).await;
            timed_out.store(true, Ordering::Release);
            done.store(true, Ordering::Release);
        })
    };
    let mut stats = Vec::with_capacity(handles.len());
    for h in handles {
        stats.push(h.await.map_err(|e| format!("a node task failed: {e}"))?);
    }
    watchdog.abort();
    // Two reports committing at once can leave the run's end to the server's next tick (about a
    // second; `Engine::settle`), so give it a few before reading what the store holds.
    wait_for_run_end(url, run_id, Duration::from_secs(5)).await;
    drop(server);

    let check = check_store(url, run_id).await?;
    let wall = stats
        .iter()
        .filter_map(|s| s.last_report)
        .max()
        .map_or(Duration::ZERO, |t| t.duration_since(started));
    let completed = completed.load(Ordering::Acquire);
    let mut lost: HashSet<i64> = stats.iter().flat_map(|s| s.lost.iter().map(|(a, _)| *a)).collect();
    lost.extend(check.not_succeeded.iter().copied());
    let lost_calls: usize = stats.iter().map(|s| s.lost_calls).sum();
    let loss_example = stats
        .iter()
        .flat_map(|s| s.lost.iter().map(|(a, why)| format!("attempt {a}: {why}")))
        .next()
        .or_else(|| {
            check.not_succeeded.first().map(|a| format!("attempt {a} did not end succeeded in the store"))
        });
    let errors: Vec<&String> = stats.iter().flat_map(|s| s.errors.iter()).collect();
    Ok(Figures {
        completed,
        wall,
        tasks_per_s: if wall.is_zero() { 0.0 } else { completed as f64 / wall.as_secs_f64() },
        queued_in,
        lease: latency(stats.iter().flat_map(|s| s.lease.iter().copied()).collect()),
        slowest_leases: {
            let mut calls: Vec<(Duration, Duration)> =
                stats.iter().flat_map(|s| s.lease.iter().copied().zip(s.lease_at.iter().copied())).collect();
            calls.sort_by_key(|c| std::cmp::Reverse(c.0));
            calls.truncate(3);
            calls
        },
        heartbeat: latency(stats.iter().flat_map(|s| s.heartbeat.iter().copied()).collect()),
        report: latency(stats.iter().flat_map(|s| s.report.iter().copied()).collect()),
        empty_polls: stats.iter().map(|s| s.empty_polls).sum(),
        losses: lost.len() + lost_calls,
        loss_example,
        attempts: check.attempts,
        retried: check.retried,
        errors: errors.len(),
        first_error: errors.first().map(|e| (*e).clone()),
        per_node: (
            stats.iter().map(|s| s.completed).min().unwrap_or(0),
            stats.iter().map(|s| s.completed).max().unwrap_or(0),
        ),
        run_state: if check.succeeded == cfg.tasks as i64 && check.run_state == "running" {
            "left `running` with every task succeeded (a missed run finish)".to_owned()
        } else {
            check.run_state
        },
        timed_out: timed_out.load(Ordering::Acquire),
    })
}

#[derive(Debug, Clone)]
struct Shared {
    completed: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    target: usize,
    batch: usize,
}

#[derive(Debug, Default)]
struct NodeStats {
    lease: Vec<Duration>,
    /// When each lease call with work started, from the release, beside `lease`.
    lease_at: Vec<Duration>,
    heartbeat: Vec<Duration>,
    report: Vec<Duration>,
    empty_polls: usize,
    completed: usize,
    /// Attempts whose lease was lost, and how it showed.
    lost: Vec<(i64, String)>,
    /// Calls refused with `lease_lost` (409).
    lost_calls: usize,
    errors: Vec<String>,
    last_report: Option<Instant>,
}

impl NodeStats {
    fn failed(&mut self, call: &str, e: &SchedulerError) {
        if let SchedulerError::Api { code, .. } = e {
            if code == "lease_lost" {
                self.lost_calls += 1;
            }
        }
        self.errors.push(format!("{call}: {e}"));
    }
}

/// One node agent, until every task is done: a long poll for leases when it holds none, then,
/// as `switchyard node` does, each report of a finished batch asks for the next batch in the same
/// call (`lease` with `wait_ms: 0`), going back to a long poll only when that finds nothing.
/// Heartbeats go out every third of the TTL on their own, naming the attempts held. Under
/// `Pace::Hold` each batch "runs" that long before it is reported.
async fn agent(
    client: Client,
    node: String,
    shared: Shared,
    pace: Pace,
    seed: usize,
    mut go: watch::Receiver<bool>,
) -> NodeStats {
    let mut s = NodeStats::default();
    let _ = go.wait_for(|go| *go).await;
    let released = Instant::now();
    // Paced nodes are independent, as in a deployment: each starts at its own moment within the
    // first hold and holds each batch 0.5–1.5× the hold (a reproducible sequence per node), so
    // calls arrive spread out rather than in lock-step waves of 100.
    let mut rng = Jitter(0x9e37_79b9_7f4a_7c15 ^ (seed as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    if let Pace::Hold(hold) = pace {
        tokio::time::sleep(hold.mul_f64(rng.unit())).await;
    }
    let every = Duration::from_secs(LEASE_TTL_S) / 3;
    let mut last_beat = Instant::now();
    let mut held: Vec<i64> = Vec::new();
    // When the batch held now is done "running" (paced).
    let mut batch_due = Instant::now();
    let mut hold_for = move || match pace {
        Pace::Hold(hold) => hold.mul_f64(0.5 + rng.unit()),
        Pace::Drain => Duration::ZERO,
    };
    while !shared.done.load(Ordering::Acquire) && s.errors.len() < MAX_ERRORS {
        if last_beat.elapsed() >= every {
            let request = HeartbeatRequest {
                running: held.clone(),
                tails: held.iter().map(|&attempt| LogTail { attempt, text: String::new() }).collect(),
                ..HeartbeatRequest::default()
            };
            let t = Instant::now();
            match client.heartbeat(&node, &request).await {
                Ok(reply) => {
                    s.heartbeat.push(t.elapsed());
                    for stop in reply.stop {
                        s.lost.push((
                            stop.attempt,
                            format!("a heartbeat told the node to stop it ({})", stop.reason),
                        ));
                    }
                }
                Err(e) => s.failed("heartbeat", &e),
            }
            last_beat = Instant::now();
        }
        if held.is_empty() {
            let t = Instant::now();
            match client.lease(&node, &LeaseRequest { max: shared.batch, wait_ms: WAIT_MS }).await {
                Ok(leases) if leases.is_empty() => s.empty_polls += 1,
                Ok(leases) => {
                    s.lease.push(t.elapsed());
                    s.lease_at.push(t.duration_since(released));
                    held = leases.iter().map(|l| l.attempt).collect();
                    batch_due = Instant::now() + hold_for();
                }
                Err(e) => {
                    s.failed("lease", &e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        if batch_due > Instant::now() {
            tokio::time::sleep_until(batch_due.min(last_beat + every).into()).await;
            if Instant::now() < batch_due {
                continue; // heartbeat first, then go on "running"
            }
        }
        let reports: Vec<Report> = held.iter().map(|&attempt| Report::succeeded(attempt)).collect();
        let request = ReportRequest { reports, lease: Some(LeaseRequest { max: shared.batch, wait_ms: 0 }) };
        let t = Instant::now();
        match client.report(&node, &request).await {
            Ok(response) => {
                s.report.push(t.elapsed());
                s.last_report = Some(Instant::now());
                let mut accepted = 0;
                for (attempt, result) in held.iter().zip(&response.results) {
                    match result {
                        ReportResult::Accepted { task_state: TaskState::Succeeded } => accepted += 1,
                        ReportResult::Accepted { task_state } => {
                            s.errors.push(format!("report: attempt {attempt} was accepted as {task_state}"));
                        }
                        ReportResult::Rejected { reason } => {
                            s.lost.push((*attempt, format!("report rejected: {reason}")));
                        }
                    }
                }
                s.completed += accepted;
                if shared.completed.fetch_add(accepted, Ordering::AcqRel) + accepted >= shared.target {
                    shared.done.store(true, Ordering::Release);
                }
                held = response.leases.iter().map(|l| l.attempt).collect();
                batch_due = Instant::now() + hold_for();
            }
            Err(e) => s.failed("report", &e),
        }
    }
    s
}

/// xorshift64*: a reproducible spread of start times and holds per node, without a dependency.
struct Jitter(u64);

impl Jitter {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
struct StoreCheck {
    attempts: i64,
    retried: i64,
    succeeded: i64,
    /// Attempts of the run that did not end `succeeded` (lost, or still running).
    not_succeeded: Vec<i64>,
    run_state: String,
}

fn db(e: sqlx::Error) -> String {
    format!("checking the store: {e}")
}

/// Waits until the run is no longer `running`, or `limit`; errors are left to `check_store`.
async fn wait_for_run_end(url: &str, run: i64, limit: Duration) {
    sqlx::any::install_default_drivers();
    let Ok(pool) = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await else { return };
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM job_runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
        if state.as_deref() != Some("running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
}

/// What the store recorded of the run, read after the server stopped.
async fn check_store(url: &str, run: i64) -> Result<StoreCheck, String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.map_err(db)?;
    let attempts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts a JOIN task_runs t ON t.id = a.task_run_id WHERE t.run_id = $1",
    )
    .bind(run)
    .fetch_one(&pool)
    .await
    .map_err(db)?;
    let not_succeeded: Vec<i64> = sqlx::query_scalar(
        "SELECT a.id FROM attempts a JOIN task_runs t ON t.id = a.task_run_id \
         WHERE t.run_id = $1 AND a.state <> 'succeeded' ORDER BY a.id",
    )
    .bind(run)
    .fetch_all(&pool)
    .await
    .map_err(db)?;
    let retried: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = $1 AND attempts > 1")
            .bind(run)
            .fetch_one(&pool)
            .await
            .map_err(db)?;
    let succeeded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = $1 AND state = 'succeeded'")
            .bind(run)
            .fetch_one(&pool)
            .await
            .map_err(db)?;
    let run_state: String = sqlx::query_scalar("SELECT state FROM job_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&pool)
        .await
        .map_err(db)?;
    pool.close().await;
    Ok(StoreCheck { attempts, retried, succeeded, not_succeeded, run_state })
}

/// A latency in ms to one decimal, or "—" when there was no call to measure (no heartbeat is
/// sent while tasks are reported at once).
fn ms(v: f64) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.1}") }
}
