//! Attempt reports: success, failure, timeout, cancellation, handing a lease back. A report is
//! accepted only while its attempt holds the lease (fencing): a node that lost its lease and comes
//! back late is told so and changes nothing.

use sqlx::Row;
use switchyard_config::FailureClass;

use super::queue::{enqueue_many, push};
use super::submit::keys_of;
use super::transition::{self, Also, Move, QueuedAt, Text};
use super::{AttemptState, Engine, RunState, TaskState, backoff_ms};
use crate::Error;
use crate::api::types::{Lease, Outcome, Report, ReportResult};
use crate::store::sql::{CHUNK, Tx, parse_column};
use crate::store::{Dialect, now_ms};

impl Engine {
    /// Applies a batch of reports from `node_id` in one transaction.
    pub async fn complete(&self, node_id: &str, reports: &[Report]) -> Result<Vec<ReportResult>, Error> {
        Ok(self.complete_then_lease(node_id, reports, 0).await?.0)
    }

    /// Applies a batch of reports and, in the same transaction, leases up to `max` queued tasks
    /// for the slots they freed (no waiting): a node whose tasks finish quickly needs one call
    /// and one commit per batch instead of two.
    pub async fn complete_then_lease(
        &self,
        node_id: &str,
        reports: &[Report],
        max: usize,
    ) -> Result<(Vec<ReportResult>, Vec<Lease>), Error> {
        let now = now_ms();
        let key = if max > 0 { Some(self.node_queue_key(node_id).await?) } else { None };
        let mut tx = self.store.begin().await?;
        let mut queued_any = false;
        // Plain successes, the common case, go through in a handful of statements for the whole
        // batch; everything else (failures, retries, fencing, hand-backs) one by one.
        let handled = complete_successes(&mut tx, self, node_id, reports, now, &mut queued_any).await?;
        let mut results = Vec::with_capacity(reports.len());
        for report in reports {
            let result = if handled.contains(&report.attempt) {
                ReportResult::Accepted { task_state: TaskState::Succeeded }
            } else {
                apply_report(&mut tx, self, node_id, report, now, &mut queued_any).await?
            };
            results.push(result);
        }
        let leases = match key {
            Some(key) => self.claim(&mut tx, node_id, &key, max, now).await?.0,
            None => vec![],
        };
        tx.commit().await.map_err(Error::store)?;
        super::lease::log_leases(node_id, &leases);
        if queued_any {
            self.work.notify_waiters();
        }
        Ok((results, leases))
    }
}

/// Whether a finished attempt's task runs again, and why, in words for the run detail.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RetryDecision {
    retry: bool,
    why: String,
}

/// Continuous tasks restart after every exit. Others retry a failure while retries remain and
/// the failure is of a kind worth retrying (`retries.retry_on`, else the default for the kind of
/// work: see `TaskSpec::retries`); a class that will fail the same way again (bad data, refused
/// credentials) ends the task at once instead of spending its retries.
fn retry_decision(
    report: &Report,
    spec: Option<&crate::spec::TaskSpec>,
    continuous: bool,
    failures: i64,
    max_retries: i64,
) -> RetryDecision {
    use switchyard_config::manifest::RetryOn;
    if continuous {
        return RetryDecision { retry: true, why: "continuous task stopped; restarting".into() };
    }
    let kind = match report.outcome {
        Outcome::TimedOut => RetryOn::Timeout,
        _ => RetryOn::of(report.error_class),
    };
    let (worth, rule) = match spec {
        Some(spec) => spec.retries(kind),
        // A spec that cannot be read (never expected): keep the behaviour from before classes
        // counted, retry.
        None => (true, "the default"),
    };
    let kind = kind.as_str();
    if max_retries == 0 {
        return RetryDecision {
            retry: false,
            why: format!("not retried: the task has no retries ({kind} failure)"),
        };
    }
    if failures > max_retries {
        return RetryDecision {
            retry: false,
            why: format!("not retried: all {max_retries} retries used ({kind} failure)"),
        };
    }
    if !worth {
        return RetryDecision {
            retry: false,
            why: format!(
                "not retried: {kind} failures are not retried by {rule}; add `{kind}` to `retries.retry_on` if another attempt could succeed"
            ),
        };
    }
    RetryDecision {
        retry: true,
        why: format!("retrying ({failures} of {max_retries}): {kind} failures are retried by {rule}"),
    }
}

