//! Transforms on serverless workers, end to end through `switchyard run`: a silver transform with
//! expectations and a gold aggregate over a lake table run in `switchyard worker` processes, and a
//! `run` task without destinations that tries to reach an HTTP server is refused by the worker
//! (it has no egress) — the server never sees a connection and the failure is classified `access`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_lake::arrow::array::{Float64Array, Int64Array, StringArray};

use super::harness::{Setup, write_bronze_t};

/// An HTTP server counting the connections it accepts.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_run_on_workers_and_workers_have_no_egress() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&format!("sqlite://{}/state.db", dir.path().display()), "10s");
    let lake = setup.use_lake(&dir.path().join("lake"), "");
    write_bronze_t(&lake).await;

    let (port, seen) = counting_server().await;
    setup.write_job(
        "pipeline.yaml",
        &format!(
            r#"job: pipeline
external_tables: [bronze.t]
tasks:
  - name: silver
    sql: SELECT id, provider, amount FROM bronze.t
    expectations:
      - {{ name: positive_amount, check: "amount > 0", on_violation: drop }}
    sink: {{ table: silver.t, mode: overwrite }}
  - name: gold
    sql: SELECT provider, count(*) AS n, sum(amount) AS total FROM silver.t GROUP BY provider
    sink: {{ table: gold.t, mode: overwrite }}
  - name: sneaky
    run:
      command: ["curl", "-sSf", "--max-time", "5", "http://127.0.0.1:{port}/"]
"#
        ),
    );
    let (code, stdout, stderr) = setup.run_jobs();
    assert_eq!(code, 1, "sneaky must fail:\n{stdout}\n{stderr}");
    assert!(stdout.contains("serverless workers have no egress"), "{stdout}");
    assert!(stdout.contains("failed (access)"), "{stdout}");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the outside server was reached from a worker");

    let silver = lake.read(&"silver.t".parse().unwrap(), None).await.unwrap();
    assert_eq!(silver.iter().map(|b| b.num_rows()).sum::<usize>(), 4, "the negative amount is dropped");
    let gold = lake.read(&"gold.t".parse().unwrap(), None).await.unwrap();
    let mut groups = Vec::new();
    for b in &gold {
        let p = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let t = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            groups.push((p.value(i).to_owned(), n.value(i), t.value(i)));
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(groups, vec![("a".to_owned(), 1, 10.0), ("b".to_owned(), 3, 20.0)]);
}
