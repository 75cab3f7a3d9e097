//! The run engine against real stores: SQLite and PostgreSQL, the same tests for both.

mod common;

use std::time::Duration;

use common::{TestDb, engine, job, node, task, worker};
use switchyard_config::FailureClass;
use switchyard_scheduler::engine::{Outcome, Report, ReportResult, RunState, TaskState};
use switchyard_scheduler::plan::Compute;

fn ok(attempt: i64) -> Report {
    Report::succeeded(attempt)
}

fn failed(attempt: i64) -> Report {
    Report {
        attempt,
        outcome: Outcome::Failed,
        exit_code: Some(1),
        error_class: Some(FailureClass::Data),
        message: Some("exit status 1".into()),
        log_tail: Some("boom".into()),
        details: None,
    }
}

const NO_WAIT: Duration = Duration::ZERO;

async fn dag_runs_in_dependency_order(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    // ingest (dedicated) → silver (serverless) → gold (serverless); side (dedicated, pool b) alone.
    e.upsert_jobs(&[job(
        "j",
        vec![
            task("ingest", Compute::Dedicated, &["egress-a"], &[]),
            task("silver", Compute::Serverless, &[], &["ingest"]),
            task("gold", Compute::Serverless, &[], &["silver"]),
            task("side", Compute::Dedicated, &["egress-b"], &[]),
        ],
    )])
    .await
    .unwrap();
    let run = e.trigger("j").await.unwrap();
    let a = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let b = e.register(&node("egress-b", "127.0.0.3")).await.unwrap().node_id;
    let w = e.register(&worker()).await.unwrap().node_id;

    assert!(e.lease(&w, 4, NO_WAIT).await.unwrap().is_empty(), "silver must wait for ingest");
    let la = e.lease(&a, 4, NO_WAIT).await.unwrap();
    assert_eq!(la.iter().map(|l| l.spec.name.as_str()).collect::<Vec<_>>(), ["ingest"]);
    let lb = e.lease(&b, 4, NO_WAIT).await.unwrap();
    assert_eq!(lb.iter().map(|l| l.spec.name.as_str()).collect::<Vec<_>>(), ["side"]);
    assert_eq!(
        e.complete(&a, &[ok(la[0].attempt)]).await.unwrap(),
        vec![ReportResult::Accepted { task_state: TaskState::Succeeded }]
    );
    let lw = e.lease(&w, 4, NO_WAIT).await.unwrap();
    assert_eq!(lw.iter().map(|l| l.spec.name.as_str()).collect::<Vec<_>>(), ["silver"]);
    e.complete(&w, &[ok(lw[0].attempt)]).await.unwrap();
    let lw = e.lease(&w, 4, NO_WAIT).await.unwrap();
    assert_eq!(lw[0].spec.name, "gold");
    e.complete(&w, &[ok(lw[0].attempt)]).await.unwrap();
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Running, "side is still running");
    e.complete(&b, &[ok(lb[0].attempt)]).await.unwrap();
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.state, RunState::Succeeded);
    assert!(view.tasks.iter().all(|t| t.state == TaskState::Succeeded && t.attempts.len() == 1));
    assert_eq!(view.tasks[0].attempts[0].egress_ip.as_deref(), Some("127.0.0.2"));
    e.store().close().await;
}
both_stores!(dag_order, dag_runs_in_dependency_order);

async fn retries_then_fails_and_propagates(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let mut flaky = task("flaky", Compute::Serverless, &[], &[]);
    flaky.max_retries = 2;
    e.upsert_jobs(&[job(
        "j",
        vec![
            flaky,
            task("after", Compute::Serverless, &[], &["flaky"]),
            task("after2", Compute::Serverless, &[], &["after"]),
        ],
    )])
    .await
    .unwrap();
    let run = e.trigger("j").await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    for attempt in 1..=3 {
        // The backoff is at most 10 ms · 2^(n-1); wait for the lease rather than sleeping blindly.
        let leases = e.lease(&w, 4, Duration::from_secs(2)).await.unwrap();
        assert_eq!(leases.len(), 1, "attempt {attempt}");
        assert_eq!(leases[0].number, attempt);
        let result = e.complete(&w, &[failed(leases[0].attempt)]).await.unwrap();
        let expected = if attempt < 3 { TaskState::Retrying } else { TaskState::Failed };
        assert_eq!(result, vec![ReportResult::Accepted { task_state: expected }]);
    }
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.state, RunState::Failed);
    assert_eq!(view.tasks[0].attempts.len(), 3);
    assert_eq!(view.tasks[0].error_class, Some(FailureClass::Data));
    assert_eq!(view.tasks[1].state, TaskState::UpstreamFailed);
    assert_eq!(view.tasks[2].state, TaskState::UpstreamFailed);
    assert_eq!(view.tasks[0].attempts[2].log_tail.as_deref(), Some("boom"));
    e.store().close().await;
}
both_stores!(retries, retries_then_fails_and_propagates);