/// Keeps the decision with the attempt, for `switchyard runs` and the dashboard's run detail.
async fn record_retry_decision(tx: &mut Tx, attempt: i64, why: &str) -> Result<(), Error> {
    sqlx::query("UPDATE attempts SET retry = $1 WHERE id = $2")
        .bind(why)
        .bind(attempt)
        .execute(&mut **tx)
        .await
        .map_err(Error::store)?;
    Ok(())
}

/// What a successful report says beyond its attempt: exit code, message, log tail, details.
type Said<'a> = (Option<i64>, Option<&'a str>, Option<&'a str>, Option<String>);

/// A plain success whose attempt still holds its lease, with what the later steps of the batch
/// need from the rows locked when it was checked.
#[derive(Debug, Clone, Copy)]
struct Eligible<'r> {
    report: &'r Report,
    task_run: i64,
    run: i64,
    started: i64,
}

/// Completes, in bulk, the reports that are plain successes of live leases held by `node_id` for
/// non-continuous tasks. Returns the attempt ids it handled.
async fn complete_successes(
    tx: &mut Tx,
    engine: &Engine,
    node_id: &str,
    reports: &[Report],
    now: i64,
    queued_any: &mut bool,
) -> Result<std::collections::HashSet<i64>, Error> {
    let wanted: Vec<&Report> = reports.iter().filter(|r| r.outcome == Outcome::Succeeded).collect();
    let mut handled = std::collections::HashSet::new();
    if wanted.is_empty() {
        return Ok(handled);
    }
    let eligible = lock_live_successes(tx, engine.store.dialect, node_id, &wanted).await?;
    if eligible.is_empty() {
        return Ok(handled);
    }
    record_successes(tx, &eligible, now).await?;
    mark_tasks_succeeded(tx, &eligible, now).await?;
    queue_ready_dependents(tx, engine.store.dialect, &eligible, now, queued_any).await?;
    finish_runs(tx, &eligible, now).await?;
    handled.extend(eligible.iter().map(|e| e.report.attempt));
    Ok(handled)
}

/// Fencing for the whole batch at once: the attempts are locked, and only those still running on
/// `node_id` for a running, non-continuous task take the bulk path; the rest (lost leases,
/// cancelled tasks, continuous restarts) are left to `apply_report`, which answers each.
async fn lock_live_successes<'r>(
    tx: &mut Tx,
    dialect: Dialect,
    node_id: &str,
    wanted: &[&'r Report],
) -> Result<Vec<Eligible<'r>>, Error> {
    let mut eligible = Vec::new();
    for chunk in wanted.chunks(CHUNK) {
        let sql = format!(
            "SELECT a.id, a.state, a.node_id, a.task_run_id, a.started_at, t.state AS task_state, t.continuous, t.run_id \
             FROM attempts a JOIN task_runs t ON t.id = a.task_run_id WHERE a.id IN ({}){}",
            crate::store::sql::placeholders(1, chunk.len()),
            dialect.for_update()
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(r.attempt);
        }
        for row in q.fetch_all(&mut **tx).await.map_err(Error::store)? {
            let attempt: i64 = row.try_get("id").map_err(Error::store)?;
            let live = row.try_get::<String, _>("state").map_err(Error::store)? == "running"
                && row.try_get::<String, _>("node_id").map_err(Error::store)? == node_id
                && row.try_get::<String, _>("task_state").map_err(Error::store)? == "running"
                && row.try_get::<i64, _>("continuous").map_err(Error::store)? == 0;
            if live {
                let report = chunk.iter().find(|r| r.attempt == attempt).copied();
                if let Some(report) = report {
                    let task_run: i64 = row.try_get("task_run_id").map_err(Error::store)?;
                    let run: i64 = row.try_get("run_id").map_err(Error::store)?;
                    let started: i64 = row.try_get("started_at").map_err(Error::store)?;
                    eligible.push(Eligible { report, task_run, run, started });
                }
            }
        }
    }
    Ok(eligible)
}

