//! The queue nodes and workers lease from: a row per task and pool key it may run under (the
//! serverless key for workers), with the time it may start. Queuing a task is a state move
//! ([`super::transition`]) plus its rows.

use super::TaskState;
use super::transition::{self, Also, Move, QueuedAt};
use crate::Error;
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
