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

/// Rows of `bronze.big`: enough that encoding the copy takes seconds in a debug build.
const BIG: i64 = 1_200_000;

/// The pids of `parent`'s children whose command line contains `needle`.
fn children(parent: i32, needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid …`: comm may hold spaces, so split after its closing paren.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid.and_then(|p| p.parse::<i32>().ok()) != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Files under `dir` other than the Delta log: a staged write's Parquet, finished or not.
fn data_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries.flatten().map(|e| e.path()).filter(|p| !p.ends_with("_delta_log")).collect()
}

/// kill -9 of the worker while it streams a large output into the table: nothing of it is
/// visible (the table does not exist until the commit), the control plane gives the task to a
/// new worker once the lease lapses, and that attempt commits every row exactly once, in one
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_write_leaves_nothing_visible_and_the_retry_commits_once() {
    use switchyard_lake::arrow::array::{ArrayRef, StringArray};
    use switchyard_lake::arrow::record_batch::RecordBatch;
    use switchyard_scheduler::engine::{AttemptState, RunState};

    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(&format!("sqlite://{}/state.db", dir.path().display()), "3s");
    let lake_dir = dir.path().join("lake");
    let lake = setup.use_lake(&lake_dir, "");
    let big: switchyard_config::value::TableName = "bronze.big".parse().unwrap();
    for start in (0..BIG).step_by(300_000) {
        let ids: Vec<i64> = (start..start + 300_000).collect();
        let payload = StringArray::from_iter_values(ids.iter().map(|i| format!("{:>96}", i * 7_919 % BIG)));
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("payload", Arc::new(payload) as ArrayRef),
        ])
        .unwrap();
        lake.commit(&big, vec![batch], switchyard_lake::WriteMode::Append, &[]).await.unwrap();
    }
    let job = setup.write_job(
        "copy.yaml",
        "job: copy\nexternal_tables: [bronze.big]\ntasks:\n  - name: copy\n    \
         sql: SELECT id, payload FROM bronze.big\n    sink: { table: silver.big, mode: overwrite }\n",
    );
    let serve = setup.serve();
    let client = setup.client(&setup.url());
    let run = setup.submit(&client, &job).await;

    let out_dir = lake_dir.join("silver").join("big");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let killed = loop {
        assert!(std::time::Instant::now() < deadline, "no worker started writing silver.big");
        if !data_files(&out_dir).is_empty() {
            if let Some(&worker) = children(serve.pid(), "worker").first() {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker), nix::sys::signal::Signal::SIGKILL)
                    .unwrap();
                break worker;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let silver: switchyard_config::value::TableName = "silver.big".parse().unwrap();
    assert_eq!(
        lake.version(&silver).await.unwrap(),
        None,
        "worker {killed} was killed mid-write, yet silver.big has a version"
    );

    let view = super::harness::wait_finished(&client, run, std::time::Duration::from_secs(180)).await;
    assert_eq!(view.state, RunState::Succeeded, "{view:#?}");
    let attempts = &view.tasks[0].attempts;
    assert!(
        attempts.iter().any(|a| a.state == AttemptState::Lost),
        "the killed attempt is lost: {attempts:#?}"
    );
    assert_eq!(attempts.last().unwrap().state, AttemptState::Succeeded, "{attempts:#?}");
    let rows = lake.read(&silver, None).await.unwrap();
    let (mut count, mut sum) = (0i64, 0i64);
    for b in &rows {
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
        count += ids.len() as i64;
        sum += ids.values().iter().sum::<i64>();
    }
    assert_eq!((count, sum), (BIG, (0..BIG).sum()), "every row exactly once");
    assert_eq!(
        lake.version(&silver).await.unwrap(),
        Some(0),
        "created by the one commit that carries the rows"
    );
}