/// Reports that say the same (a no-op task's: exit 0, nothing else) finish in one statement
/// keyed by the primary key alone. A join with the reports as a derived table let PostgreSQL
/// cache a plan made while `attempts` was small — a hash join over a sequential scan — and
/// keep scanning the whole table on every batch as it grew (1 ms a batch at 10,000 attempts).
async fn record_successes(tx: &mut Tx, eligible: &[Eligible<'_>], now: i64) -> Result<(), Error> {
    let mut groups: Vec<(Said<'_>, Vec<i64>)> = Vec::new();
    for e in eligible {
        let r = e.report;
        let key = (r.exit_code, r.message.as_deref(), r.log_tail.as_deref(), details_text(r)?);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(r.attempt),
            None => groups.push((key, vec![r.attempt])),
        }
    }
    for ((exit_code, message, log_tail, details), ids) in &groups {
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE attempts SET state = 'succeeded', finished_at = $1, exit_code = $2, message = $3, \
                 log_tail = COALESCE($4, log_tail), details = $5 WHERE id IN ({})",
                crate::store::sql::placeholders(6, chunk.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(now)
                .bind(*exit_code)
                .bind(*message)
                .bind(*log_tail)
                .bind(details.clone());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await.map_err(Error::store)?;
        }
    }
    Ok(())
}

/// One batched move for the whole batch: the same few statements as for a single task.
async fn mark_tasks_succeeded(tx: &mut Tx, eligible: &[Eligible<'_>], now: i64) -> Result<(), Error> {
    let moves: Vec<Move<'_>> = eligible
        .iter()
        .map(|e| Move {
            task_run: e.task_run,
            attempt: Some(e.report.attempt),
            from: TaskState::Running,
            reason: None,
            since: Some(e.started),
        })
        .collect();
    transition::apply(tx, TaskState::Succeeded, &moves, &Also::default(), now).await
}

/// Dependents whose dependencies have now all succeeded. First only whether there are any, on
/// the dependency index alone: most tasks have none (a wide run has no edges at all), and the
/// join with the readiness check cost a millisecond a batch even when it found nothing.
async fn queue_ready_dependents(
    tx: &mut Tx,
    dialect: Dialect,
    eligible: &[Eligible<'_>],
    now: i64,
    queued_any: &mut bool,
) -> Result<(), Error> {
    let tasks: Vec<i64> = eligible.iter().map(|e| e.task_run).collect();
    let dependents = dependents_of(tx, &tasks).await?;
    let ready = ready_among(tx, &dependents).await?;
    let ready = lock_pending(tx, dialect, ready).await?;
    if !ready.is_empty() {
        enqueue_many(tx, &ready, TaskState::Pending, now, Some("dependencies succeeded")).await?;
        *queued_any = true;
    }
    Ok(())
}

/// The tasks that depend on any of `tasks`, each once, in id order.
async fn dependents_of(tx: &mut Tx, tasks: &[i64]) -> Result<Vec<i64>, Error> {
    let mut dependents: Vec<i64> = Vec::new();
    for chunk in tasks.chunks(CHUNK) {
        let sql = format!(
            "SELECT DISTINCT task_run_id FROM task_deps WHERE dep_id IN ({})",
            crate::store::sql::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        dependents.extend(q.fetch_all(&mut **tx).await.map_err(Error::store)?);
    }
    dependents.sort_unstable();
    dependents.dedup();
    Ok(dependents)
}

/// Of `dependents`, those still pending with every dependency succeeded, with their queue keys;
/// not yet locked (see `lock_pending`).
async fn ready_among(tx: &mut Tx, dependents: &[i64]) -> Result<Vec<(i64, Vec<String>)>, Error> {
    let mut ready: Vec<(i64, Vec<String>)> = Vec::new();
    for chunk in dependents.chunks(CHUNK) {
        let sql = format!(
            "SELECT t.id, t.pools FROM task_runs t WHERE t.id IN ({}) AND t.state = 'pending' AND {READY}",
            crate::store::sql::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await.map_err(Error::store)? {
            ready.push((row.try_get("id").map_err(Error::store)?, keys_of(&row)?));
        }
    }
    Ok(ready)
}

/// Each run the batch touched is checked once, however many of its tasks the batch finished.
async fn finish_runs(tx: &mut Tx, eligible: &[Eligible<'_>], now: i64) -> Result<(), Error> {
    let mut runs: Vec<i64> = eligible.iter().map(|e| e.run).collect();
    runs.sort_unstable();
    runs.dedup();
    for run in runs {
        maybe_finish_run(tx, run, now).await?;
    }
    Ok(())
}

/// The report's details as stored: JSON text, or NULL when the agent reported none.
fn details_text(report: &Report) -> Result<Option<String>, Error> {
    report
        .details
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::corrupt("attempt details", e))
}

/// One report on its own: any the bulk path (`complete_successes`) did not take.
async fn apply_report(
    tx: &mut Tx,
    engine: &Engine,
    node_id: &str,
    report: &Report,
    now: i64,
    queued_any: &mut bool,
) -> Result<ReportResult, Error> {
    let dialect = engine.store.dialect;
    let held = match lock_held_attempt(tx, dialect, node_id, report).await? {
        Ok(held) => held,
        Err(rejected) => return Ok(rejected),
    };
    record_attempt_end(tx, report, now).await?;
    let row = lock_task(tx, dialect, held.task_run).await?;
    let from: TaskState = parse_column(&row, "state")?;
    if from != TaskState::Running {
        // Cancelled while the report was in flight: the attempt is recorded, the task stays put.
        return Ok(ReportResult::Accepted { task_state: from });
    }
    let task = RunningTask::read(report, held, from, row)?;
    let next = match report.outcome {
        Outcome::HandedBack => hand_back(tx, &task, now, queued_any).await?,
        Outcome::Cancelled => {
            finish_task(tx, task.step(None), TaskState::Cancelled, now, report, None).await?;
            TaskState::Cancelled
        }
        Outcome::Succeeded if task.continuous == 0 => succeed(tx, dialect, &task, now, queued_any).await?,
        Outcome::Succeeded | Outcome::Failed | Outcome::TimedOut => {
            retry_or_fail(tx, &task, now, queued_any).await?
        }
    };
    let run_id: i64 = task.row.try_get("run_id").map_err(Error::store)?;
    maybe_finish_run(tx, run_id, now).await?;
    Ok(ReportResult::Accepted { task_state: next })
}

/// The attempt of a report that passed fencing.
#[derive(Debug, Clone, Copy)]
struct HeldAttempt {
    task_run: i64,
    started: i64,
}

/// Fencing: a node that lost its lease may still report, late; only the holder's report may
/// change anything. The attempt's row stays locked until the transaction ends (SQLite has one
/// writer anyway), so the lease cannot be taken away while the report is applied. `Err` is the
/// answer to a report that is refused.
async fn lock_held_attempt(
    tx: &mut Tx,
    dialect: Dialect,
    node_id: &str,
    report: &Report,
) -> Result<Result<HeldAttempt, ReportResult>, Error> {
    let row = sqlx::query(&format!(
        "SELECT state, task_run_id, node_id, started_at FROM attempts WHERE id = $1{}",
        dialect.for_update()
    ))
    .bind(report.attempt)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::store)?;
    let Some(row) = row else {
        let reason = format!("attempt {} does not exist", report.attempt);
        return Ok(Err(ReportResult::Rejected { reason }));
    };
    let state: AttemptState = parse_column(&row, "state")?;
    let holder: String = row.try_get("node_id").map_err(Error::store)?;
    if state != AttemptState::Running || holder != node_id {
        let reason = Error::Fenced { attempt: report.attempt, state: state.as_str().to_owned() }.to_string();
        tracing::warn!(
            attempt = report.attempt,
            node = node_id,
            state = state.as_str(),
            "Rejected a report from a lost lease."
        );
        return Ok(Err(ReportResult::Rejected { reason }));
    }
    let task_run: i64 = row.try_get("task_run_id").map_err(Error::store)?;
    let started: i64 = row.try_get("started_at").map_err(Error::store)?;
    Ok(Ok(HeldAttempt { task_run, started }))
}

/// The attempt's end is recorded before the task is looked at, so it is kept even when the task
/// has moved on meanwhile (cancelled while the report was in flight).
async fn record_attempt_end(tx: &mut Tx, report: &Report, now: i64) -> Result<(), Error> {
    let attempt_state = match report.outcome {
        Outcome::Succeeded => AttemptState::Succeeded,
        Outcome::Failed => AttemptState::Failed,
        Outcome::TimedOut => AttemptState::TimedOut,
        Outcome::Cancelled => AttemptState::Cancelled,
        Outcome::HandedBack => AttemptState::HandedBack,
    };
    sqlx::query(
        "UPDATE attempts SET state = $1, finished_at = $2, exit_code = $3, error_class = $4, message = $5, \
         log_tail = COALESCE($6, log_tail), details = COALESCE($7, details) WHERE id = $8",
    )
    .bind(attempt_state.as_str())
    .bind(now)
    .bind(report.exit_code)
    .bind(report.error_class.map(FailureClass::as_str))
    .bind(report.message.as_deref())
    .bind(report.log_tail.as_deref())
    .bind(details_text(report)?)
    .bind(report.attempt)
    .execute(&mut **tx)
    .await
    .map_err(Error::store)?;
    Ok(())
}

/// The task row, locked: the report decides the task's next state from what it reads here, and
/// nothing else may move the task meanwhile.
async fn lock_task(tx: &mut Tx, dialect: Dialect, task_run: i64) -> Result<sqlx::any::AnyRow, Error> {
    sqlx::query(&format!(
        "SELECT state, run_id, continuous, max_retries, failures, backoff_ms, max_backoff_ms, pools, spec FROM task_runs WHERE id = $1{}",
        dialect.for_update()
    ))
    .bind(task_run)
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::store)
}

/// A task still running when its attempt's report arrived: what choosing and making its next
/// move needs, read once under the task's lock.
struct RunningTask<'r> {
    report: &'r Report,
    task_run: i64,
    from: TaskState,
    started: i64,
    continuous: i64,
    max_retries: i64,
    failures: i64,
    base: i64,
    cap: i64,
    keys: Vec<String>,
    /// The locked row, for what only some outcomes read (the spec, the run).
    row: sqlx::any::AnyRow,
}

impl<'r> RunningTask<'r> {
    fn read(
        report: &'r Report,
        held: HeldAttempt,
        from: TaskState,
        row: sqlx::any::AnyRow,
    ) -> Result<Self, Error> {
        let continuous: i64 = row.try_get("continuous").map_err(Error::store)?;
        let max_retries: i64 = row.try_get("max_retries").map_err(Error::store)?;
        let failures: i64 = row.try_get("failures").map_err(Error::store)?;
        let base: i64 = row.try_get("backoff_ms").map_err(Error::store)?;
        let cap: i64 = row.try_get("max_backoff_ms").map_err(Error::store)?;
        let keys = keys_of(&row)?;
        Ok(RunningTask {
            report,
            task_run: held.task_run,
            from,
            started: held.started,
            continuous,
            max_retries,
            failures,
            base,
            cap,
            keys,
            row,
        })
    }

    /// Every move a report makes is of its own attempt, timed from the attempt's start.
    fn step<'m>(&self, reason: Option<&'m str>) -> Move<'m> {
        Move {
            task_run: self.task_run,
            attempt: Some(self.report.attempt),
            from: self.from,
            reason,
            since: Some(self.started),
        }
    }
}

