//! Serverless cold start: from the launcher's decision to start a worker (the moment it spawns
//! the process) to that worker's first lease — process start, settings, registration, long poll.
//! Each round waits for the previous worker to exit idle, so every start is cold.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_scheduler::api::PlanningInputs;
use switchyard_scheduler::control_plane::{ControlPlaneOptions, run_control_plane};
use switchyard_scheduler::engine::{Engine, EngineConfig, RunState};
use switchyard_scheduler::launcher::{Launcher, LocalProcessLauncher, ScalePolicy, WorkerCommand};
use switchyard_scheduler::plan::Compute;
use switchyard_scheduler::spec::{JobSpec, TaskSpec};
use switchyard_scheduler::store::Store;

pub(crate) async fn run(exe: PathBuf, rounds: usize) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap();
    let engine = Engine::new(
        store,
        EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings: Default::default() },
    );
    let token_file = dir.path().join("admin.token");
    engine.ensure_admin_token(&token_file).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let command = WorkerCommand {
        exe,
        args: vec![
            "worker".into(),
            "--control-plane".into(),
            url,
            "--token-file".into(),
            token_file.display().to_string(),
            "--idle-timeout".into(),
            "300ms".into(),
        ],
        env: vec![("RUST_LOG".into(), "error".into())],
        stdin: None,
        netns: None,
    };
    let launcher = Arc::new(LocalProcessLauncher::new(command));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let policy = ScalePolicy { max_workers: 1, slots_per_worker: 1, interval: Duration::from_millis(5) };
    let options = ControlPlaneOptions {
        listener,
        tls: None,
        planning: PlanningInputs::default(),
        tick: Duration::from_millis(500),
    };
    let cp =
        tokio::spawn(run_control_plane(engine.clone(), options, Some((launcher.clone(), policy)), stop_rx));
    let task = TaskSpec::command("one", Compute::Serverless, &[], &["true"]);
    engine
        .upsert_jobs(&[JobSpec {
            job: "cold".into(),
            schedule: None,
            tasks: vec![task],
            sla_ms: None,
            expected_interval_ms: None,
        }])
        .await
        .unwrap();
    for _ in 0..rounds {
        while launcher.live() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let run = engine.trigger("cold").await.unwrap();
        while engine.views().run_state(run).await.unwrap() == RunState::Running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut cold: Vec<i64> = engine
        .views()
        .nodes()
        .await
        .unwrap()
        .iter()
        .filter_map(|n| Some(n.first_lease_at? - n.launched_at?))
        .collect();
    cold.sort_unstable();
    let _ = stop.send(true);
    let _ = cp.await;
    launcher.stop_all();
    cold
}
