//! `engine: distributed` through the control plane: `switchyard serve` plans the task onto the
//! Ballista cluster its settings name, a `switchyard worker` runs the query on
//! `switchyard ballista-scheduler` and one `switchyard executor` and commits the output itself;
//! the attempt's details carry the Ballista job, its stages and the executor, and the dashboard's
//! run page shows them (in Chromium).

use std::time::Duration;

use switchyard_scheduler::engine::RunState;

use super::harness::{Proc, Setup, bin, free_port, wait_finished, write_bronze_t};

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_port(port: u16) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < until, "nothing listens on {port} after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_transform_runs_on_ballista_through_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&format!("sqlite://{}/state.db", dir.path().display()), "10s");
    let port = free_port();
    let scheduler_url = format!("df://127.0.0.1:{port}");
    let lake = setup.use_lake(
        &dir.path().join("lake"),
        &format!("\n[transform.ballista]\nscheduler = \"{scheduler_url}\"\n"),
    );
    write_bronze_t(&lake).await;
    let settings = setup.path("switchyard.toml");
    let settings = settings.to_str().unwrap();
    let spawn = |args: &[&str]| {
        let child = std::process::Command::new(bin())
            .args(args)
            .args(["--settings", settings])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Proc { child }
    };
    let _scheduler = spawn(&["ballista-scheduler", "--listen", &format!("127.0.0.1:{port}")]);
    wait_port(port);
    let flight = free_port();
    let work = dir.path().join("executor");
    let grpc = free_port().to_string();
    let _executor = spawn(&[
        "executor",
        "--listen",
        &format!("127.0.0.1:{flight}"),
        "--grpc-port",
        &grpc,
        "--work-dir",
        work.to_str().unwrap(),
        "--heartbeat",
        "2",
    ]);
    wait_port(flight);

    let job = setup.write_job(
        "distributed.yaml",
        "job: distributed\nexternal_tables: [bronze.t]\ntasks:\n  - name: totals\n    engine: distributed\n    \
         sql: SELECT provider, count(*) AS n, sum(amount) AS total FROM bronze.t GROUP BY provider\n    \
         expectations:\n      - { name: positive_total, check: \"total > 0\", on_violation: fail }\n    \
         sink: { table: gold.totals, mode: overwrite }\n",
    );
    let _serve = setup.serve();
    let client = setup.client(&setup.url());
    let run = setup.submit(&client, &job).await;
    let view = wait_finished(&client, run, Duration::from_secs(120)).await;
    assert_eq!(view.state, RunState::Succeeded, "{view:#?}");
    let attempt = view.tasks[0].attempts.last().unwrap();
    let details = &attempt.details.as_ref().expect("details")["transform"];
    let d = &details["distributed"];
    assert_eq!(d["scheduler"], scheduler_url.as_str(), "{details:#}");
    assert!(d["job"].is_string(), "{details:#}");
    assert!(d["stages"].as_array().is_some_and(|s| s.len() >= 2), "an aggregate has two stages: {details:#}");
    assert_eq!(d["executors"].as_array().map(Vec::len), Some(1), "{details:#}");
    assert_eq!(details["output"]["rows"], 2, "{details:#}");
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    for b in lake.read(&"gold.totals".parse().unwrap(), None).await.unwrap() {
        use switchyard_lake::arrow::array::AsArray;
        use switchyard_lake::arrow::datatypes::{Float64Type, Int64Type};
        for i in 0..b.num_rows() {
            rows.push((
                b.column(0).as_string::<i32>().value(i).to_owned(),
                b.column(1).as_primitive::<Int64Type>().value(i),
                b.column(2).as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(rows, vec![("a".to_owned(), 2, 9.0), ("b".to_owned(), 3, 20.0)]);

    // The dashboard's run detail shows the same, in Chromium.
    let token = std::fs::read_to_string(setup.path("admin.token")).unwrap();
    browse_run_detail(&setup.url(), token.trim(), run, d["job"].as_str().unwrap());
}

/// `tests/browser/distributed.cjs` over the run page. Needs what `tests/dashboard.rs` needs
/// (Chromium, node, playwright-core), which the test command installs.
fn browse_run_detail(origin: &str, token: &str, run: i64, job: &str) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let chromium = std::env::var_os("SWITCHYARD_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), std::path::PathBuf::from);
    let modules = std::env::var_os("SWITCHYARD_PLAYWRIGHT_MODULES")
        .map_or_else(|| target.join("browser/node_modules"), std::path::PathBuf::from);
    for (path, what) in
        [(&chromium, "Chromium (Debian package `chromium`)"), (&modules, "playwright-core (npm)")]
    {
        assert!(path.exists(), "{what} not found at {}; run the test command (scripts/test)", path.display());
    }
    let artifacts = target.join("test-artifacts/dashboard");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = std::process::Command::new("node")
        .arg(root.join("tests/browser/distributed.cjs"))
        .args([origin, token, &run.to_string(), job])
        .arg(&artifacts)
        .env("NODE_PATH", &modules)
        .env("SWITCHYARD_CHROMIUM", &chromium)
        .output()
        .expect("run node (Debian package `nodejs`)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser check failed:\n{stdout}\n{stderr}\nscreenshot in {}",
        artifacts.display()
    );
}