/// A lease handed back is no failure: the task is queued again at once and spends no retry.
async fn hand_back(
    tx: &mut Tx,
    task: &RunningTask<'_>,
    now: i64,
    queued_any: &mut bool,
) -> Result<TaskState, Error> {
    transition::one(tx, TaskState::Queued, task.step(Some("handed back")), &Also::default(), now).await?;
    push(tx, &key_rows(task.task_run, &task.keys), now).await?;
    *queued_any = true;
    Ok(TaskState::Queued)
}

/// A success may free dependents; they are queued in the same transaction rather than left for
/// the tick's sweep.
async fn succeed(
    tx: &mut Tx,
    dialect: Dialect,
    task: &RunningTask<'_>,
    now: i64,
    queued_any: &mut bool,
) -> Result<TaskState, Error> {
    finish_task(tx, task.step(None), TaskState::Succeeded, now, task.report, None).await?;
    promote_dependents(tx, dialect, task.task_run, now, queued_any).await?;
    Ok(TaskState::Succeeded)
}

/// Failures, timeouts and the exits of continuous tasks: the decision and why are kept with the
/// attempt whichever way it goes.
async fn retry_or_fail(
    tx: &mut Tx,
    task: &RunningTask<'_>,
    now: i64,
    queued_any: &mut bool,
) -> Result<TaskState, Error> {
    let report = task.report;
    let failed = report.outcome != Outcome::Succeeded;
    let failures = task.failures + i64::from(failed);
    let spec: Option<crate::spec::TaskSpec> =
        task.row.try_get::<String, _>("spec").ok().and_then(|s| serde_json::from_str(&s).ok());
    let decision = retry_decision(report, spec.as_ref(), task.continuous != 0, failures, task.max_retries);
    record_retry_decision(tx, report.attempt, &decision.why).await?;
    if decision.retry {
        schedule_retry(tx, task, &decision.why, failures, now, queued_any).await?;
        return Ok(TaskState::Retrying);
    }
    let to = if report.outcome == Outcome::TimedOut { TaskState::TimedOut } else { TaskState::Failed };
    finish_task(tx, task.step(None), to, now, report, Some(failures)).await?;
    Ok(to)
}

