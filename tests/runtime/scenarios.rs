//! The scenarios the runtime promises: failover after kill -9, refused nodes, control-plane
//! restarts, a 1,000-task DAG, retries, timeouts, cancellation, and two replicas on PostgreSQL.

use std::time::{Duration, Instant};

use switchyard_scheduler::engine::{AttemptState, RunState, TaskState};

use crate::harness::*;

fn sqlite_url(setup_dir: &std::path::Path) -> String {
    format!("sqlite://{}/state.db", setup_dir.display())
}

#[test]
fn switchyard_run_places_run_tasks_on_two_pools_and_serverless() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local");
    let out = std::process::Command::new(bin())
        .args(["run", "--settings"])
        .arg(root.join("switchyard.toml"))
        .arg("--egress")
        .arg(root.join("egress.yaml"))
        .arg(root.join("jobs"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: 1 job, 3/3 tasks succeeded"), "{stdout}");
    for needle in ["(127.0.0.2)", "(127.0.0.3)", "serverless", "worker-"] {
        assert!(stdout.contains(needle), "no {needle} in:\n{stdout}");
    }
    assert!(dir.path().join(".switchyard/state.db").exists(), "state lives under .switchyard/");

    // A failing task: exit 1 overall, the failure class, message and output tail in the summary.
    let jobs = dir.path().join("failing");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(
        jobs.join("f.yaml"),
        "job: failing\ntasks:\n  - name: broken\n    run: { command: [\"sh\", \"-c\", \"echo reading input; echo 'bad row 17' >&2; exit 3\"] }\n  - name: after\n    depends_on: [broken]\n    run: { command: [\"true\"] }\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["run", "--settings"])
        .arg(root.join("switchyard.toml"))
        .arg("--egress")
        .arg(root.join("egress.yaml"))
        .arg(&jobs)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed (data): `sh` exited with status 3: bad row 17"), "{stdout}");
    assert!(stdout.contains("| reading input"), "{stdout}");
    assert!(stdout.contains("upstream_failed"), "{stdout}");
    assert!(stdout.contains("FAILED: 1 job, 0/2 tasks succeeded"), "{stdout}");
}

#[test]
fn a_node_outside_its_pool_is_refused() {
    let setup = Setup::new(
        &sqlite_url(&std::env::temp_dir().join(format!("sy-refuse-{}", std::process::id()))),
        "5s",
    );
    let _cp = setup.serve();
    let settings = setup.path("switchyard.toml");
    let (code, _, stderr) = setup.run_cli(&[
        "node",
        "--pool",
        "egress-a",
        "--egress-ip",
        "127.0.0.3",
        "--control-plane",
        &setup.url(),
        "--settings",
        settings.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "egress IP 127.0.0.3 is not one of pool `egress-a`'s static egress IPs (127.0.0.2, 127.0.0.4)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: start the node with --egress-ip set to one of 127.0.0.2, 127.0.0.4"),
        "{stderr}"
    );
    let (code, _, stderr) = setup.run_cli(&[
        "node",
        "--pool",
        "egress-a",
        "--egress-ip",
        "192.0.2.77",
        "--control-plane",
        &setup.url(),
        "--settings",
        settings.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("egress IP 192.0.2.77 is not an address of this machine"), "{stderr}");
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("sy-refuse-{}", std::process::id())));
}

/// A node on a machine of its own has none of the control plane's folders: a `run` task starts
/// in `run.workdir` under the node's `--workdir`, and the program does not inherit the node's
/// `SWITCHYARD__*` settings overrides (which may carry the lake's credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_programs_in_its_own_workdir_without_its_settings_env() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let _cp = setup.serve();
    let client = setup.client(&setup.url());
    let node_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(node_dir.path().join("work/exports")).unwrap();
    std::fs::copy(setup.path("egress.yaml"), node_dir.path().join("egress.yaml")).unwrap();
    std::fs::write(node_dir.path().join("switchyard.toml"), "").unwrap();
    let token = client.create_token(switchyard_scheduler::engine::Role::Node, "own-dir").await.unwrap();
    std::fs::write(node_dir.path().join("node.token"), token).unwrap();
    let work = node_dir.path().join("work");
    let _node = setup.node_in(
        node_dir.path(),
        (&setup.url(), "egress-a", "127.0.0.2"),
        &["--workdir", work.to_str().unwrap()],
        &[("SWITCHYARD__LAKE__STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY", "not-for-programs")],
    );
    let job = setup.write_job(
        "where.yaml",
        "job: where\ntasks:\n  - name: export\n    run:\n      command: [\"sh\", \"-c\", \"pwd > where.txt; env > env.txt\"]\n      \
         workdir: exports\n      destinations: [\"127.0.0.1:9443\"]\n",
    );
    let run = setup.submit(&client, &job).await;
    let done = wait_finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    let exports = work.join("exports");
    let pwd = std::fs::read_to_string(exports.join("where.txt")).unwrap();
    assert_eq!(std::path::Path::new(pwd.trim()).canonicalize().unwrap(), exports.canonicalize().unwrap());
    assert!(!setup.path("jobs/exports").exists() && !setup.path("jobs/where.txt").exists());
    let env = std::fs::read_to_string(exports.join("env.txt")).unwrap();
    assert!(env.contains("SWITCHYARD_TASK=export"), "{env}");
    assert!(!env.contains("SWITCHYARD__") && !env.contains("not-for-programs"), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_node_mid_task_and_another_eligible_node_finishes_it() {
    let db = PgDb::create().await;
    let setup = Setup::new(&db.url, "2s");
    let _cp = setup.serve();
    let mut first = setup.node(&setup.url(), "egress-a", "127.0.0.2");
    let client = setup.client(&setup.url());
    // Wait for the first node to register, so the task goes to it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.nodes().await.unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = setup.write_job(
        "slow.yaml",
        "job: slow_export\ntasks:\n  - name: export\n    run:\n      command: [\"sh\", \"-c\", \"sleep 2; echo exported by $SWITCHYARD_ATTEMPT\"]\n      destinations: [\"127.0.0.1:9443\"]\n",
    );
    let run = setup.submit(&client, &job).await;
    let running = wait_for(&client, run, Duration::from_secs(20), "the export to start", |v| {
        v.tasks[0].state == TaskState::Running
    })
    .await;
    assert!(running.tasks[0].attempts[0].node_id.contains("127.0.0.2"), "{running:#?}");
    let _second = setup.node(&setup.url(), "egress-a", "127.0.0.4");
    first.kill9();

    let done = wait_finished(&client, run, Duration::from_secs(40)).await;
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    let attempts = &done.tasks[0].attempts;
    assert_eq!(attempts.first().unwrap().state, AttemptState::Lost, "{attempts:#?}");
    assert!(attempts.first().unwrap().node_id.contains("127.0.0.2"));
    let last = attempts.last().unwrap();
    assert_eq!(last.state, AttemptState::Succeeded);
    assert_eq!(last.egress_ip.as_deref(), Some("127.0.0.4"), "finished on the other eligible node");
    assert_attempts_never_overlap(&done);
    // The store itself: never two running attempts of one task.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE state = 'running'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live, 0);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_control_plane_mid_run_loses_nothing_and_runs_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let mut cp = setup.serve();
    let _node = setup.node(&setup.url(), "egress-b", "127.0.0.3");
    let client = setup.client(&setup.url());
    let job = setup.write_job(
        "chain.yaml",
        "job: chain\ntasks:\n  - { name: one, run: { command: [\"sleep\", \"0.8\"], destinations: [\"127.0.0.1:9444\"] } }\n  \
         - { name: two, depends_on: [one], run: { command: [\"sleep\", \"0.8\"], destinations: [\"127.0.0.1:9444\"] } }\n  \
         - { name: three, depends_on: [two], run: { command: [\"sleep\", \"0.8\"], destinations: [\"127.0.0.1:9444\"] } }\n",
    );
    let run = setup.submit(&client, &job).await;
    wait_for(&client, run, Duration::from_secs(20), "task two to start", |v| {
        v.tasks[1].state == TaskState::Running
    })
    .await;
    cp.kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _cp2 = setup.serve();
    let done = wait_finished(&client, run, Duration::from_secs(40)).await;
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    for task in &done.tasks {
        assert_eq!(task.attempts.len(), 1, "{} ran more than once: {:#?}", task.task, task.attempts);
        assert_eq!(task.attempts[0].state, AttemptState::Succeeded);
    }
}

#[test]
fn a_thousand_task_dag_runs_in_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    // 50 layers of 20 serverless `true` tasks; each depends on two tasks of the layer before.
    let mut yaml = String::from("job: big_dag\ntasks:\n");
    for layer in 0..50 {
        for i in 0..20 {
            yaml.push_str(&format!("  - name: t{layer}_{i}\n    run: {{ command: [\"true\"] }}\n"));
            if layer > 0 {
                yaml.push_str(&format!(
                    "    depends_on: [t{}_{}, t{}_{}]\n",
                    layer - 1,
                    i,
                    layer - 1,
                    (i + 7) % 20
                ));
            }
        }
    }
    setup.write_job("dag.yaml", &yaml);
    let (code, stdout, stderr) = setup.run_jobs();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("1000/1000 tasks succeeded"), "{}", stdout.lines().last().unwrap_or(""));
    // Order, from the store: every task started after its dependencies finished.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&sqlite_url(dir.path())).await.unwrap();
        let violations: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM task_deps d JOIN task_runs t ON t.id = d.task_run_id JOIN task_runs u ON u.id = d.dep_id \
             WHERE t.started_at < u.finished_at",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let edges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM task_deps").fetch_one(&pool).await.unwrap();
        assert_eq!(edges, 49 * 20 * 2);
        assert_eq!(violations, 0, "tasks started before their dependencies finished");
        pool.close().await;
    });
}

