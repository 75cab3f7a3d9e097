//! `transform`: a 10,000,000-row Delta fact table (generated here) filtered, joined to a
//! 100,000-row dimension and aggregated by group, written to Delta — by Switchyard's transform
//! (in a child process, so its peak memory is its own) and by polars (Python, in the venv
//! `bench/run` creates) over the same tables, in the same run. Rows/s count input fact rows.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use switchyard_config::manifest::SinkSpec;
use switchyard_config::value::TableName;
use switchyard_lake::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Lake, WriteMode};

const FACT_ROWS: i64 = 10_000_000;
const MEMBERS: i64 = 100_000;
const BATCH: i64 = 1_000_000;
/// A worker's default budget (`[serverless] memory_limit`), which the runs get as a worker would.
const WORKER_BUDGET: u64 = 1 << 30;

/// Runs per side: `SWITCHYARD_BENCH_RUNS`, at least 5 by default.
pub(crate) fn runs() -> usize {
    std::env::var("SWITCHYARD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

pub(crate) const QUERY: &str = "SELECT d.region, d.segment, count(*) AS claims, sum(f.amount) AS total, avg(f.amount) AS mean \
     FROM bench.facts f JOIN bench.members d ON f.member_id = d.member_id \
     WHERE f.status = 'paid' AND f.amount > 10 GROUP BY d.region, d.segment";

/// The wide-output case: a filtered projection returning most of its input, with an
/// expectation dropping implausible amounts (polars applies the same filter).
pub(crate) const WIDE_QUERY: &str =
    "SELECT claim_id, member_id, amount, status FROM bench.facts f WHERE f.amount > 10";

fn table(name: &str) -> TableName {
    name.parse().expect("table name")
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub(crate) async fn generate(lake: &Lake, fact_rows: i64) {
    const STATUS: [&str; 3] = ["paid", "denied", "pending"];
    let started = Instant::now();
    for start in (0..fact_rows).step_by(BATCH as usize) {
        let ids: Vec<i64> = (start..start + BATCH).collect();
        // A cheap deterministic scramble so members and amounts are not sorted.
        let mix = |i: i64| (i.wrapping_mul(2_654_435_761) >> 7).rem_euclid(1 << 30);
        let batch = RecordBatch::try_from_iter([
            ("claim_id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
            (
                "member_id",
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| mix(*i) % MEMBERS))) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|i| (mix(*i + 7) % 50_000) as f64 / 100.0),
                )) as ArrayRef,
            ),
            (
                "status",
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| STATUS[(mix(*i + 3) % 3) as usize]),
                )) as ArrayRef,
            ),
        ])
        .expect("batch");
        lake.commit(&table("bench.facts"), vec![batch], WriteMode::Append, &[]).await.expect("write facts");
    }
    let ids: Vec<i64> = (0..MEMBERS).collect();
    let members = RecordBatch::try_from_iter([
        ("member_id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        (
            "region",
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("region-{}", i % 10))))
                as ArrayRef,
        ),
        (
            "segment",
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("segment-{}", i % 5))))
                as ArrayRef,
        ),
    ])
    .expect("batch");
    lake.commit(&table("bench.members"), vec![members], WriteMode::Append, &[]).await.expect("write members");
    println!(
        "  generated {fact_rows} fact rows and {MEMBERS} members in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The child process: one transform run into `out` (`query`: `agg` or `wide`; a budget in bytes,
/// 0 for none), then its wall time and peak RSS as JSON.
pub(crate) fn child(args: &[String]) {
    let (lake_root, out) = (&args[0], &args[1]);
    let query = args.get(2).map_or("agg", String::as_str);
    let budget_bytes: u64 = args.get(3).and_then(|b| b.parse().ok()).unwrap_or(0);
    // `transform-distributed`: the Ballista scheduler to run the query on.
    let scheduler = args.get(4).map(String::as_str);
    let rt = super::runtime();
    let lake = Lake::new(lake_root).expect("lake");
    let sink: SinkSpec =
        serde_json::from_value(serde_json::json!({"table": out, "mode": "overwrite"})).expect("sink");
    let (sql, expectations) = match query {
        "wide" => (
            WIDE_QUERY,
            serde_json::from_value(serde_json::json!([
                {"name": "plausible_amount", "check": "amount < 490", "on_violation": "drop"}
            ]))
            .expect("expectations"),
        ),
        _ => (QUERY, Vec::new()),
    };
    let versions = Default::default();
    let request = switchyard_transform::Request {
        job: "bench",
        task: out,
        sql,
        sink: &sink,
        expectations: &expectations,
        full_refresh: true,
        input_versions: &versions,
        distributed: scheduler,
    };
    let spill = std::env::temp_dir().join(format!("switchyard-bench-spill-{}", std::process::id()));
    let budget = (budget_bytes > 0)
        .then(|| switchyard_transform::Budget { memory_bytes: budget_bytes, spill_dir: spill.clone() });
    let started = Instant::now();
    let outcome =
        rt.block_on(switchyard_transform::run_within(&lake, &request, budget.as_ref())).expect("transform");
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&spill);
    let rows = outcome.output.map_or(0, |w| w.rows);
    let spilled = outcome.memory.map_or(0, |m| m.spilled_bytes);
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "rows": rows, "peak_kib": peak_kib(std::process::id()), "spilled": spilled, "profile": outcome.profile, "distributed": outcome.distributed})
    );
}

