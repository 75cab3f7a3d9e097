//! Switchyard benchmarks. They print figures and ratios and never fail on timing.
//!
//! `cargo run --release -p switchyard-bench -- plan` (or `bench/run plan`): generates 1,000 jobs
//! with 10,000 tasks, an egress policy of 5,000 rules (exact hosts, `*.suffix` wildcards, CIDRs)
//! and 200 pools, then times `switchyard plan`'s work in-process — reading and checking every file,
//! classifying, building the DAGs, placing — and the JSON rendering, over several runs.
//! `dispatch`, `load` (100 node agents against a `switchyard serve`), `cold-start` and `proxy` time the lease API, serverless cold starts and the egress
//! proxy; `kafka-ingest` and `pg-ingest` time ingestion into Delta next to the source alone
//! (see `ingest.rs`).

mod cold;
mod dispatch;
mod distributed;
mod generate;
mod ingest;
mod kdi;
mod load;
mod proxy;
mod s3;
mod transform;
mod transform_large;
mod util;

/// The same allocator as the `switchyard` binary, so the figures are the CLI's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use switchyard_config::{LoadOptions, load};

const RUNS: usize = 15;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "plan".to_owned());
    match which.as_str() {
        "plan" => bench_plan(),
        "dispatch" => bench_dispatch(),
        "cold-start" => bench_cold_start(),
        "proxy" => bench_proxy(),
        "load" => load::run(),
        "kafka-ingest" => ingest::kafka(),
        "pg-ingest" => ingest::postgres(),
        "transform" => transform::run(),
        "transform-large" => transform_large::large(),
        "transform-wide" => transform_large::wide(),
        "transform-distributed" => distributed::run(),
        "proxy-child" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            proxy::child(&args);
        }
        "kafka-child" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            kdi::child(&args);
        }
        "transform-child" => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            transform::child(&args);
        }
        "all" => {
            bench_plan();
            bench_dispatch();
            bench_cold_start();
            bench_proxy();
            ingest::kafka();
            ingest::postgres();
            transform::run();
        }
        other => {
            eprintln!(
                "unknown benchmark `{other}`; available: plan, dispatch, load, cold-start, proxy, kafka-ingest, pg-ingest, transform, transform-large, transform-wide, transform-distributed, all"
            );
            std::process::exit(2);
        }
    }
}

