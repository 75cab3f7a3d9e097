//! The one place that changes a task's state. Every move is checked against the transition
//! table ([`super::state::allowed`]) before anything is written; then, in the caller's
//! transaction, the new state (with the columns that change with it), one `task_events` row and
//! one event-log row per move. A batch of N moves costs the same few statements as one move:
//! the state in one multi-row UPDATE per chunk, the events in one multi-row INSERT each.
//!
//! Callers log nothing about the moves themselves: [`apply`] does, at info (a line for a single
//! move, one summary line for a batch with each move at debug), with how long the tasks were in
//! their previous state when the caller knew.

use super::TaskState;
use crate::Error;
use crate::store::event_log::{self, NewEvent};
use crate::store::sql::{CHUNK, Tx, placeholders, value_rows};

/// One task's move to the state of the call.
#[derive(Debug, Clone)]
pub(crate) struct Move<'a> {
    pub(crate) task_run: i64,
    /// The attempt the move is about (its lease, its report), if any.
    pub(crate) attempt: Option<i64>,
    pub(crate) from: TaskState,
    /// Why, in words: the task event's reason and the event log's message.
    pub(crate) reason: Option<&'a str>,
    /// When the task entered `from` (epoch ms), if the caller knows: the logged duration.
    pub(crate) since: Option<i64>,
}

/// When the task counts as queued from (the next attempt's queue time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum QueuedAt {
    #[default]
    Keep,
    Now,
    At(i64),
}

/// A text column written with the state: kept, set (even to NULL), or filled only if given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Text<'a> {
    #[default]
    Keep,
    Set(Option<&'a str>),
    Fill(Option<&'a str>),
}

/// The columns that change with the state, the same for every move of one call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Also<'a> {
    pub(crate) queued_at: QueuedAt,
    pub(crate) failures: Option<i64>,
    pub(crate) error_class: Text<'a>,
    pub(crate) message: Text<'a>,
    /// A lease starts an attempt: `attempts + 1`, the waiting reason cleared, `started_at` set
    /// on the first one.
    pub(crate) leased: bool,
}

