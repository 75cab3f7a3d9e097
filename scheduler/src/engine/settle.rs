//! The tick's safety net for what reports decide. A report finishes the run when its task was the
//! last one open, and queues a dependent when its task was the last dependency. On PostgreSQL
//! (READ COMMITTED) two reports committing at the same moment each still see the other's task
//! running, so when they carry a run's last two tasks, or a dependent's last two dependencies,
//! neither acts: the run would stay `running` and the dependent `pending` for ever. The sweep
//! finds such runs and dependents each tick and settles them the way a report would, so the
//! window is one tick. (Locking the run row in every report would close it too, but would make
//! all reports of a run wait on each other's commit.)

use sqlx::Row;

use super::complete::{READY, UNFINISHED, lock_pending, maybe_finish_run};
use super::queue::enqueue_many;
use super::submit::keys_of;
use super::{Engine, TaskState};
use crate::Error;
use crate::store::now_ms;

/// Runs and dependents settled per tick: a backlog drains over a few ticks instead of one long
/// transaction.
const PER_TICK: i64 = 500;

impl Engine {
    /// Finishes runs with no task left open and queues pending tasks whose dependencies have all
    /// succeeded. Returns how many runs and tasks it settled (0 on a healthy store).
    pub async fn settle(&self) -> Result<usize, Error> {
        let now = now_ms();
        let runs: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT r.id FROM job_runs r WHERE r.state = 'running' AND NOT EXISTS ( \
               SELECT 1 FROM task_runs t WHERE t.run_id = r.id AND t.state IN ({UNFINISHED})) \
             ORDER BY r.id LIMIT {PER_TICK}"
        ))
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let ready = sqlx::query(&format!(
            "SELECT t.id, t.pools FROM task_runs t WHERE t.state = 'pending' \
             AND EXISTS (SELECT 1 FROM task_deps d WHERE d.task_run_id = t.id) \
             AND {READY} ORDER BY t.id LIMIT {PER_TICK}"
        ))
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        if runs.is_empty() && ready.is_empty() {
            return Ok(0);
        }
        let mut candidates = Vec::with_capacity(ready.len());
        for row in &ready {
            candidates.push((row.try_get::<i64, _>("id").map_err(Error::store)?, keys_of(row)?));
        }
        let mut tx = self.store.begin().await?;
        // Dependencies only ever move to `succeeded` and stay there, so what the read found ready
        // is still ready; only whether someone queued it meanwhile needs the lock.
        let queued = lock_pending(&mut tx, self.store.dialect, candidates).await?;
        enqueue_many(&mut tx, &queued, TaskState::Pending, now, Some("dependencies succeeded")).await?;
        for &run in &runs {
            maybe_finish_run(&mut tx, run, now).await?;
        }
        tx.commit().await.map_err(Error::store)?;
        if !queued.is_empty() {
            tracing::warn!(
                tasks = queued.len(),
                "Queued tasks whose last dependencies finished at the same moment."
            );
            self.work.notify_waiters();
        }
        if !runs.is_empty() {
            tracing::warn!(runs = runs.len(), "Finished runs whose last tasks finished at the same moment.");
        }
        Ok(runs.len() + queued.len())
    }
}
