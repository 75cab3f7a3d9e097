//! The event log with real processes: two `switchyard serve` replicas on one PostgreSQL store
//! export to one lake while runs go on; replicas are killed with SIGKILL at arbitrary moments
//! (mid-batch, between a Delta commit and the store's cursor update, while holding the exporter
//! lease) and restarted. Afterwards the Delta table holds every event the store recorded exactly
//! once, with gapless sequences.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use switchyard_lake::{EventFilter, Lake};
use switchyard_scheduler::engine::RunState;

use super::harness::{PgDb, Setup, free_port, wait_finished};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_replicas_mid_export_neither_duplicates_nor_loses_events() {
    let db = PgDb::create().await;
    let setup = Setup::new(&db.url, "2s");
    let port_b = free_port();
    let mut a = setup.serve();
    let _b = setup.serve_on(port_b);
    let url_b = format!("http://127.0.0.1:{port_b}");
    let _node = setup.node(&url_b, "egress-a", "127.0.0.2");
    let client = setup.client(&url_b);
    let mut yaml = String::from("job: fan_out\ntasks:\n");
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - {{ name: t{i}, run: {{ command: [\"true\"], destinations: [\"127.0.0.1:9444\"] }} }}\n"
        ));
    }
    let job = setup.write_job("fan.yaml", &yaml);
    let mut runs = Vec::new();
    let pause = [350u64, 900, 120, 1_600, 600, 40];
    for (round, ms) in pause.iter().enumerate() {
        runs.push(setup.submit(&client, &job).await);
        tokio::time::sleep(Duration::from_millis(*ms)).await;
        a.kill9();
        // Sometimes straight back, sometimes after the dead replica's exporter lease ran out.
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
        }
        a = setup.serve();
    }
    for run in &runs {
        assert_eq!(wait_finished(&client, *run, Duration::from_secs(90)).await.state, RunState::Succeeded);
    }

    // Wait until the store says everything it recorded is in the table.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let total: i64 = loop {
        let (exported,): (i64,) =
            sqlx::query_as("SELECT exported FROM event_log_export").fetch_one(&pool).await.unwrap();
        let (total, waiting): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE sequence IS NULL OR sequence > $1) FROM event_log",
        )
        .bind(exported)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting == 0 && exported == total {
            break total;
        }
        assert!(Instant::now() < deadline, "export did not catch up: {waiting} of {total} events left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(a.terminate(Duration::from_secs(20)).is_some(), "replica a stops on SIGTERM");

    let lake = Lake::new(setup.path(".switchyard/lake").to_str().unwrap()).unwrap();
    let table = lake.read_events(&EventFilter::default()).await.unwrap();
    let sequences: Vec<i64> = table.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=total).collect::<Vec<_>>(), "every sequence once, in order");
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, sequence FROM event_log ORDER BY sequence")
        .fetch_all(&pool)
        .await
        .unwrap();
    let stored: Vec<(i64, i64)> = table.iter().map(|e| (e.id, e.sequence)).collect();
    assert_eq!(stored, rows, "the table holds exactly the store's events, under the same sequences");
    let finished = table.iter().filter(|e| e.event_type == "run_finished").count();
    assert_eq!(finished, runs.len(), "one run_finished per run");
    let tasks: HashSet<&str> =
        table.iter().filter(|e| e.event_type == "task_state").map(|e| e.origin.as_str()).collect();
    assert_eq!(tasks.len(), 40 * runs.len(), "every task run has events");
    pool.close().await;

    // `switchyard events` reads the same table.
    let (code, out, err) = setup.run_cli(&["events", "--json", "--last", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count() as i64, total);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["sequence"], 1);
    assert!(first["details"].is_object(), "{first}");
}
