//! `transform-distributed`: `transform-large`'s query (100,000,000 fact rows filtered, joined and
//! grouped) on one local worker and on Apache DataFusion Ballista clusters of one and of two
//! executors (`switchyard ballista-scheduler` / `switchyard executor` from `SWITCHYARD_BIN`), all
//! on this machine over the same local lake, runs alternating.
//!
//! On a machine with few cores the clusters cannot be faster: their executors share the cores the
//! local worker has to itself, and a distributed run adds planning on the scheduler, stages
//! written to and read back from shuffle files, and results fetched over Arrow Flight. What this
//! measures is that overhead, per run and per stage, not scale-out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::transform::{measure_full, median, runs};
use super::transform_large::{BUDGET, FACT_ROWS, lake_root};

/// A scheduler and its executors, stopped when dropped.
struct Cluster {
    url: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

fn wait_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on 127.0.0.1:{port} after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    fn start(bin: &Path, lake: &Path, executors: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = dir.path().join("switchyard.toml");
        std::fs::write(&settings, format!("[lake]\nroot = \"{}\"\n", lake.display())).expect("settings");
        let log = |name: String| std::fs::File::create(dir.path().join(name)).expect("log");
        let port = free_port();
        let mut children = vec![
            Command::new(bin)
                .args(["ballista-scheduler", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--settings")
                .arg(&settings)
                .stdout(log("scheduler.log".into()))
                .stderr(log("scheduler.err".into()))
                .spawn()
                .expect("scheduler"),
        ];
        wait_port(port);
        let url = format!("df://127.0.0.1:{port}");
        let cores = super::cores().to_string();
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            children.push(
                Command::new(bin)
                    .args(["executor", "--scheduler", &url, "--listen", &format!("127.0.0.1:{flight}")])
                    .args(["--grpc-port", &grpc.to_string(), "--slots", &cores, "--heartbeat", "2"])
                    .arg("--work-dir")
                    .arg(dir.path().join(format!("executor-{i}")))
                    .arg("--settings")
                    .arg(&settings)
                    .stdin(Stdio::null())
                    .stdout(log(format!("executor-{i}.log")))
                    .stderr(log(format!("executor-{i}.err")))
                    .spawn()
                    .expect("executor"),
            );
            wait_port(flight);
        }
        // Executors register with their first poll.
        std::thread::sleep(Duration::from_secs(3));
        Cluster { url, children, _dir: dir }
    }
}

#[derive(Default)]
struct Side {
    seconds: Vec<f64>,
    job_ms: Vec<f64>,
    stages: usize,
    rows: u64,
    peak_kib: Vec<f64>,
}

pub(crate) fn run() {
    let bin = std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/release/switchyard".into());
    if !bin.exists() {
        eprintln!(
            "transform-distributed needs the release binary at {} (bench/run builds it)",
            bin.display()
        );
        std::process::exit(2);
    }
    println!(
        "transform-distributed: {FACT_ROWS} fact rows, local worker (budget {} MiB) vs Ballista with 1 and 2 executors (machine: {} cores, everything on it)",
        BUDGET >> 20,
        super::cores()
    );
    let root = lake_root();
    let root_s = root.to_str().expect("utf-8").to_owned();
    let clusters = [Cluster::start(&bin, &root, 1), Cluster::start(&bin, &root, 2)];
    let exe = std::env::current_exe().expect("bench executable");
    let names = ["local worker", "Ballista, 1 executor", "Ballista, 2 executors"];
    let mut sides: Vec<Side> = (0..3).map(|_| Side::default()).collect();
    for i in 0..runs() {
        for (k, side) in sides.iter_mut().enumerate() {
            let table = format!("bench.dist_out_{k}_{i}");
            let mut c = Command::new(&exe);
            c.args(["transform-child", &root_s, &table, "agg", &BUDGET.to_string()]);
            if k > 0 {
                c.arg(&clusters[k - 1].url);
            }
            let started = Instant::now();
            if let Some(((s, rows, kib), v)) = measure_full(c) {
                let d = &v["distributed"];
                let job = d["ran_ms"].as_f64();
                let stages = d["stages"].as_array().map_or(0, Vec::len);
                println!(
                    "  {} run {}: {s:.2} s ({:.2} s with process start), {rows} rows out, worker peak {:.0} MiB{}",
                    names[k],
                    i + 1,
                    started.elapsed().as_secs_f64(),
                    kib as f64 / 1024.0,
                    job.map_or(String::new(), |j| format!(
                        ", job {:.2} s on the cluster in {stages} stages",
                        j / 1000.0
                    ))
                );
                side.seconds.push(s);
                side.rows = rows;
                side.stages = stages;
                side.peak_kib.push(kib as f64);
                if let Some(j) = job {
                    side.job_ms.push(j);
                }
            }
            let _ = std::fs::remove_dir_all(root.join("bench").join(format!("dist_out_{k}_{i}")));
        }
    }
    let Some(local) = sides.first().filter(|s| !s.seconds.is_empty()).map(|s| median(&s.seconds)) else {
        println!("  no local run succeeded");
        return;
    };
    println!(
        "\n  | engine | median s | input rows/s | ÷ local | stages | job on cluster (median) | overhead vs local | per stage | worker peak MiB |"
    );
    println!("  | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (k, side) in sides.iter().enumerate() {
        if side.seconds.is_empty() {
            println!("  | {} | failed | | | | | | | |", names[k]);
            continue;
        }
        let s = median(&side.seconds);
        let (job, overhead, per_stage) = if k == 0 {
            ("—".to_owned(), "—".to_owned(), "—".to_owned())
        } else {
            let job = median(&side.job_ms) / 1000.0;
            let over = s - local;
            (
                format!("{job:.2} s"),
                format!("{over:+.2} s"),
                format!("{:+.2} s", over / side.stages.max(1) as f64),
            )
        };
        println!(
            "  | {} | {s:.2} | {:.0} | {:.2}× | {} | {job} | {overhead} | {per_stage} | {:.0} |",
            names[k],
            FACT_ROWS as f64 / s,
            local / s,
            if k == 0 { "—".to_owned() } else { side.stages.to_string() },
            median(&side.peak_kib) / 1024.0
        );
    }
    let rows: Vec<u64> = sides.iter().filter(|s| !s.seconds.is_empty()).map(|s| s.rows).collect();
    if rows.windows(2).any(|w| w[0] != w[1]) {
        println!("  NOTE: the engines wrote different row counts: {rows:?}");
    }
    println!(
        "  Two executors on {} cores share the cores one worker has to itself: this shows the distributed engine's overhead, not scale-out.",
        super::cores()
    );
}