/// Moves every task of `moves` to `to`.
pub(crate) async fn apply(
    tx: &mut Tx,
    to: TaskState,
    moves: &[Move<'_>],
    also: &Also<'_>,
    now: i64,
) -> Result<(), Error> {
    if moves.is_empty() {
        return Ok(());
    }
    for m in moves {
        if !super::state::allowed(m.from, to) {
            return Err(Error::corrupt(
                "task transition",
                format!("{} → {to} is not allowed (task run {})", m.from, m.task_run),
            ));
        }
    }
    let (set, binds) = set_clause(to, also, now);
    for chunk in moves.chunks(CHUNK) {
        let sql = format!(
            "UPDATE task_runs SET {set} WHERE id IN ({})",
            placeholders(binds.len() + 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for value in &binds {
            q = match value {
                Bind::Int(v) => q.bind(*v),
                Bind::Text(v) => q.bind(*v),
            };
        }
        for m in chunk {
            q = q.bind(m.task_run);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;

        let sql = format!(
            "INSERT INTO task_events (task_run_id, attempt_id, from_state, to_state, at, reason) VALUES {}",
            value_rows(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = q
                .bind(m.task_run)
                .bind(m.attempt)
                .bind(m.from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(m.reason);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    let logged: Vec<NewEvent> =
        moves.iter().map(|m| NewEvent::task_state(m.task_run, m.attempt, m.from, to, m.reason)).collect();
    event_log::insert(tx, &logged, now).await?;
    log(to, moves, now);
    Ok(())
}

/// One move.
pub(crate) async fn one(
    tx: &mut Tx,
    to: TaskState,
    m: Move<'_>,
    also: &Also<'_>,
    now: i64,
) -> Result<(), Error> {
    apply(tx, to, std::slice::from_ref(&m), also, now).await
}

enum Bind<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

/// `state = $1, updated_at = $2, …` and the values it binds, in order.
fn set_clause<'a>(to: TaskState, also: &Also<'a>, now: i64) -> (String, Vec<Bind<'a>>) {
    let mut parts = Vec::new();
    let mut binds = vec![Bind::Text(Some(to.as_str())), Bind::Int(Some(now))];
    parts.push("state = $1".to_owned());
    parts.push("updated_at = $2".to_owned());
    let next = |binds: &mut Vec<Bind<'a>>, value: Bind<'a>| {
        binds.push(value);
        binds.len()
    };
    if to.is_terminal() {
        parts.push("finished_at = $2".to_owned());
    }
    match also.queued_at {
        QueuedAt::Keep => {}
        QueuedAt::Now => parts.push("queued_at = $2".to_owned()),
        QueuedAt::At(at) => {
            let n = next(&mut binds, Bind::Int(Some(at)));
            parts.push(format!("queued_at = ${n}"));
        }
    }
    if let Some(failures) = also.failures {
        let n = next(&mut binds, Bind::Int(Some(failures)));
        parts.push(format!("failures = ${n}"));
    }
    for (column, text) in [("error_class", also.error_class), ("message", also.message)] {
        match text {
            Text::Keep => {}
            Text::Set(value) => {
                let n = next(&mut binds, Bind::Text(value));
                parts.push(format!("{column} = ${n}"));
            }
            Text::Fill(value) => {
                let n = next(&mut binds, Bind::Text(value));
                parts.push(format!("{column} = COALESCE(${n}, {column})"));
            }
        }
    }
    if also.leased {
        parts.push(
            "attempts = attempts + 1, waiting = NULL, started_at = COALESCE(started_at, $2)".to_owned(),
        );
    }
    (parts.join(", "), binds)
}

/// Moves logged one line each at info; a larger batch (a lease of 16, a burst of reports) is one
/// summary line at info and its moves at debug, so the log stays readable under load.
const LOG_EACH: usize = 1;

fn log(to: TaskState, moves: &[Move<'_>], now: i64) {
    let took = |m: &Move<'_>| m.since.map(|s| (now - s).max(0));
    if moves.len() <= LOG_EACH {
        for m in moves {
            tracing::info!(
                task_run = m.task_run,
                attempt = m.attempt,
                from = %m.from,
                to = %to,
                in_previous_ms = took(m),
                reason = m.reason.unwrap_or(""),
                "Task state."
            );
        }
        return;
    }
    let mut durations: Vec<i64> = moves.iter().filter_map(took).collect();
    durations.sort_unstable();
    let median = durations.get(durations.len() / 2).copied();
    let first = moves[0].from;
    let from = if moves.iter().all(|m| m.from == first) { first.as_str() } else { "several" };
    tracing::info!(tasks = moves.len(), from, to = %to, median_in_previous_ms = median, "Task states.");
    for m in moves {
        tracing::debug!(task_run = m.task_run, attempt = m.attempt, from = %m.from, to = %to, reason = m.reason.unwrap_or(""), "Task state.");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::plan::Compute;
    use crate::spec::{JobSpec, TaskSpec};
    use crate::store::Store;

    async fn engine_with_a_pending_task() -> (tempfile::TempDir, Engine, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap();
        let config =
            EngineConfig { lease_ttl: Duration::from_secs(30), max_losses: 3, settings: Default::default() };
        let e = Engine::new(store, config);
        let first = TaskSpec::command("first", Compute::Serverless, &[], &["true"]);
        let mut second = TaskSpec::command("second", Compute::Serverless, &[], &["true"]);
        second.depends_on = vec!["first".into()];
        let job = JobSpec {
            job: "j".into(),
            schedule: None,
            tasks: vec![first, second],
            sla_ms: None,
            expected_interval_ms: None,
        };
        e.upsert_jobs(&[job]).await.unwrap();
        e.trigger("j").await.unwrap();
        let pending: i64 = sqlx::query_scalar("SELECT id FROM task_runs WHERE state = 'pending'")
            .fetch_one(&e.store.pool)
            .await
            .unwrap();
        (dir, e, pending)
    }

    async fn count(e: &Engine, sql: &str, id: i64) -> i64 {
        sqlx::query_scalar(sql).bind(id).fetch_one(&e.store.pool).await.unwrap()
    }

    /// A move the transition table forbids changes nothing: no state, no task event, no log row.
    #[tokio::test]
    async fn an_illegal_move_writes_nothing() {
        let (_dir, e, pending) = engine_with_a_pending_task().await;
        let events = "SELECT COUNT(*) FROM task_events WHERE task_run_id = $1";
        let logged = "SELECT COUNT(*) FROM event_log WHERE task_run_id = $1";
        let (before_events, before_logged) =
            (count(&e, events, pending).await, count(&e, logged, pending).await);
        let mut tx = e.store.begin().await.unwrap();
        let m =
            Move { task_run: pending, attempt: None, from: TaskState::Pending, reason: None, since: None };
        let err = one(&mut tx, TaskState::Succeeded, m, &Also::default(), 1).await.unwrap_err();
        assert!(err.to_string().contains("pending → succeeded is not allowed"), "{err}");
        tx.commit().await.unwrap();
        let state: String = sqlx::query_scalar("SELECT state FROM task_runs WHERE id = $1")
            .bind(pending)
            .fetch_one(&e.store.pool)
            .await
            .unwrap();
        assert_eq!(state, "pending");
        assert_eq!(count(&e, events, pending).await, before_events);
        assert_eq!(count(&e, logged, pending).await, before_logged);
    }

    /// A legal move writes the state with its columns, one task event and one log row.
    #[tokio::test]
    async fn a_move_writes_the_state_its_event_and_its_log_row() {
        let (_dir, e, pending) = engine_with_a_pending_task().await;
        let mut tx = e.store.begin().await.unwrap();
        let m = Move {
            task_run: pending,
            attempt: None,
            from: TaskState::Pending,
            reason: Some("upstream"),
            since: None,
        };
        let also = Also { message: Text::Fill(Some("upstream failed")), ..Also::default() };
        one(&mut tx, TaskState::UpstreamFailed, m, &also, 42).await.unwrap();
        tx.commit().await.unwrap();
        let (state, message, finished): (String, Option<String>, Option<i64>) =
            sqlx::query_as("SELECT state, message, finished_at FROM task_runs WHERE id = $1")
                .bind(pending)
                .fetch_one(&e.store.pool)
                .await
                .unwrap();
        assert_eq!(
            (state.as_str(), message.as_deref(), finished),
            ("upstream_failed", Some("upstream failed"), Some(42))
        );
        let reason: Option<String> = sqlx::query_scalar(
            "SELECT reason FROM task_events WHERE task_run_id = $1 AND to_state = 'upstream_failed'",
        )
        .bind(pending)
        .fetch_one(&e.store.pool)
        .await
        .unwrap();
        assert_eq!(reason.as_deref(), Some("upstream"));
        let logged = "SELECT COUNT(*) FROM event_log WHERE task_run_id = $1 AND event_type = 'task_state' \
                      AND message = 'pending → upstream_failed: upstream'";
        assert_eq!(count(&e, logged, pending).await, 1);
    }

    #[test]
    fn the_set_clause_names_each_column_once_in_bind_order() {
        let (set, binds) = set_clause(TaskState::Running, &Also { leased: true, ..Also::default() }, 7);
        assert_eq!(
            set,
            "state = $1, updated_at = $2, attempts = attempts + 1, waiting = NULL, started_at = COALESCE(started_at, $2)"
        );
        assert_eq!(binds.len(), 2);
        let retry = Also {
            queued_at: QueuedAt::At(9),
            failures: Some(2),
            error_class: Text::Set(Some("data")),
            message: Text::Set(None),
            leased: false,
        };
        let (set, binds) = set_clause(TaskState::Retrying, &retry, 7);
        assert_eq!(
            set,
            "state = $1, updated_at = $2, queued_at = $3, failures = $4, error_class = $5, message = $6"
        );
        assert_eq!(binds.len(), 6);
        let (set, _) = set_clause(
            TaskState::Failed,
            &Also { error_class: Text::Fill(Some("data")), ..Also::default() },
            7,
        );
        assert_eq!(
            set,
            "state = $1, updated_at = $2, finished_at = $2, error_class = COALESCE($3, error_class)"
        );
    }
}