async fn retries_follow_the_failure_class(db: &TestDb) {
    // A transform retries connectivity failures by default, not data ones; `retry_on` widens
    // that; a `run` program (above) retries every failure. Each attempt says why.
    use switchyard_config::manifest::RetryOn;
    use switchyard_scheduler::spec::Work;
    let e = engine(db, Duration::from_secs(30)).await;
    let transform = |name: &str, retry_on: Option<Vec<RetryOn>>| {
        let mut t = task(name, Compute::Serverless, &[], &[]);
        t.max_retries = 2;
        t.work =
            Work::Transform { sql: "SELECT 1".into(), sink: None, expectations: vec![], distributed: None };
        t.retry_on = retry_on;
        t
    };
    let report = |attempt: i64, class: FailureClass| Report {
        attempt,
        outcome: Outcome::Failed,
        exit_code: None,
        error_class: Some(class),
        message: Some(format!("{class} trouble")),
        log_tail: None,
        details: None,
    };
    e.upsert_jobs(&[job(
        "classes",
        vec![
            transform("bad_sql", None),
            transform("outage", None),
            transform("bad_sql_retried", Some(vec![RetryOn::Data])),
        ],
    )])
    .await
    .unwrap();
    let run = e.trigger("classes").await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    let leases = e.lease(&w, 4, NO_WAIT).await.unwrap();
    let attempt_of = |name: &str| leases.iter().find(|l| l.spec.name == name).unwrap().attempt;
    let results = e
        .complete(
            &w,
            &[
                report(attempt_of("bad_sql"), FailureClass::Data),
                report(attempt_of("outage"), FailureClass::Connectivity),
                report(attempt_of("bad_sql_retried"), FailureClass::Data),
            ],
        )
        .await
        .unwrap();
    let states: Vec<TaskState> = results
        .iter()
        .map(|r| match r {
            ReportResult::Accepted { task_state } => *task_state,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(states, [TaskState::Failed, TaskState::Retrying, TaskState::Retrying]);
    let view = e.views().run(run).await.unwrap();
    let why = |name: &str| {
        view.tasks.iter().find(|t| t.task == name).unwrap().attempts[0].retry.clone().unwrap_or_default()
    };
    assert!(why("bad_sql").starts_with("not retried: data failures are not retried"), "{}", why("bad_sql"));
    assert!(why("bad_sql").contains("retry_on"), "{}", why("bad_sql"));
    assert!(
        why("outage").starts_with("retrying (1 of 2): connectivity failures are retried"),
        "{}",
        why("outage")
    );
    assert!(why("bad_sql_retried").contains("the task's `retry_on`"), "{}", why("bad_sql_retried"));
    e.store().close().await;
}
both_stores!(retry_classes, retries_follow_the_failure_class);

async fn lost_lease_is_reclaimed_and_fenced(db: &TestDb) {
    let e = engine(db, Duration::from_millis(300)).await;
    e.upsert_jobs(&[job("j", vec![task("t", Compute::Dedicated, &["egress-a"], &[])])]).await.unwrap();
    let run = e.trigger("j").await.unwrap();
    let n1 = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let n2 = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let first = e.lease(&n1, 1, NO_WAIT).await.unwrap().remove(0);
    // n1 goes silent; n2 keeps heartbeating.
    tokio::time::sleep(Duration::from_millis(450)).await;
    e.heartbeat(&n2, &[], &[]).await.unwrap();
    assert_eq!(e.reclaim_expired().await.unwrap(), 1);
    assert_eq!(e.views().max_live_attempts_per_task().await.unwrap(), 0);
    let second = e.lease(&n2, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(second.task_run, first.task_run);
    assert!(second.attempt > first.attempt, "fencing tokens grow");
    assert_eq!(e.views().max_live_attempts_per_task().await.unwrap(), 1);
    // n1 comes back late: its report is rejected and its heartbeat tells it to stop.
    let late = e.complete(&n1, &[ok(first.attempt)]).await.unwrap();
    assert!(
        matches!(&late[0], ReportResult::Rejected { reason } if reason.contains("no longer holds its lease")),
        "{late:?}"
    );
    let reply = e.heartbeat(&n1, &[first.attempt], &[]).await.unwrap();
    assert_eq!(reply.stop.len(), 1);
    assert_eq!(reply.stop[0].reason, "lost");
    e.complete(&n2, &[ok(second.attempt)]).await.unwrap();
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.state, RunState::Succeeded);
    let states: Vec<&str> = view.tasks[0].attempts.iter().map(|a| a.state.as_str()).collect();
    assert_eq!(states, ["lost", "succeeded"]);
    e.store().close().await;
}
both_stores!(fencing, lost_lease_is_reclaimed_and_fenced);

async fn cancel_stops_running_attempts(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    e.upsert_jobs(&[job(
        "j",
        vec![task("long", Compute::Serverless, &[], &[]), task("next", Compute::Serverless, &[], &["long"])],
    )])
    .await
    .unwrap();
    let run = e.trigger("j").await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    let lease = e.lease(&w, 4, NO_WAIT).await.unwrap().remove(0);
    let view = e.cancel_run(run).await.unwrap();
    assert_eq!(view.state, RunState::Cancelled);
    assert!(view.tasks.iter().all(|t| t.state == TaskState::Cancelled));
    let reply = e.heartbeat(&w, &[lease.attempt], &[]).await.unwrap();
    assert_eq!(reply.stop[0].reason, "cancelled");
    assert!(matches!(e.complete(&w, &[ok(lease.attempt)]).await.unwrap()[0], ReportResult::Rejected { .. }));
    e.store().close().await;
}
both_stores!(cancel, cancel_stops_running_attempts);

async fn registration_checks_pool_and_ip(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let err = e.register(&node("egress-a", "127.0.0.9")).await.unwrap_err().to_string();
    assert!(
        err.contains("egress IP 127.0.0.9 is not one of pool `egress-a`'s static egress IPs (127.0.0.2)"),
        "{err}"
    );
    let err = e.register(&node("egress-z", "127.0.0.2")).await.unwrap_err().to_string();
    assert!(err.contains("pool `egress-z` is not defined"), "{err}");
    e.store().close().await;
}
both_stores!(registration, registration_checks_pool_and_ip);

async fn waiting_tasks_say_why(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    e.upsert_jobs(&[job("j", vec![task("t", Compute::Dedicated, &["egress-b"], &[])])]).await.unwrap();
    let run = e.trigger("j").await.unwrap();
    e.tick().await.unwrap();
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.tasks[0].waiting.as_deref(), Some("no node registered for eligible pool egress-b"));
    let mut one_slot = node("egress-b", "127.0.0.3");
    one_slot.slots = 1;
    let n = e.register(&one_slot).await.unwrap().node_id;
    e.upsert_jobs(&[job("k", vec![task("t", Compute::Dedicated, &["egress-b"], &[])])]).await.unwrap();
    let run2 = e.trigger("k").await.unwrap();
    e.lease(&n, 1, NO_WAIT).await.unwrap();
    e.tick().await.unwrap();
    let view = e.views().run(run2).await.unwrap();
    assert_eq!(view.tasks[0].waiting.as_deref(), Some("all 1 slots busy on pool egress-b"), "{view:?}");
    e.store().close().await;
}
both_stores!(waiting, waiting_tasks_say_why);

async fn continuous_tasks_restart(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let mut t = task("consume", Compute::Dedicated, &["egress-a"], &[]);
    t.continuous = true;
    e.upsert_jobs(&[job("j", vec![t])]).await.unwrap();
    let run = e.trigger("j").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    for _ in 0..3 {
        let lease = e.lease(&n, 1, Duration::from_secs(2)).await.unwrap().remove(0);
        let r = e.complete(&n, &[ok(lease.attempt)]).await.unwrap();
        assert_eq!(r, vec![ReportResult::Accepted { task_state: TaskState::Retrying }]);
    }
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Running);
    e.cancel_run(run).await.unwrap();
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Cancelled);
    e.store().close().await;
}
both_stores!(continuous, continuous_tasks_restart);

