//! `transform-large` and `transform-wide`: the transform benchmark's tables at 100,000,000 fact
//! rows (generated once under `target/bench-data/`, reused by later runs), with the worker's
//! budget at 2 GiB.
//!
//! - `transform-large`: the 10M benchmark's filter + join + group-by, against polars' streaming
//!   engine (`collect(engine="streaming")`) writing the same Delta table with Python's deltalake.
//! - `transform-wide`: a filtered projection returning most of the input (with an expectation
//!   dropping implausible amounts), to show the output streams: peak RSS stays under the budget.
//!   polars streams it too (`collect_batches` into `write_deltalake` as an Arrow stream).
//!
//! Each run is its own process, switchyard and polars alternating; medians of
//! `SWITCHYARD_BENCH_RUNS` (5) runs each; peak RSS is the kernel's VmHWM / ru_maxrss.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use switchyard_lake::Lake;

use super::transform::{generate, measure, measure_full, median, print_profile, runs};

pub(crate) const FACT_ROWS: i64 = 100_000_000;
pub(crate) const BUDGET: u64 = 2 << 30;

/// The 100M-row lake, generated on first use.
pub(crate) fn lake_root() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"));
    let root = target.join("bench-data").join("facts-100m");
    let done = root.join(".generated");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("bench data directory");
        println!("  generating {FACT_ROWS} fact rows under {} (once; later runs reuse them)", root.display());
        let lake = Lake::new(root.to_str().expect("utf-8")).expect("lake");
        super::runtime().block_on(generate(&lake, FACT_ROWS));
        std::fs::write(&done, "").expect("marker");
    }
    root
}

struct Side {
    seconds: Vec<f64>,
    peak_kib: Vec<u64>,
    rows: u64,
}

impl Side {
    fn new() -> Side {
        Side { seconds: Vec::new(), peak_kib: Vec::new(), rows: 0 }
    }
    fn rate(&self) -> f64 {
        FACT_ROWS as f64 / median(&self.seconds)
    }
    fn peak_mib(&self) -> f64 {
        median(&self.peak_kib.iter().map(|k| *k as f64).collect::<Vec<_>>()) / 1024.0
    }
}

fn compare(name: &str, query: &str) {
    println!(
        "{name}: {FACT_ROWS} fact rows, budget {} MiB (machine: {} cores)",
        BUDGET >> 20,
        super::cores()
    );
    let root = lake_root();
    let root = root.to_str().expect("utf-8").to_owned();
    let out = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("bench executable");
    let python = std::env::var("SWITCHYARD_BENCH_PYTHON").ok();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/transform_polars.py");
    let (mut ours, mut theirs) = (Side::new(), Side::new());
    let mut profiles = Vec::new();
    for i in 0..runs() {
        let table = format!("bench.{query}_out_{i}");
        let mut c = Command::new(&exe);
        c.args(["transform-child", &root, &table, query, &BUDGET.to_string()]);
        let started = Instant::now();
        if let Some(((s, rows, kib), v)) = measure_full(c) {
            profiles.push(v["profile"].clone());
            println!(
                "  switchyard run {}: {s:.2} s ({:.2} s with process start), {rows} rows out, peak {:.0} MiB, spilled {} MiB",
                i + 1,
                started.elapsed().as_secs_f64(),
                kib as f64 / 1024.0,
                v["spilled"].as_u64().unwrap_or(0) >> 20
            );
            ours.seconds.push(s);
            ours.peak_kib.push(kib);
            ours.rows = rows;
        }
        // Each run's output is deleted at once: 100M rows written ten times would fill the disk.
        let _ = std::fs::remove_dir_all(Path::new(&root).join("bench").join(format!("{query}_out_{i}")));
        let Some(py) = &python else {
            println!("  polars: skipped (SWITCHYARD_BENCH_PYTHON not set; bench/run sets it)");
            continue;
        };
        let target = out.path().join(format!("polars_{i}"));
        let mut c = Command::new(py);
        c.arg(&script).arg(&root).arg(&target).arg(if query == "wide" { "wide" } else { "streaming" });
        if let Some((s, rows, kib)) = measure(c) {
            println!(
                "  polars run {}:     {s:.2} s, {rows} rows out, peak {:.0} MiB",
                i + 1,
                kib as f64 / 1024.0
            );
            theirs.seconds.push(s);
            theirs.peak_kib.push(kib);
            theirs.rows = rows;
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    if !ours.seconds.is_empty() {
        println!(
            "  switchyard: median {:.0} input rows/s, peak {:.0} MiB ({:.2}× the budget)",
            ours.rate(),
            ours.peak_mib(),
            ours.peak_mib() / (BUDGET >> 20) as f64
        );
        print_profile(&profiles);
    }
    if !theirs.seconds.is_empty() {
        println!("  polars:     median {:.0} input rows/s, peak {:.0} MiB", theirs.rate(), theirs.peak_mib());
    }
    if !ours.seconds.is_empty() && !theirs.seconds.is_empty() {
        if ours.rows != theirs.rows {
            println!(
                "  NOTE: the outputs differ: switchyard {} rows, polars {} rows",
                ours.rows, theirs.rows
            );
        }
        println!(
            "  ratio switchyard/polars: {:.2}× rows/s, {:.2}× peak memory",
            ours.rate() / theirs.rate(),
            ours.peak_mib() / theirs.peak_mib()
        );
    }
}

pub(crate) fn large() {
    compare("transform-large", "agg");
}

pub(crate) fn wide() {
    compare("transform-wide", "wide");
}
