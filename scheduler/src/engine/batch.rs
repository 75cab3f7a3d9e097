//! Many rows per statement for the hot paths (starting big runs, completing batches of reports):
//! a statement's round trip costs far more than its rows, so a batch of N tasks should cost a few
//! statements, not a few per task. Statements are chunked to stay far below both databases'
//! limits on bound parameters.

use super::TaskState;
use crate::Error;
use crate::store::sql::{CHUNK, Tx, placeholders, value_rows};

/// One task transition to record.
#[derive(Debug, Clone)]
pub(crate) struct Event<'a> {
    pub(crate) task_run: i64,
    pub(crate) attempt: Option<i64>,
    pub(crate) from: TaskState,
    pub(crate) to: TaskState,
    pub(crate) reason: Option<&'a str>,
}

/// Records transitions, each checked against the transition table.
pub(crate) async fn record_events(tx: &mut Tx, events: &[Event<'_>], now: i64) -> Result<(), Error> {
    for e in events {
        if !super::state::allowed(e.from, e.to) {
            return Err(Error::corrupt(
                "task transition",
                format!("{} → {} is not allowed (task run {})", e.from, e.to, e.task_run),
            ));
        }
    }
    for chunk in events.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO task_events (task_run_id, attempt_id, from_state, to_state, at, reason) VALUES {}",
            value_rows(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.task_run)
                .bind(e.attempt)
                .bind(e.from.as_str())
                .bind(e.to.as_str())
                .bind(now)
                .bind(e.reason);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    let logged: Vec<_> = events
        .iter()
        .map(|e| crate::store::event_log::NewEvent::task_state(e.task_run, e.attempt, e.from, e.to, e.reason))
        .collect();
    crate::store::event_log::insert(tx, &logged, now).await?;
    Ok(())
}

/// Sets the state of many tasks at once (and `finished_at` for terminal ones).
pub(crate) async fn set_states(tx: &mut Tx, ids: &[i64], to: TaskState, now: i64) -> Result<(), Error> {
    let finished = to.is_terminal().then_some(now);
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE task_runs SET state = $1, updated_at = $2, finished_at = COALESCE($3, finished_at), \
             queued_at = CASE WHEN $1 = 'queued' THEN $2 ELSE queued_at END WHERE id IN ({})",
            placeholders(4, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(finished);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    Ok(())
}

/// Queues many tasks that were `from` (pending, or running for a requeue): state `queued`, a
/// queue row per key, an event each.
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
    let events: Vec<Event<'_>> = items
        .iter()
        .map(|(id, _)| Event { task_run: *id, attempt: None, from, to: TaskState::Queued, reason })
        .collect();
    record_events(tx, &events, now).await?;
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    set_states(tx, &ids, TaskState::Queued, now).await?;
    let rows: Vec<(i64, &str)> =
        items.iter().flat_map(|(id, keys)| keys.iter().map(move |k| (*id, k.as_str()))).collect();
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO queue (task_run_id, pool, not_before) VALUES {} \
             ON CONFLICT (pool, task_run_id) DO UPDATE SET not_before = excluded.not_before",
            value_rows(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (id, key) in chunk {
            q = q.bind(*id).bind(*key).bind(now);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    Ok(())
}