async fn many_tasks_never_double_leased(db: &TestDb) {
    // Two engines on one store act as two replicas; four nodes lease concurrently.
    let e1 = engine(db, Duration::from_secs(30)).await;
    let e2 = engine(db, Duration::from_secs(30)).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| task(&format!("t{i}"), Compute::Dedicated, &["egress-a", "egress-b"], &[]))
        .collect();
    e1.upsert_jobs(&[job("wide", tasks)]).await.unwrap();
    let run = e1.trigger("wide").await.unwrap();
    let mut handles = Vec::new();
    for i in 0..4 {
        let e = if i % 2 == 0 { e1.clone() } else { e2.clone() };
        let (pool, ip) = if i < 2 { ("egress-a", "127.0.0.2") } else { ("egress-b", "127.0.0.3") };
        let id = e.register(&node(pool, ip)).await.unwrap().node_id;
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let leases = e.lease(&id, 8, Duration::from_millis(200)).await.unwrap();
                if leases.is_empty() {
                    return done;
                }
                let reports: Vec<Report> = leases.iter().map(|l| ok(l.attempt)).collect();
                for r in e.complete(&id, &reports).await.unwrap() {
                    assert!(matches!(r, ReportResult::Accepted { .. }), "{r:?}");
                }
                done.extend(leases.into_iter().map(|l| l.task_run));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a task was leased twice");
    assert_eq!(all.len(), 200);
    // The last reports of four nodes can commit at the same moment; on PostgreSQL each may then
    // leave the run's end to the other, and the tick settles it (see `settle`).
    e1.tick().await.unwrap();
    assert_eq!(e1.views().run(run).await.unwrap().state, RunState::Succeeded);
    e1.store().close().await;
    e2.store().close().await;
}
both_stores!(no_double_lease, many_tasks_never_double_leased);