#[test]
fn retries_and_timeouts_behave_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let counter = dir.path().join("count");
    setup.write_job(
        "flaky.yaml",
        &format!(
            "job: flaky\ntasks:\n  - name: third_time_lucky\n    retries: {{ max: 3, backoff: 200ms }}\n    run:\n      command: [\"sh\", \"-c\", \"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ]\"]\n  \
             - name: too_slow\n    timeout: 1s\n    retries: {{ max: 1, backoff: 100ms }}\n    run: {{ command: [\"sleep\", \"30\"] }}\n",
            c = counter.display()
        ),
    );
    let started = Instant::now();
    let (code, stdout, _) = setup.run_jobs();
    assert_eq!(code, 1, "the timed-out task fails the run:\n{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "timeouts stopped the sleeps ({:?})",
        started.elapsed()
    );
    assert!(stdout.contains("failed on"), "{stdout}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&sqlite_url(dir.path())).await.unwrap();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT t.task, t.state, (SELECT COUNT(*) FROM attempts a WHERE a.task_run_id = t.id) FROM task_runs t ORDER BY t.id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows[0], ("third_time_lucky".into(), "succeeded".into(), 3), "{rows:?}");
        assert_eq!(rows[1], ("too_slow".into(), "timed_out".into(), 2), "one try and one retry: {rows:?}");
        let states: Vec<String> = sqlx::query_scalar("SELECT a.state FROM attempts a JOIN task_runs t ON t.id = a.task_run_id WHERE t.task = 'too_slow'")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(states, ["timed_out", "timed_out"]);
        pool.close().await;
    });
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_running_program() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "3s");
    let _cp = setup.serve();
    let client = setup.client(&setup.url());
    let pidfile = dir.path().join("pid");
    let job = setup.write_job(
        "long.yaml",
        &format!("job: long\ntasks:\n  - name: forever\n    run: {{ command: [\"sh\", \"-c\", \"echo $$ > {}; exec sleep 60\"] }}\n", pidfile.display()),
    );
    // Serverless: the control plane's launcher starts a worker process for it.
    let run = setup.submit(&client, &job).await;
    wait_for(&client, run, Duration::from_secs(30), "the task to start", |v| {
        v.tasks[0].state == TaskState::Running
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(alive(pid));
    let (code, stdout, stderr) = setup.run_cli(&[
        "cancel",
        &run.to_string(),
        "--settings",
        setup.path("switchyard.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("run {run} is cancelled")), "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive(pid), "the cancelled program is still running");
    let view = client.run(run).await.unwrap();
    assert_eq!(view.state, RunState::Cancelled);
    // `runs` shows it.
    let (code, stdout, _) =
        setup.run_cli(&["runs", "--settings", setup.path("switchyard.toml").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("job long  cancelled"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_fire_each_cron_slot_once_and_never_double_lease() {
    let db = PgDb::create().await;
    let setup = Setup::new(&db.url, "5s");
    let port_b = free_port();
    let _a = setup.serve();
    let _b = setup.serve_on(port_b);
    let url_b = format!("http://127.0.0.1:{port_b}");
    let _n1 = setup.node(&setup.url(), "egress-a", "127.0.0.2");
    let _n2 = setup.node(&url_b, "egress-a", "127.0.0.4");
    let _n3 = setup.node(&url_b, "egress-b", "127.0.0.3");
    let client = setup.client(&setup.url());

    let mut yaml = String::from("job: fan_out\ntasks:\n");
    for i in 0..120 {
        yaml.push_str(&format!(
            "  - {{ name: t{i}, run: {{ command: [\"true\"], destinations: [\"127.0.0.1:9444\"] }} }}\n"
        ));
    }
    let job = setup.write_job("fan.yaml", &yaml);
    let run = setup.submit(&client, &job).await;
    let cron = setup.write_job("cron.yaml", "job: every_minute\nschedule: \"* * * * *\"\ntasks:\n  - { name: tick, run: { command: [\"true\"], destinations: [\"127.0.0.1:9444\"] } }\n");
    let content = std::fs::read_to_string(&cron).unwrap();
    let request = switchyard_scheduler::api::types::SubmitRequest {
        manifests: vec![switchyard_scheduler::api::types::ManifestFile {
            path: cron.display().to_string(),
            content,
        }],
        run: false,
        full_refresh: false,
        select: vec![],
    };
    client.submit(&request).await.unwrap();

    let done = wait_finished(&client, run, Duration::from_secs(60)).await;
    assert_eq!(done.state, RunState::Succeeded);
    for task in &done.tasks {
        assert_eq!(task.attempts.len(), 1, "{} was leased more than once: {:#?}", task.task, task.attempts);
    }
    let nodes_used: std::collections::HashSet<_> =
        done.tasks.iter().map(|t| t.attempts[0].node_id.clone()).collect();
    assert!(nodes_used.len() >= 2, "work spread over nodes of both replicas: {nodes_used:?}");

    // Wait for the next minute boundary to pass on both replicas' clocks, then check the slot.
    let deadline = Instant::now() + Duration::from_secs(75);
    let runs = loop {
        let runs = client.runs(Some("every_minute"), 10).await.unwrap();
        if !runs.is_empty() && Instant::now() > deadline - Duration::from_secs(70) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            break client.runs(Some("every_minute"), 10).await.unwrap();
        }
        assert!(Instant::now() < deadline, "the cron slot never fired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut slots: Vec<i64> = runs.iter().filter_map(|r| r.slot).collect();
    let n = slots.len();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot fired more than once: {runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_finishing_short_tasks_and_handing_back_long_ones() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let _cp = setup.serve();
    let mut draining = setup.node(&setup.url(), "egress-a", "127.0.0.2");
    let client = setup.client(&setup.url());
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.nodes().await.unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = setup.write_job(
        "mixed.yaml",
        "job: mixed\ntasks:\n  - { name: short, run: { command: [\"sleep\", \"1\"], destinations: [\"127.0.0.1:9443\"] } }\n  \
         - { name: long, run: { command: [\"sleep\", \"20\"], destinations: [\"127.0.0.1:9443\"] } }\n",
    );
    let run = setup.submit(&client, &job).await;
    wait_for(&client, run, Duration::from_secs(20), "both tasks to start", |v| {
        v.tasks.iter().all(|t| t.state == TaskState::Running)
    })
    .await;
    // The node's drain timeout is 2s: `short` finishes inside it, `long` is handed back.
    let status = draining.terminate(Duration::from_secs(15)).expect("the node exits after draining");
    assert!(status.success(), "{status:?}");
    let view = client.run(run).await.unwrap();
    assert_eq!(view.tasks[0].state, TaskState::Succeeded, "{view:#?}");
    assert_eq!(view.tasks[1].attempts[0].state, AttemptState::HandedBack, "{view:#?}");
    assert!(matches!(view.tasks[1].state, TaskState::Queued | TaskState::Running), "{view:#?}");
    // Another node picks it up.
    let _other = setup.node(&setup.url(), "egress-a", "127.0.0.4");
    wait_for(&client, run, Duration::from_secs(20), "the long task to restart elsewhere", |v| {
        v.tasks[1].attempts.len() == 2
    })
    .await;
    client.cancel_run(run).await.unwrap();
}

/// A minimal HTTP server on loopback that answers every request with `body`.
async fn http_server(body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_tasks_reach_declared_destinations_only_through_the_node_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let allowed = http_server("partner data").await;
    let other = http_server("not yours").await;
    std::fs::write(
        setup.path("egress.yaml"),
        format!("destinations:\n  - {{ name: partner, host: 127.0.0.1, ports: [{allowed}], egress_ips: [127.0.0.2] }}\n"),
    )
    .unwrap();
    let out = dir.path().join("fetched");
    setup.write_job(
        "egress.yaml",
        &format!(
            "job: egress_check\ntasks:\n  - name: fetch\n    run:\n      command: [\"sh\", \"-c\", \"curl -sSf http://127.0.0.1:{allowed}/ > {out}\"]\n      destinations: [\"127.0.0.1:{allowed}\"]\n  \
             - name: sneaky\n    run:\n      command: [\"curl\", \"-sSf\", \"http://127.0.0.1:{other}/\"]\n      destinations: [\"127.0.0.1:{allowed}\"]\n",
            out = out.display()
        ),
    );
    let (code, stdout, stderr) = setup.run_jobs();
    assert_eq!(code, 1, "sneaky must fail:\n{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "partner data",
        "the declared destination was reached through the gateway"
    );
    assert!(stdout.contains("sneaky"), "{stdout}");
    // Classified by the gateway's refusal, with its hint — not a bare exit status.
    assert!(stdout.contains("failed (access): the node's gateway refused a connection"), "{stdout}");
    assert!(
        stdout.contains(&format!("127.0.0.1:{other}")) && stdout.contains("hint: add a destination"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_audited_and_a_dry_run_policy_applies_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&sqlite_url(dir.path()), "10s");
    let allowed = http_server("ok").await;
    let elsewhere = http_server("elsewhere").await;
    let rule = |ports: &str| {
        format!(
            "destinations:\n  - {{ name: partner, host: 127.0.0.1, ports: [{ports}], egress_ips: [127.0.0.2] }}\n"
        )
    };
    std::fs::write(setup.path("egress.yaml"), rule(&allowed.to_string())).unwrap();
    let _cp = setup.serve();
    let egress = setup.path("egress.yaml");
    let settings = setup.path("switchyard.toml");
    let _node = {
        let child = std::process::Command::new(bin())
            .args([
                "node",
                "--pool",
                "egress-a",
                "--egress-ip",
                "127.0.0.2",
                "--control-plane",
                &setup.url(),
                "--settings",
            ])
            .arg(&settings)
            .arg("--egress")
            .arg(&egress)
            .current_dir(setup.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Proc { child }
    };
    let client = setup.client(&setup.url());
    let job = setup.write_job(
        "probe.yaml",
        &format!(
            "job: probe\ntasks:\n  - name: reach_elsewhere\n    run:\n      command: [\"curl\", \"-sSf\", \"http://127.0.0.1:{elsewhere}/\"]\n      destinations: [\"127.0.0.1:{allowed}\"]\n"
        ),
    );
    let run = setup.submit(&client, &job).await;
    let done = wait_finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(done.state, RunState::Failed);
    // The denial reaches the control plane's audit (sent in batches).
    let deadline = Instant::now() + Duration::from_secs(10);
    let denial = loop {
        let records = client.audit(true, 10).await.unwrap();
        if let Some(r) = records.into_iter().find(|r| r.destination == format!("127.0.0.1:{elsewhere}")) {
            break r;
        }
        assert!(Instant::now() < deadline, "no denial audited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(denial.verdict, "denied");
    assert_eq!(denial.code.as_deref(), Some("denied_by_policy"));
    assert_eq!(denial.egress_ip, "127.0.0.2");
    assert!(
        denial.task.as_deref().is_some_and(|t| t.starts_with("attempt-")),
        "denials name the attempt: {denial:?}"
    );
    let failed = client.run(run).await.unwrap();
    assert_eq!(failed.tasks[0].error_class, Some(switchyard_config::FailureClass::Access), "{failed:#?}");
    let (code, stdout, _) =
        setup.run_cli(&["egress", "audit", "--denied", "--settings", settings.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("127.0.0.1:{elsewhere}")) && stdout.contains("denied (denied_by_policy)"),
        "{stdout}"
    );

    // A broken policy is refused with its location; nothing is applied.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "destinations:\n  - { name: x, host: \"*.com\", ports: [443], egress_ips: [127.0.0.2] }\n",
    )
    .unwrap();
    let (code, _, stderr) = setup.run_cli(&[
        "egress",
        "apply",
        dir.path().join("bad.yaml").to_str().unwrap(),
        "--settings",
        settings.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad.yaml:2:") && stderr.contains("covers a whole top-level domain"), "{stderr}");

    // Dry run: a policy that does not list `elsewhere` at all, applied in dry-run mode, lets the
    // connection through and records a would-be denial; the node picks it up without a restart.
    let dry = dir.path().join("dry.yaml");
    std::fs::write(&dry, rule(&allowed.to_string())).unwrap();
    let (code, stdout, stderr) = setup.run_cli(&[
        "egress",
        "apply",
        dry.to_str().unwrap(),
        "--dry-run",
        "--settings",
        settings.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("egress policy version 1 (dry_run)"), "{stdout}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let run = setup.submit(&client, &job).await;
    let done = wait_finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = client.audit(true, 20).await.unwrap();
        if records
            .iter()
            .any(|r| r.verdict == "would_deny" && r.destination == format!("127.0.0.1:{elsewhere}"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no would-be denial audited: {records:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