/// VmHWM of this process, in KiB.
/// A process's peak resident set (VmHWM), KiB; 0 where /proc cannot tell.
pub(crate) fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Runs a child; its (seconds, output rows, peak KiB) and its whole JSON line.
pub(crate) fn measure_full(mut command: Command) -> Option<((f64, u64, u64), serde_json::Value)> {
    let output = command.output().ok()?;
    if !output.status.success() {
        println!("    failed: {}", String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let line = String::from_utf8_lossy(&output.stdout).lines().last()?.to_owned();
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    Some(((v["seconds"].as_f64()?, v["rows"].as_u64()?, v["peak_kib"].as_u64()?), v))
}

pub(crate) fn measure(command: Command) -> Option<(f64, u64, u64)> {
    measure_full(command).map(|(m, _)| m)
}

/// The median of each phase and operator over the runs' profiles (`details.transform.profile`).
pub(crate) fn print_profile(profiles: &[serde_json::Value]) {
    if profiles.is_empty() {
        return;
    }
    let phase = |name: &str| median(&profiles.iter().filter_map(|p| p[name].as_f64()).collect::<Vec<_>>());
    println!(
        "  switchyard profile, median ms: inputs {:.0}, plan {:.0}, refresh {:.0}, query {:.0}, write {:.0}, commit {:.0}",
        phase("inputs_ms"),
        phase("plan_ms"),
        phase("refresh_ms"),
        phase("query_ms"),
        phase("write_ms"),
        phase("commit_ms")
    );
    let mut names: Vec<String> = Vec::new();
    for p in profiles {
        for o in p["operators"].as_array().into_iter().flatten() {
            if let Some(n) = o["operator"].as_str() {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_owned());
                }
            }
        }
    }
    let mut ops: Vec<(String, f64)> = names
        .into_iter()
        .map(|n| {
            let times: Vec<f64> = profiles
                .iter()
                .filter_map(|p| {
                    p["operators"].as_array()?.iter().find(|o| o["operator"] == n.as_str())?["compute_ms"]
                        .as_f64()
                })
                .collect();
            (n, median(&times))
        })
        .collect();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    let ops: Vec<String> = ops.iter().map(|(n, t)| format!("{n} {t:.0}")).collect();
    println!("  operators, median CPU ms over partitions: {}", ops.join(", "));
}