async fn reports_lease_the_next_batch(db: &TestDb) {
    // A report that asks for leases gets the next queued tasks in the same call and transaction,
    // a dependent its own report just queued included; nodes doing so at once never share a task.
    let e = engine(db, Duration::from_secs(30)).await;
    e.upsert_jobs(&[job(
        "chain",
        vec![
            task("a", Compute::Dedicated, &["egress-a"], &[]),
            task("b", Compute::Dedicated, &["egress-a"], &["a"]),
        ],
    )])
    .await
    .unwrap();
    let run = e.trigger("chain").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let first = e.lease(&n, 4, NO_WAIT).await.unwrap();
    assert_eq!(first.iter().map(|l| l.spec.name.as_str()).collect::<Vec<_>>(), ["a"]);
    let (results, next) = e.complete_then_lease(&n, &[ok(first[0].attempt)], 4).await.unwrap();
    assert_eq!(results, vec![ReportResult::Accepted { task_state: TaskState::Succeeded }]);
    assert_eq!(next.iter().map(|l| l.spec.name.as_str()).collect::<Vec<_>>(), ["b"]);
    let (_, none) = e.complete_then_lease(&n, &[ok(next[0].attempt)], 4).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Succeeded);

    let tasks: Vec<_> =
        (0..200).map(|i| task(&format!("t{i}"), Compute::Dedicated, &["egress-a"], &[])).collect();
    e.upsert_jobs(&[job("wide", tasks)]).await.unwrap();
    let run = e.trigger("wide").await.unwrap();
    let mut handles = Vec::new();
    for i in 0..4 {
        let e = e.clone();
        let id = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut leases = e.lease(&id, 8, Duration::from_millis(200)).await.unwrap();
            while !leases.is_empty() {
                let reports: Vec<Report> = leases.iter().map(|l| ok(l.attempt)).collect();
                done.extend(leases.iter().map(|l| l.task_run));
                let (results, next) = e.complete_then_lease(&id, &reports, 8 - i).await.unwrap();
                assert!(results.iter().all(|r| matches!(r, ReportResult::Accepted { .. })), "{results:?}");
                leases = next;
            }
            done
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a task was leased twice");
    assert_eq!(all.len(), 200);
    e.tick().await.unwrap();
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Succeeded);
    e.store().close().await;
}
both_stores!(report_leases, reports_lease_the_next_batch);

/// Two reports that commit at the same moment on PostgreSQL each see the other's task still
/// running, so neither queues the dependent nor finishes the run. The store is put in exactly the
/// state such a pair leaves (both tasks succeeded, nothing else done), and the tick must settle it.
async fn tick_settles_what_racing_reports_left_open(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    e.upsert_jobs(&[job(
        "fan-in",
        vec![
            task("a", Compute::Dedicated, &["egress-a"], &[]),
            task("b", Compute::Dedicated, &["egress-a"], &[]),
            task("c", Compute::Serverless, &[], &["a", "b"]),
        ],
    )])
    .await
    .unwrap();
    let run = e.trigger("fan-in").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let w = e.register(&worker()).await.unwrap().node_id;
    let leases = e.lease(&n, 4, NO_WAIT).await.unwrap();
    assert_eq!(leases.len(), 2);
    let sql = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let finish_behind_the_engines_back = |names: &'static str| {
        let sql = sql.clone();
        async move {
            sqlx::query(&format!(
                "UPDATE attempts SET state = 'succeeded' WHERE task_run_id IN \
                 (SELECT id FROM task_runs WHERE run_id = {run} AND task IN ({names}))"
            ))
            .execute(&sql)
            .await
            .unwrap();
            sqlx::query(&format!(
                "UPDATE task_runs SET state = 'succeeded' WHERE run_id = {run} AND task IN ({names})"
            ))
            .execute(&sql)
            .await
            .unwrap();
        }
    };
    finish_behind_the_engines_back("'a', 'b'").await;
    let state_of = |view: &switchyard_scheduler::views::RunView, name: &str| {
        view.tasks.iter().find(|t| t.task == name).unwrap().state
    };
    assert_eq!(state_of(&e.views().run(run).await.unwrap(), "c"), TaskState::Pending, "nothing queued c yet");
    e.tick().await.unwrap();
    assert_eq!(state_of(&e.views().run(run).await.unwrap(), "c"), TaskState::Queued, "the tick queues c");
    e.tick().await.unwrap();
    let lc = e.lease(&w, 4, NO_WAIT).await.unwrap();
    assert_eq!(lc.len(), 1, "queued once, leased once: {lc:?}");
    finish_behind_the_engines_back("'c'").await;
    assert_eq!(e.views().run(run).await.unwrap().state, RunState::Running);
    e.tick().await.unwrap();
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.state, RunState::Succeeded, "the tick finishes the run");
    assert!(view.finished_at.is_some());
    sql.close().await;
    e.store().close().await;
}
both_stores!(settle, tick_settles_what_racing_reports_left_open);