fn bench_plan() {
    let dir = std::env::temp_dir().join(format!("switchyard-bench-plan-{}", std::process::id()));
    let sizes = generate::Sizes { jobs: 1_000, tasks_per_job: 10, rules: 5_000, pools: 200 };
    let files = generate::write(&dir, &sizes).expect("generate inputs");
    println!(
        "plan benchmark: {} jobs, {} tasks, {} egress rules, {} pools ({:.1} MiB of YAML/TOML in {} files)",
        sizes.jobs,
        sizes.jobs * sizes.tasks_per_job,
        sizes.rules,
        sizes.pools,
        files.bytes as f64 / (1024.0 * 1024.0),
        files.count
    );
    let options = LoadOptions {
        paths: vec![dir.join("jobs")],
        settings: Some(dir.join("switchyard.toml")),
        egress: Some(dir.join("egress.yaml")),
        env: Some(Default::default()),
        inline: vec![],
    };
    let mut load_t = Vec::new();
    let mut plan_t = Vec::new();
    let mut json_t = Vec::new();
    let mut total_t = Vec::new();
    let mut summary = String::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let inputs = load(&options).expect("load");
        let t1 = Instant::now();
        let plan = switchyard_scheduler::plan(&inputs);
        let t2 = Instant::now();
        let json = serde_json::to_string(&plan).expect("json");
        let t3 = Instant::now();
        load_t.push(t1 - t0);
        plan_t.push(t2 - t1);
        json_t.push(t3 - t2);
        total_t.push(t3 - t0);
        let tasks: usize = plan.jobs.iter().map(|j| j.tasks.len()).sum();
        let placed = plan.jobs.iter().flat_map(|j| &j.tasks).filter(|t| t.pool.is_some()).count();
        summary = format!(
            "{} jobs, {tasks} tasks planned, {placed} placed on pools, {} errors, {} KiB of JSON",
            plan.jobs.len(),
            plan.errors.len(),
            json.len() / 1024
        );
    }
    println!("result: {summary}");
    println!("runs: {RUNS} (release build, in-process; machine: {} cores)", cores());
    for (name, times) in [
        ("read + check files", &mut load_t),
        ("classify + DAG + place", &mut plan_t),
        ("render JSON", &mut json_t),
        ("total plan", &mut total_t),
    ] {
        times.sort();
        println!(
            "  {name:<24} median {:>8.2} ms   min {:>8.2} ms   max {:>8.2} ms",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    let median = ms(total_t[total_t.len() / 2]);
    println!("target: total under 100 ms → median {median:.2} ms is {:.2}× the target", median / 100.0);
    if std::env::var_os("SWITCHYARD_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn bench_dispatch() {
    let tasks = 10_000;
    let trickle = 300;
    println!(
        "dispatch benchmark: {tasks} no-op tasks through the lease API, 4 node agents over loopback HTTP (machine: {} cores)",
        cores()
    );
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite://{}/state.db", dir.path().display());
    let admin = std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("sy_bench_{}", std::process::id());
    let pg = format!("{}/{name}", &admin[..admin.rfind('/').unwrap_or(admin.len())]);
    let mut rows = Vec::new();
    for (label, url) in [("SQLite", sqlite.clone()), ("PostgreSQL", pg.clone())] {
        if label == "PostgreSQL" {
            let created = rt.block_on(async {
                let pool = sqlx::PgPool::connect(&admin).await.ok()?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.ok()?;
                pool.close().await;
                Some(())
            });
            if created.is_none() {
                println!("  PostgreSQL: skipped (cannot reach {admin})");
                continue;
            }
        }
        println!("{label}:");
        let f = rt.block_on(dispatch::run(&url, tasks, trickle));
        rows.push((label, f));
    }
    rt.block_on(async {
        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&pool).await;
        }
    });
    println!(
        "  store        tasks/s   burst queue→start p50 / p99   idle queue→start p50 / p99 ({trickle} single tasks)"
    );
    for (label, f) in &rows {
        println!(
            "  {label:<11} {:>8.0}   {:>8.0} ms / {:>6.0} ms           {:>5.1} ms / {:>5.1} ms",
            f.tasks_per_s, f.burst_p50_ms, f.burst_p99_ms, f.idle_p50_ms, f.idle_p99_ms
        );
    }
    for (label, f) in &rows {
        println!(
            "  {label}: {:.0}× the ~37 durably recorded tasks/s of Python orchestrators here; target ≥ 5,000 tasks/s on SQLite and p99 ≤ 10 ms idle",
            f.tasks_per_s / 37.0
        );
    }
}

fn bench_cold_start() {
    let exe = std::env::var_os("SWITCHYARD_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/release/switchyard".into());
    if !exe.exists() {
        eprintln!(
            "cold-start needs the release binary at {} (bench/run builds it; or set SWITCHYARD_BIN)",
            exe.display()
        );
        std::process::exit(2);
    }
    let rounds = 20;
    println!(
        "serverless cold start: launcher decision → the new worker's first lease, {rounds} cold starts ({}; machine: {} cores)",
        exe.display(),
        cores()
    );
    let cold = runtime().block_on(cold::run(exe, rounds));
    if cold.is_empty() {
        println!("  no worker leased anything");
        return;
    }
    println!(
        "  median {} ms   min {} ms   max {} ms   (target ≤ 20 ms median)",
        cold[cold.len() / 2],
        cold[0],
        cold[cold.len() - 1]
    );
}

fn bench_proxy() {
    println!(
        "egress proxy: the gateway vs tinyproxy vs direct, CONNECT tunnels to a loopback origin, load from a separate process (machine: {} cores)",
        cores()
    );
    proxy::run();
}
