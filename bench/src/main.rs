//! Switchyard benchmarks. They print figures and ratios and never fail on timing.
//!
//! `cargo run --release -p switchyard-bench -- plan` (or `bench/run plan`): generates 1,000 jobs
//! with 10,000 tasks, an egress policy of 5,000 rules (exact hosts, `*.suffix` wildcards, CIDRs)
//! and 200 pools, then times `switchyard plan`'s work in-process — reading and checking every file,
//! classifying, building the DAGs, placing — and the JSON rendering, over several runs.

mod generate;

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
        other => {
            eprintln!("unknown benchmark `{other}`; available: plan");
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