/// Heartbeats carry the output tails of running attempts (all of them in one statement); a tail
/// for an attempt the node does not hold changes nothing.
async fn heartbeat_keeps_output_tails(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let tasks = (0..3).map(|i| task(&format!("t{i}"), Compute::Dedicated, &["egress-a"], &[])).collect();
    e.upsert_jobs(&[job("tails", tasks)]).await.unwrap();
    let run = e.trigger("tails").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let other = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let mine = e.lease(&n, 2, NO_WAIT).await.unwrap();
    let theirs = e.lease(&other, 1, NO_WAIT).await.unwrap();
    let tails: Vec<(i64, String)> = mine
        .iter()
        .chain(&theirs)
        .map(|l| (l.attempt, format!("line of {} with 'quotes'", l.spec.name)))
        .collect();
    let attempts: Vec<i64> = mine.iter().map(|l| l.attempt).collect();
    assert!(e.heartbeat(&n, &attempts, &tails).await.unwrap().stop.is_empty());
    let view = e.views().run(run).await.unwrap();
    let tail_of = |attempt: i64| {
        view.tasks.iter().flat_map(|t| &t.attempts).find(|a| a.id == attempt).unwrap().log_tail.clone()
    };
    for l in &mine {
        assert_eq!(tail_of(l.attempt), Some(format!("line of {} with 'quotes'", l.spec.name)));
    }
    assert_eq!(tail_of(theirs[0].attempt), None, "another node's attempt is not touched");
    e.store().close().await;
}
both_stores!(tails, heartbeat_keeps_output_tails);

async fn cron_slot_fires_once_across_replicas(db: &TestDb) {
    let e1 = engine(db, Duration::from_secs(30)).await;
    let e2 = engine(db, Duration::from_secs(30)).await;
    let mut spec = job("every_minute", vec![task("t", Compute::Serverless, &[], &[])]);
    spec.schedule = Some("* * * * *".into());
    e1.upsert_jobs(&[spec]).await.unwrap();
    // Backdate the job so that the current minute's slot is due.
    sqlx::query("UPDATE jobs SET created_at = created_at - 120000")
        .execute(&sqlx::AnyPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    let mut joins = Vec::new();
    for e in [e1.clone(), e2.clone(), e1.clone(), e2.clone()] {
        joins.push(tokio::spawn(async move { e.tick().await.unwrap() }));
    }
    for j in joins {
        j.await.unwrap();
    }
    e1.tick().await.unwrap();
    let runs = e1.views().runs(Some("every_minute"), 100).await.unwrap();
    let slots: Vec<Option<i64>> = runs.iter().map(|r| r.slot).collect();
    assert!(runs.len() == 1 || (runs.len() == 2 && slots[0] != slots[1]), "one run per slot: {slots:?}");
    // A restarted control plane (a new engine on the same store) does not fire it again.
    let e3 = engine(db, Duration::from_secs(30)).await;
    e3.tick().await.unwrap();
    let again = e3.views().runs(Some("every_minute"), 100).await.unwrap();
    let mut distinct: Vec<_> = again.iter().map(|r| r.slot).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), again.len(), "each slot at most once: {distinct:?}");
    for e in [e1, e2, e3] {
        e.store().close().await;
    }
}
both_stores!(cron, cron_slot_fires_once_across_replicas);

async fn tokens_are_hashed_and_scoped(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let token = e.create_token(switchyard_scheduler::engine::Role::Viewer, "dash").await.unwrap();
    assert_eq!(e.authenticate(&token).await.unwrap(), Some(switchyard_scheduler::engine::Role::Viewer));
    assert_eq!(e.authenticate("sy_nope").await.unwrap(), None);
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM tokens")
        .fetch_all(&sqlx::AnyPool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert!(!stored.contains(&token), "tokens are stored hashed");
    e.store().close().await;
}
both_stores!(tokens, tokens_are_hashed_and_scoped);

async fn egress_audit_and_policy_versions(db: &TestDb) {
    use switchyard_scheduler::engine::AuditRecord;
    let e = engine(db, Duration::from_secs(30)).await;
    let record = |verdict: &str, count: i64, bytes: i64| AuditRecord {
        at: 1_000,
        egress_ip: "127.0.0.2".into(),
        task: Some("attempt-7".into()),
        destination: "api.example.com:443".into(),
        verdict: verdict.into(),
        code: (verdict != "allowed").then(|| "denied_by_policy".into()),
        rule: (verdict == "allowed").then(|| "api".into()),
        reason: None,
        count,
        bytes,
        duration_ms: 40,
    };
    e.record_audit(&[record("allowed", 12, 5_000), record("denied", 1, 0)]).await.unwrap();
    let all = e.views().audit(false, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], record("allowed", 12, 5_000), "round trip, newest first");
    let denied = e.views().audit(true, 10).await.unwrap();
    assert_eq!(denied, vec![record("denied", 1, 0)]);
    assert_eq!(e.current_policy().await.unwrap(), None);
    assert_eq!(e.apply_policy("destinations: []\n", "dry_run", "operator").await.unwrap(), 1);
    assert_eq!(e.apply_policy("destinations: []\n", "enforce", "operator").await.unwrap(), 2);
    let current = e.current_policy().await.unwrap().unwrap();
    assert_eq!((current.version, current.mode.as_str()), (2, "enforce"));
    e.store().close().await;
}
both_stores!(egress, egress_audit_and_policy_versions);

