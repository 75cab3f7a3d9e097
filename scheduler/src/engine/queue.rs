//! The queue nodes and workers lease from: a row per task and pool key it may run under (the
//! serverless key for workers), with the time it may start. Queuing a task is a state move
//! ([`super::transition`]) plus its rows.

use super::transition::{self, Also, Move, QueuedAt};
use super::{Engine, TaskState};
use crate::Error;
use crate::store::now_ms;
use crate::store::sql::{CHUNK, Tx, value_rows};

/// Queues many tasks that were `from` (pending after their dependencies, or a new run's roots):
/// state `queued` from now, a queue row per key, an event each.
pub(crate) async fn enqueue_many(
    tx: &mut Tx,
    items: &[(i64, Vec<String>)],
    from: TaskState,
    now: i64,
    reason: Option<&str>,
) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let moves: Vec<Move<'_>> = items
        .iter()
        .map(|(id, _)| Move { task_run: *id, attempt: None, from, reason, since: None })
        .collect();
    transition::apply(
        tx,
        TaskState::Queued,
        &moves,
        &Also { queued_at: QueuedAt::Now, ..Also::default() },
        now,
    )
    .await?;
    let rows: Vec<(i64, &str)> =
        items.iter().flat_map(|(id, keys)| keys.iter().map(move |k| (*id, k.as_str()))).collect();
    push(tx, &rows, now).await
}

/// Queue rows for `(task run, key)` pairs, leasable from `not_before` (a row that exists gets
/// the new time).
pub(crate) async fn push(tx: &mut Tx, rows: &[(i64, &str)], not_before: i64) -> Result<(), Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO queue (task_run_id, pool, not_before) VALUES {} \
             ON CONFLICT (pool, task_run_id) DO UPDATE SET not_before = excluded.not_before",
            value_rows(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (id, key) in chunk {
            q = q.bind(*id).bind(*key).bind(not_before);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    Ok(())
}

impl Engine {
    /// Serverless tasks waiting for a worker, and serverless attempts running: the launcher's input.
    pub async fn serverless_demand(&self) -> Result<(i64, i64), Error> {
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM queue WHERE pool = $1 AND not_before <= $2")
                .bind(crate::spec::SERVERLESS)
                .bind(now_ms())
                .fetch_one(&self.store.read)
                .await
                .map_err(Error::store)?;
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts a JOIN nodes n ON n.id = a.node_id WHERE a.state = 'running' AND n.kind = 'serverless'",
        )
        .fetch_one(&self.store.read)
        .await
        .map_err(Error::store)?;
        Ok((queued, running))
    }
}