/// The backoff is waited out in the queue (`not_before`), not here: the report's transaction
/// ends at once and the task is leased again once it is due.
async fn schedule_retry(
    tx: &mut Tx,
    task: &RunningTask<'_>,
    why: &str,
    failures: i64,
    now: i64,
    queued_any: &mut bool,
) -> Result<(), Error> {
    let delay = backoff_ms(task.base, task.cap, failures.max(1));
    let m = task.step(Some(why));
    let also = Also {
        queued_at: QueuedAt::At(now + delay),
        failures: Some(failures),
        error_class: Text::Set(task.report.error_class.map(FailureClass::as_str)),
        message: Text::Set(task.report.message.as_deref()),
        leased: false,
    };
    transition::one(tx, TaskState::Retrying, m, &also, now).await?;
    push(tx, &key_rows(task.task_run, &task.keys), now + delay).await?;
    *queued_any = true;
    Ok(())
}

/// Moves a task to a terminal state; a failure marks every waiting dependent `upstream_failed`,
/// a cancellation cancels them.
pub(crate) async fn finish_task(
    tx: &mut Tx,
    m: Move<'_>,
    to: TaskState,
    now: i64,
    report: &Report,
    failures: Option<i64>,
) -> Result<(), Error> {
    let task_run = m.task_run;
    let m = Move { reason: m.reason.or(report.message.as_deref()), ..m };
    let also = Also {
        failures,
        error_class: Text::Fill(report.error_class.map(FailureClass::as_str)),
        message: Text::Fill(report.message.as_deref()),
        ..Also::default()
    };
    transition::one(tx, to, m, &also, now).await?;
    if matches!(
        to,
        TaskState::Failed | TaskState::TimedOut | TaskState::Cancelled | TaskState::UpstreamFailed
    ) {
        let downstream =
            if to == TaskState::Cancelled { TaskState::Cancelled } else { TaskState::UpstreamFailed };
        propagate(tx, task_run, downstream, now).await?;
    }
    Ok(())
}