/// Committed Delta versions reported by a node are kept once per (table, version), only for the
/// node's own attempts, and the latest version per table names the job and task that wrote it.
async fn commit_versions_are_recorded(db: &TestDb) {
    use switchyard_scheduler::api::types::CommitRecord;
    let e = engine(db, Duration::from_secs(30)).await;
    e.upsert_jobs(&[job("j", vec![task("ingest", Compute::Dedicated, &["egress-a"], &[])])]).await.unwrap();
    e.trigger("j").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let other = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let lease = e.lease(&n, 1, NO_WAIT).await.unwrap().remove(0);
    let commit =
        |version, rows| CommitRecord { attempt: lease.attempt, table: "bronze.t".into(), version, rows };
    e.record_commits(&n, &[commit(1, 10), commit(2, 5)]).await.unwrap();
    e.record_commits(&n, &[commit(2, 5)]).await.unwrap(); // a heartbeat retried
    e.record_commits(&other, &[commit(3, 7)]).await.unwrap(); // not its attempt
    let tables = e.table_versions().await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!((tables[0].table.as_str(), tables[0].version, tables[0].rows), ("bronze.t", 2, 5));
    assert_eq!((tables[0].job.as_str(), tables[0].task.as_str()), ("j", "ingest"));
}

both_stores!(commit_versions, commit_versions_are_recorded);

/// Run options are stored with the run, carried by every lease of it and shown on the run; a
/// run restricted to some tasks has only those.
async fn run_options_reach_leases(db: &TestDb) {
    use switchyard_scheduler::engine::RunOptions;
    let e = engine(db, Duration::from_secs(30)).await;
    let tasks = vec![task("a", Compute::Serverless, &[], &[]), task("b", Compute::Serverless, &[], &["a"])];
    e.upsert_jobs(&[job("j", tasks)]).await.unwrap();
    let options =
        RunOptions { full_refresh: true, input_versions: [("bronze.x".to_owned(), 3)].into_iter().collect() };
    let run = e.trigger_with("j", &options, Some(&["b".to_owned()])).await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    let leases = e.lease(&w, 4, NO_WAIT).await.unwrap();
    assert_eq!(leases.len(), 1, "only the selected task, without its dependency");
    assert_eq!((leases[0].spec.name.as_str(), &leases[0].options), ("b", &options));
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.options, options);
    assert_eq!(view.tasks.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(), ["b"]);
    // A plain run has default options, on its leases and its view.
    e.complete(&w, &[ok(leases[0].attempt)]).await.unwrap();
    let plain = e.trigger("j").await.unwrap();
    let leases = e.lease(&w, 4, NO_WAIT).await.unwrap();
    assert_eq!(leases[0].options, RunOptions::default());
    assert_eq!(e.views().run(plain).await.unwrap().options, RunOptions::default());
    e.store().close().await;
}
both_stores!(run_options, run_options_reach_leases);

/// Details of a report are kept with the attempt, through the batched success path and the
/// one-by-one path (failures) alike.
async fn attempt_details_are_stored(db: &TestDb) {
    let e = engine(db, Duration::from_secs(30)).await;
    let tasks = vec![task("a", Compute::Serverless, &[], &[]), task("b", Compute::Serverless, &[], &[])];
    e.upsert_jobs(&[job("j", tasks)]).await.unwrap();
    let run = e.trigger("j").await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    let leases = e.lease(&w, 4, NO_WAIT).await.unwrap();
    let details = serde_json::json!({"transform": {
        "refresh": {"mode": "incremental", "reason": "1 new version"},
        "expectations": [{"name": "positive_amount", "action": "drop", "violations": 3}]
    }});
    let failed_details =
        serde_json::json!({"transform": {"refresh": {"mode": "full", "reason": "first run"}}});
    let a = leases.iter().find(|l| l.spec.name == "a").unwrap().attempt;
    let b = leases.iter().find(|l| l.spec.name == "b").unwrap().attempt;
    let reports = [
        Report { details: Some(details.clone()), ..ok(a) },
        Report { details: Some(failed_details.clone()), ..failed(b) },
    ];
    e.complete(&w, &reports).await.unwrap();
    let view = e.views().run(run).await.unwrap();
    assert_eq!(view.tasks[0].attempts[0].details, Some(details));
    assert_eq!(view.tasks[1].attempts[0].details, Some(failed_details));
    let listed = e.views().runs(Some("j"), 1).await.unwrap();
    assert!(listed[0].tasks[0].attempts[0].details.is_some(), "runs shows details too");
    e.store().close().await;
}
both_stores!(attempt_details, attempt_details_are_stored);

const DEBOUNCE: Duration = Duration::from_millis(1000);

/// An engine whose data triggers wait `DEBOUNCE`.
async fn trigger_engine(db: &TestDb) -> switchyard_scheduler::engine::Engine {
    use switchyard_scheduler::engine::{Engine, EngineConfig};
    let mut settings = common::settings();
    settings.scheduler.trigger_debounce = switchyard_config::value::Duration(DEBOUNCE);
    let store = switchyard_scheduler::store::Store::open(&db.url).await.unwrap();
    Engine::new(store, EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings })
}

fn writer(name: &str, table: &str) -> switchyard_scheduler::spec::TaskSpec {
    let mut t = task(name, Compute::Dedicated, &["egress-a"], &[]);
    t.writes = vec![table.into()];
    t
}