pub(crate) fn run() {
    println!(
        "Transform: {FACT_ROWS} fact rows, filter + join to {MEMBERS} members + group-by, into Delta (machine: {} cores)",
        super::cores()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8").to_owned();
    let rt = super::runtime();
    let lake = Lake::new(&root).expect("lake");
    rt.block_on(generate(&lake, FACT_ROWS));
    // The same tables on the S3 server, when there is one; its runs alternate with the others.
    let s3 = super::s3::S3::from_env();
    let s3_root = s3.as_ref().map(|s3| {
        let root = s3.fresh_root("transform");
        println!("  and on the S3 server at {} ({root}):", s3.endpoint);
        rt.block_on(generate(&Lake::new(&root).expect("S3 lake"), FACT_ROWS));
        root
    });
    let exe = std::env::current_exe().expect("bench executable");
    let python = std::env::var("SWITCHYARD_BENCH_PYTHON").ok();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/transform_polars.py");
    let (mut ours, mut theirs, mut on_s3) = (Vec::new(), Vec::new(), Vec::new());
    let mut profiles = Vec::new();
    for i in 0..runs() {
        let mut c = Command::new(&exe);
        c.args(["transform-child", &root, &format!("bench.out_{i}"), "agg", &WORKER_BUDGET.to_string()]);
        if let Some(((s, rows, kib), v)) = measure_full(c) {
            println!(
                "  switchyard run {}: {s:.2} s, {rows} groups, peak {:.0} MiB",
                i + 1,
                kib as f64 / 1024.0
            );
            ours.push((s, kib));
            profiles.push(v["profile"].clone());
        }
        if let (Some(s3), Some(root)) = (&s3, &s3_root) {
            let before = s3.requests();
            let mut c = Command::new(&exe);
            c.args(["transform-child", root, &format!("bench.out_{i}"), "agg", &WORKER_BUDGET.to_string()]);
            if let Some((s, rows, kib)) = measure(c) {
                println!(
                    "  switchyard on S3 run {}: {s:.2} s, {rows} groups, peak {:.0} MiB; S3 requests: {}",
                    i + 1,
                    kib as f64 / 1024.0,
                    s3.requests().since(&before)
                );
                on_s3.push((s, kib));
            }
        }
        match &python {
            Some(py) => {
                let mut c = Command::new(py);
                c.arg(&script).arg(&root).arg(dir.path().join(format!("polars_out_{i}")));
                if let Some((s, rows, kib)) = measure(c) {
                    println!(
                        "  polars run {}:     {s:.2} s, {rows} groups, peak {:.0} MiB",
                        i + 1,
                        kib as f64 / 1024.0
                    );
                    theirs.push((s, kib));
                }
            }
            None => println!("  polars: skipped (SWITCHYARD_BENCH_PYTHON not set; bench/run sets it)"),
        }
    }
    let rate = |v: &[(f64, u64)]| FACT_ROWS as f64 / median(&v.iter().map(|x| x.0).collect::<Vec<_>>());
    let peak = |v: &[(f64, u64)]| median(&v.iter().map(|x| x.1 as f64).collect::<Vec<_>>()) / 1024.0;
    if !ours.is_empty() {
        println!("  switchyard: median {:.0} rows/s, peak {:.0} MiB", rate(&ours), peak(&ours));
        print_profile(&profiles);
    }
    if !theirs.is_empty() {
        println!("  polars:     median {:.0} rows/s, peak {:.0} MiB", rate(&theirs), peak(&theirs));
    }
    match (&s3, on_s3.is_empty(), ours.is_empty()) {
        (Some(_), false, false) => println!(
            "  switchyard with the lake on S3: median {:.0} rows/s, peak {:.0} MiB = {:.2}× the local-disk lake's rows/s (goal ≥ 0.7×)",
            rate(&on_s3),
            peak(&on_s3),
            rate(&on_s3) / rate(&ours)
        ),
        (None, _, _) => println!("  lake on S3: skipped ({})", super::s3::SKIPPED),
        _ => println!("  lake on S3: no successful runs to compare"),
    }
    if !ours.is_empty() && !theirs.is_empty() {
        println!(
            "  ratio switchyard/polars: {:.2}× rows/s, {:.2}× peak memory",
            rate(&ours) / rate(&theirs),
            peak(&ours) / peak(&theirs)
        );
    }
}
