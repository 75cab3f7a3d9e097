//! Data-triggered runs: a transform declared `trigger: on_update` runs on its own when a table it
//! reads gets a new Delta version.
//!
//! A recorded commit upserts a pending row per reading (job, task), due a debounce after the
//! latest commit (but no later than ten debounces after the first), so a burst of commits starts
//! one run. The tick fires due rows: a run of the job
//! restricted to that task, pinned to the latest recorded version of each table it reads, so it
//! reads what triggered it even if more lands while it waits for a worker. A row whose task
//! already has a run in flight stays until that run is over, then fires: the new versions are
//! read once, never concurrently by two runs of the same task.
//!
//! Firing locks and deletes the row in the transaction that starts the run, so control-plane
//! replicas sharing PostgreSQL fire each row exactly once between them.

use std::collections::BTreeMap;

use sqlx::Row;
use switchyard_config::manifest::Trigger as TaskTrigger;

use super::submit::{RunRequest, Trigger, start_run};
use super::{Engine, RunOptions};
use crate::Error;
use crate::spec::JobSpec;
use crate::store::now_ms;
use crate::store::sql::Tx;

/// Most pending rows looked at per tick; the rest wait for the next tick.
const BATCH: i64 = 100;

/// A trigger waits at most this many debounce periods after its first pending commit: commits
/// that keep coming faster than the debounce (a streaming ingestion flushing every second) would
/// otherwise push the run back forever.
const MAX_DEFERRALS: i64 = 10;

impl Engine {
    /// Data-triggered runs waiting out their debounce or an earlier run of their task: while
    /// there are any, a pipeline started by `switchyard run` is not over yet.
    pub async fn pending_trigger_count(&self) -> Result<i64, Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM pending_triggers")
            .fetch_one(&self.store.read)
            .await
            .map_err(Error::store)
    }
}

/// After `attempt` committed a new version of `table`: every `on_update` reader of the table is
/// due at `due_at` (a later commit pushes it back, up to [`MAX_DEFERRALS`] debounces). Skipped: the writer itself, and a reader
/// that the writer's own run will still run after this commit (it is downstream in the same DAG
/// and reads the new version anyway).
pub(crate) async fn schedule_readers(
    tx: &mut Tx,
    attempt: i64,
    table: &str,
    due_at: i64,
    now: i64,
) -> Result<(), Error> {
    let readers = sqlx::query("SELECT job, task FROM trigger_reads WHERE table_name = $1")
        .bind(table)
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::store)?;
    if readers.is_empty() {
        return Ok(());
    }
    let writer = sqlx::query(
        "SELECT t.task, t.run_id, r.job, a.finished_at FROM attempts a \
         JOIN task_runs t ON t.id = a.task_run_id JOIN job_runs r ON r.id = t.run_id WHERE a.id = $1",
    )
    .bind(attempt)
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::store)?;
    let writer_task: String = writer.try_get("task").map_err(Error::store)?;
    let writer_job: String = writer.try_get("job").map_err(Error::store)?;
    let writer_run: i64 = writer.try_get("run_id").map_err(Error::store)?;
    // Commits reach the control plane with heartbeats, which may come after the attempt's own
    // report: by then a downstream reader may be running or done. One that started after the
    // writer finished has read the commit all the same.
    let writer_done: Option<i64> = writer.try_get("finished_at").map_err(Error::store)?;
    for row in &readers {
        let job: String = row.try_get("job").map_err(Error::store)?;
        let task: String = row.try_get("task").map_err(Error::store)?;
        if job == writer_job && task == writer_task {
            continue;
        }
        if job == writer_job {
            let will_read: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM task_runs WHERE run_id = $1 AND task = $2 \
                 AND (state IN ('pending', 'queued', 'retrying') OR started_at >= $3)",
            )
            .bind(writer_run)
            .bind(&task)
            .bind(writer_done.unwrap_or(i64::MAX))
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::store)?;
            if will_read.is_some() {
                tracing::debug!(job = %job, task = %task, table, run = writer_run, "Commit read later in the same run; no trigger.");
                continue;
            }
        }
        // CASE, not LEAST or MIN: the one spelling both SQLite and PostgreSQL accept.
        sqlx::query(
            "INSERT INTO pending_triggers (job, task, due_at, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, task) DO UPDATE SET due_at = CASE \
               WHEN excluded.due_at < pending_triggers.created_at + $5 THEN excluded.due_at \
               ELSE pending_triggers.created_at + $5 END",
        )
        .bind(&job)
        .bind(&task)
        .bind(due_at)
        .bind(now)
        .bind(MAX_DEFERRALS * (due_at - now))
        .execute(&mut **tx)
        .await
        .map_err(Error::store)?;
        tracing::debug!(job = %job, task = %task, table, due_at, "Data trigger pending.");
    }
    Ok(())
}