fn reader(name: &str, reads: &[&str], deps: &[&str]) -> switchyard_scheduler::spec::TaskSpec {
    let mut t = task(name, Compute::Serverless, &[], deps);
    t.reads = reads.iter().map(|r| r.to_string()).collect();
    t.trigger = Some(switchyard_config::manifest::Trigger::OnUpdate);
    t
}

fn commit(attempt: i64, table: &str, version: i64) -> switchyard_scheduler::api::types::CommitRecord {
    switchyard_scheduler::api::types::CommitRecord { attempt, table: table.into(), version, rows: 1 }
}

/// Starts a run of the `ingest` job and leases its writer: the attempt that commits.
async fn writing_attempt(e: &switchyard_scheduler::engine::Engine, node: &str) -> i64 {
    e.trigger("ingest").await.unwrap();
    e.lease(node, 1, NO_WAIT).await.unwrap().remove(0).attempt
}

/// A commit to a table schedules the `on_update` tasks reading it (and no other), once, after the
/// debounce, pinned to the latest version of each table read that the scheduler knows.
async fn commit_triggers_reader_once(db: &TestDb) {
    let e = trigger_engine(db).await;
    let mut plain = reader("plain", &["bronze.x"], &[]);
    plain.trigger = None;
    e.upsert_jobs(&[
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![reader("r", &["bronze.x", "bronze.never"], &[])]),
        job("other", vec![plain]),
    ])
    .await
    .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let attempt = writing_attempt(&e, &n).await;
    e.record_commits(&n, &[commit(attempt, "bronze.x", 1), commit(attempt, "bronze.x", 2)]).await.unwrap();
    assert!(e.fire_due_triggers().await.unwrap().is_empty(), "not before the debounce");
    tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
    let fired = e.fire_due_triggers().await.unwrap();
    assert_eq!(fired.len(), 1);
    assert!(e.fire_due_triggers().await.unwrap().is_empty(), "fired once");
    let view = e.views().run(fired[0]).await.unwrap();
    assert_eq!((view.job.as_str(), view.trigger.as_str()), ("silver", "on_update"));
    assert_eq!(view.tasks.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(), ["r"]);
    let pinned: Vec<(&str, i64)> =
        view.options.input_versions.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    assert_eq!(pinned, [("bronze.x", 2)], "bronze.never has no known version");
    let w = e.register(&worker()).await.unwrap().node_id;
    let lease = e.lease(&w, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(lease.options, view.options);
    assert!(
        e.views().runs(Some("other"), 10).await.unwrap().is_empty(),
        "only on_update tasks are triggered"
    );
    e.store().close().await;
}
both_stores!(commit_trigger, commit_triggers_reader_once);

/// A commit within the debounce of another pushes the run back; both start one run.
async fn commits_within_debounce_start_one_run(db: &TestDb) {
    let e = trigger_engine(db).await;
    e.upsert_jobs(&[
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![reader("r", &["bronze.x"], &[])]),
    ])
    .await
    .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let attempt = writing_attempt(&e, &n).await;
    e.record_commits(&n, &[commit(attempt, "bronze.x", 1)]).await.unwrap();
    tokio::time::sleep(DEBOUNCE * 3 / 10).await;
    e.record_commits(&n, &[commit(attempt, "bronze.x", 2)]).await.unwrap();
    tokio::time::sleep(DEBOUNCE * 8 / 10).await;
    // Past the first commit's debounce, not the second's.
    assert!(e.fire_due_triggers().await.unwrap().is_empty(), "the second commit pushed the run back");
    tokio::time::sleep(DEBOUNCE * 4 / 10).await;
    let fired = e.fire_due_triggers().await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(e.views().run(fired[0]).await.unwrap().options.input_versions["bronze.x"], 2);
    assert_eq!(e.views().runs(Some("silver"), 10).await.unwrap().len(), 1);
    e.store().close().await;
}
both_stores!(debounce, commits_within_debounce_start_one_run);

/// While a run of the task is queued or running, a due trigger waits; it fires once that run is over.
async fn trigger_waits_for_the_active_run(db: &TestDb) {
    let e = trigger_engine(db).await;
    e.upsert_jobs(&[
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![reader("r", &["bronze.x"], &[])]),
    ])
    .await
    .unwrap();
    let manual = e.trigger("silver").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let attempt = writing_attempt(&e, &n).await;
    e.record_commits(&n, &[commit(attempt, "bronze.x", 1)]).await.unwrap();
    tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
    assert!(e.fire_due_triggers().await.unwrap().is_empty(), "r is queued in run {manual}");
    let w = e.register(&worker()).await.unwrap().node_id;
    let lease = e.lease(&w, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(lease.run, manual);
    assert!(e.fire_due_triggers().await.unwrap().is_empty(), "r is running in run {manual}");
    e.complete(&w, &[ok(lease.attempt)]).await.unwrap();
    let fired = e.fire_due_triggers().await.unwrap();
    assert_eq!(fired.len(), 1, "fires once the active run is over");
    assert_eq!(e.views().run(fired[0]).await.unwrap().options.input_versions["bronze.x"], 1);
    assert!(e.fire_due_triggers().await.unwrap().is_empty());
    e.store().close().await;
}
both_stores!(trigger_waits, trigger_waits_for_the_active_run);