/// Marks the pending dependents of `task_run`, transitively, as `to`.
async fn propagate(tx: &mut Tx, task_run: i64, to: TaskState, now: i64) -> Result<(), Error> {
    let mut frontier = vec![task_run];
    while let Some(id) = frontier.pop() {
        let dependents: Vec<i64> = sqlx::query_scalar(
            "SELECT d.task_run_id FROM task_deps d JOIN task_runs t ON t.id = d.task_run_id \
             WHERE d.dep_id = $1 AND t.state = 'pending'",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::store)?;
        for dependent in dependents {
            let reason = if to == TaskState::Cancelled {
                format!("upstream task run {id} was cancelled")
            } else {
                format!("upstream task run {id} did not succeed")
            };
            let m = Move {
                task_run: dependent,
                attempt: None,
                from: TaskState::Pending,
                reason: Some(&reason),
                since: None,
            };
            transition::one(tx, to, m, &Also { message: Text::Fill(Some(&reason)), ..Also::default() }, now)
                .await?;
            frontier.push(dependent);
        }
    }
    Ok(())
}

/// Queues the dependents of a task that just succeeded whose dependencies have all succeeded.
async fn promote_dependents(
    tx: &mut Tx,
    dialect: Dialect,
    task_run: i64,
    now: i64,
    queued_any: &mut bool,
) -> Result<(), Error> {
    let ready = sqlx::query(&format!(
        "SELECT t.id, t.pools FROM task_deps d JOIN task_runs t ON t.id = d.task_run_id \
         WHERE d.dep_id = $1 AND t.state = 'pending' AND {READY}"
    ))
    .bind(task_run)
    .fetch_all(&mut **tx)
    .await
    .map_err(Error::store)?;
    let mut candidates = Vec::with_capacity(ready.len());
    for row in &ready {
        candidates.push((row.try_get::<i64, _>("id").map_err(Error::store)?, keys_of(row)?));
    }
    let ready = lock_pending(tx, dialect, candidates).await?;
    if !ready.is_empty() {
        super::queue::enqueue_many(tx, &ready, TaskState::Pending, now, Some("dependencies succeeded"))
            .await?;
        *queued_any = true;
    }
    Ok(())
}