impl Engine {
    /// Starts the data-triggered runs that are due. Returns the runs started.
    pub async fn fire_due_triggers(&self) -> Result<Vec<i64>, Error> {
        let now = now_ms();
        let due = sqlx::query(
            "SELECT job, task FROM pending_triggers WHERE due_at <= $1 ORDER BY due_at, job, task LIMIT $2",
        )
        .bind(now)
        .bind(BATCH)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut started = Vec::new();
        for row in &due {
            let job: String = row.try_get("job").map_err(Error::store)?;
            let task: String = row.try_get("task").map_err(Error::store)?;
            if let Some(run) = self.fire(&job, &task, now).await? {
                started.push(run);
            }
        }
        if !started.is_empty() {
            self.work.notify_waiters();
        }
        Ok(started)
    }

    /// Fires one pending row, if it is still due, no other replica holds it, and no run of its
    /// task is in flight.
    async fn fire(&self, job: &str, task: &str, now: i64) -> Result<Option<i64>, Error> {
        let mut tx = self.store.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT due_at FROM pending_triggers WHERE job = $1 AND task = $2 AND due_at <= $3{}",
            self.store.dialect.lock_skip()
        ))
        .bind(job)
        .bind(task)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::store)?;
        if held.is_none() {
            return Ok(None); // fired by another replica, or pushed back by a newer commit
        }
        let in_flight: Option<i64> = sqlx::query_scalar(
            "SELECT t.id FROM task_runs t JOIN job_runs r ON r.id = t.run_id \
             WHERE r.job = $1 AND r.state = 'running' AND t.task = $2 \
             AND t.state IN ('pending', 'queued', 'running', 'retrying') LIMIT 1",
        )
        .bind(job)
        .bind(task)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::store)?;
        if in_flight.is_some() {
            return Ok(None); // stays pending; fires on a tick after that run is over
        }
        let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM jobs WHERE name = $1")
            .bind(job)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?;
        let spec: Option<JobSpec> =
            spec.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| Error::corrupt("job spec", e))?;
        let reads = spec.as_ref().and_then(|s| {
            s.tasks
                .iter()
                .find(|t| t.name == task && t.trigger == Some(TaskTrigger::OnUpdate))
                .map(|t| t.reads.clone())
        });
        let run = match reads {
            // The job was redefined without this task or its trigger since the commit.
            None => None,
            Some(reads) => {
                let mut input_versions = BTreeMap::new();
                for table in reads {
                    let version: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(version) FROM lake_commits WHERE table_name = $1")
                            .bind(&table)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(Error::store)?;
                    if let Some(version) = version {
                        input_versions.insert(table, version);
                    }
                }
                let options = RunOptions { full_refresh: false, input_versions };
                let only = [task.to_owned()];
                let request = RunRequest {
                    trigger: Trigger::OnUpdate,
                    slot: None,
                    options: &options,
                    only: Some(&only),
                };
                start_run(&mut tx, job, &request).await?
            }
        };
        sqlx::query("DELETE FROM pending_triggers WHERE job = $1 AND task = $2")
            .bind(job)
            .bind(task)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        match run {
            Some(run) => tracing::info!(job, task, run, "Data-triggered run started."),
            None => tracing::info!(
                job,
                task,
                "Dropped a data trigger: the task no longer has `trigger: on_update`."
            ),
        }
        Ok(run)
    }
}