/// A commit by a run that will still run the reader (downstream in the same DAG) triggers nothing,
/// whether the commit is reported before the writer finishes or after the reader has started.
async fn same_run_commit_does_not_trigger(db: &TestDb) {
    let e = trigger_engine(db).await;
    e.upsert_jobs(&[job("j", vec![writer("w", "bronze.x"), reader("r", &["bronze.x"], &["w"])])])
        .await
        .unwrap();
    let run = e.trigger("j").await.unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let w = e.register(&worker()).await.unwrap().node_id;
    let writing = e.lease(&n, 1, NO_WAIT).await.unwrap().remove(0);
    e.record_commits(&n, &[commit(writing.attempt, "bronze.x", 1)]).await.unwrap();
    e.complete(&n, &[ok(writing.attempt)]).await.unwrap();
    let reading = e.lease(&w, 1, NO_WAIT).await.unwrap().remove(0);
    assert_eq!(reading.spec.name, "r");
    // A heartbeat carrying a commit can arrive after the attempt's report.
    e.record_commits(&n, &[commit(writing.attempt, "bronze.x", 2)]).await.unwrap();
    e.complete(&w, &[ok(reading.attempt)]).await.unwrap();
    tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
    assert!(e.fire_due_triggers().await.unwrap().is_empty());
    let runs = e.views().runs(Some("j"), 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run]);
    e.store().close().await;
}
both_stores!(same_run_commit, same_run_commit_does_not_trigger);

/// Replicas firing the same due trigger at once start one run between them.
async fn trigger_fires_once_across_replicas(db: &TestDb) {
    let e1 = trigger_engine(db).await;
    let e2 = trigger_engine(db).await;
    e1.upsert_jobs(&[
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![reader("r", &["bronze.x"], &[])]),
    ])
    .await
    .unwrap();
    let n = e1.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let attempt = writing_attempt(&e1, &n).await;
    e1.record_commits(&n, &[commit(attempt, "bronze.x", 1)]).await.unwrap();
    tokio::time::sleep(DEBOUNCE + Duration::from_millis(100)).await;
    let mut joins = Vec::new();
    for e in [e1.clone(), e2.clone(), e1.clone(), e2.clone()] {
        joins.push(tokio::spawn(async move { e.fire_due_triggers().await.unwrap().len() }));
    }
    let mut fired = 0;
    for j in joins {
        fired += j.await.unwrap();
    }
    assert_eq!(fired, 1);
    assert_eq!(e1.views().runs(Some("silver"), 10).await.unwrap().len(), 1);
    for e in [e1, e2] {
        e.store().close().await;
    }
}
both_stores!(trigger_replicas, trigger_fires_once_across_replicas);

#[test]
fn select_names_the_tables_that_exist() {
    use switchyard_scheduler::spec::select_tasks;
    let specs = [
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![writer("s1", "silver.a"), writer("s2", "silver.b")]),
    ];
    let chosen = select_tasks(&specs, &["Silver.B".into()]).unwrap();
    assert_eq!(chosen.into_iter().collect::<Vec<_>>(), [("silver".to_owned(), vec!["s2".to_owned()])]);
    let err = select_tasks(&specs, &["silver.c".into(), "silver.a".into()]).unwrap_err().to_string();
    assert!(err.contains("`silver.c`") && err.contains("bronze.x, silver.a, silver.b"), "{err}");
    assert!(err.starts_with("--select names `silver.c`, which"), "only the unknown one: {err}");
    assert!(err.contains("did you mean `silver.a`?"), "{err}");
}

/// Commits arriving faster than the debounce cannot postpone a trigger forever: it fires at the
/// latest ten debounce periods after the first of them.
async fn steady_commits_still_trigger(db: &TestDb) {
    use switchyard_scheduler::engine::{Engine, EngineConfig};
    let debounce = Duration::from_millis(200);
    let mut settings = common::settings();
    settings.scheduler.trigger_debounce = switchyard_config::value::Duration(debounce);
    let store = switchyard_scheduler::store::Store::open(&db.url).await.unwrap();
    let e = Engine::new(store, EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings });
    e.upsert_jobs(&[
        job("ingest", vec![writer("w", "bronze.x")]),
        job("silver", vec![reader("r", &["bronze.x"], &[])]),
    ])
    .await
    .unwrap();
    let n = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let attempt = writing_attempt(&e, &n).await;
    let started = std::time::Instant::now();
    let mut version = 0;
    while started.elapsed() < debounce * 11 {
        version += 1;
        e.record_commits(&n, &[commit(attempt, "bronze.x", version)]).await.unwrap();
        tokio::time::sleep(debounce / 4).await;
    }
    version += 1;
    e.record_commits(&n, &[commit(attempt, "bronze.x", version)]).await.unwrap();
    let fired = e.fire_due_triggers().await.unwrap();
    assert_eq!(fired.len(), 1, "a commit just now, but the first was {version} commits ago");
    assert_eq!(e.views().run(fired[0]).await.unwrap().options.input_versions["bronze.x"], version);
    e.store().close().await;
}
both_stores!(steady_commits, steady_commits_still_trigger);