/// Of the dependents found ready, those still `pending`, locked until this transaction ends. A
/// report and the tick's sweep (`Engine::settle`) can find the same dependent ready at once; on
/// PostgreSQL the lock waits for the other and then re-reads the row, so only one of them queues
/// it (twice would run it twice). SQLite has one writer, so the row is simply re-read.
pub(crate) async fn lock_pending(
    tx: &mut Tx,
    dialect: Dialect,
    candidates: Vec<(i64, Vec<String>)>,
) -> Result<Vec<(i64, Vec<String>)>, Error> {
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let mut still = std::collections::HashSet::new();
    for chunk in candidates.chunks(crate::store::sql::CHUNK) {
        let sql = format!(
            "SELECT id FROM task_runs WHERE state = 'pending' AND id IN ({}){}",
            crate::store::sql::placeholders(1, chunk.len()),
            dialect.for_update()
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for (id, _) in chunk {
            q = q.bind(*id);
        }
        still.extend(q.fetch_all(&mut **tx).await.map_err(Error::store)?);
    }
    Ok(candidates.into_iter().filter(|(id, _)| still.contains(id)).collect())
}

/// Whether some task of the run is in one of `states` (a quoted SQL list).
async fn any_task_in(tx: &mut Tx, run_id: i64, states: &str) -> Result<bool, Error> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM task_runs WHERE run_id = $1 AND state IN ({states}) LIMIT 1) x"
    ))
    .bind(run_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::store)?;
    Ok(n > 0)
}

/// Ends the run when none of its tasks can change any more.
/// SQL condition on task run `t`: every task it depends on has succeeded, so it may be queued.
pub(crate) const READY: &str = "NOT EXISTS (SELECT 1 FROM task_deps d2 JOIN task_runs u ON u.id = d2.dep_id \
     WHERE d2.task_run_id = t.id AND u.state <> 'succeeded')";

/// The states in which a task can still change; a run with none of them left is over.
pub(crate) const UNFINISHED: &str = "'pending', 'queued', 'running', 'retrying'";

pub(crate) async fn maybe_finish_run(tx: &mut Tx, run_id: i64, now: i64) -> Result<(), Error> {
    // Index seeks on (run_id, state), not a count over the whole run: this runs on every report.
    if any_task_in(tx, run_id, UNFINISHED).await? {
        return Ok(());
    }
    let state = if any_task_in(tx, run_id, "'failed', 'timed_out', 'upstream_failed'").await? {
        RunState::Failed
    } else if any_task_in(tx, run_id, "'cancelled'").await? {
        RunState::Cancelled
    } else {
        RunState::Succeeded
    };
    let updated = sqlx::query(
        "UPDATE job_runs SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'running' RETURNING job, created_at",
    )
    .bind(state.as_str())
    .bind(now)
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::store)?;
    if let Some(row) = updated {
        let job: String = row.try_get("job").map_err(Error::store)?;
        let created_at: i64 = row.try_get("created_at").map_err(Error::store)?;
        let level = match state {
            RunState::Failed => crate::store::event_log::Level::Error,
            RunState::Cancelled => crate::store::event_log::Level::Warn,
            _ => crate::store::event_log::Level::Info,
        };
        let event = crate::store::event_log::NewEvent {
            origin: format!("job_run/{run_id}"),
            level,
            event_type: "run_finished",
            message: format!("{job} (run {run_id}) {}", state.as_str()),
            details: serde_json::json!({
                "run": run_id, "job": job, "state": state.as_str(), "duration_ms": now - created_at,
            }),
            task_run: None,
        };
        crate::store::event_log::insert(tx, &[event], now).await?;
        tracing::info!(run = run_id, state = state.as_str(), "Job run finished.");
    }
    Ok(())
}

/// The queue rows of one task: a row per key it may be leased under.
pub(crate) fn key_rows(task_run: i64, keys: &[String]) -> Vec<(i64, &str)> {
    keys.iter().map(|k| (task_run, k.as_str())).collect()
}
