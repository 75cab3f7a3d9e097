//! The event log's rows in the store: each event is written in the transaction of the change it
//! describes (a task transition, a node registered or lost, a run finished, an egress denial), so
//! an event exists exactly when its change was committed. Exporting them to the lake is
//! `crate::observe::export`' job.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::engine::state::TaskState;

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Level::Info),
            "warn" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            other => Err(format!("unknown event level `{other}` (expected info, warn or error)")),
        }
    }
}

/// An event to record, in the transaction of the change it describes.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) origin: String,
    pub(crate) level: Level,
    pub(crate) event_type: &'static str,
    pub(crate) message: String,
    pub(crate) details: serde_json::Value,
    /// For task events: the job and task names are joined in when the event is exported.
    pub(crate) task_run: Option<i64>,
}

impl NewEvent {
    /// A task transition.
    pub(crate) fn task_state(
        task_run: i64,
        attempt: Option<i64>,
        from: TaskState,
        to: TaskState,
        reason: Option<&str>,
    ) -> NewEvent {
        let level = match to {
            TaskState::Failed | TaskState::TimedOut | TaskState::UpstreamFailed => Level::Error,
            TaskState::Retrying | TaskState::Cancelled => Level::Warn,
            TaskState::Queued if from == TaskState::Running => Level::Warn,
            _ => Level::Info,
        };
        let message = match reason {
            Some(r) if !r.is_empty() => format!("{from} → {to}: {r}"),
            _ => format!("{from} → {to}"),
        };
        NewEvent {
            origin: format!("task_run/{task_run}"),
            level,
            event_type: "task_state",
            message,
            details: serde_json::json!({
                "task_run": task_run, "attempt": attempt, "from": from.as_str(), "to": to.as_str(), "reason": reason,
            }),
            task_run: Some(task_run),
        }
    }
}

/// The name of this control-plane process in `origin`s and as the exporter's lease holder:
/// `HOSTNAME-PID-RANDOM`, unique per process.
pub fn replica() -> &'static str {
    static REPLICA: OnceLock<String> = OnceLock::new();
    REPLICA.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
    })
}

/// Rows per insert statement (7 values each).
const EMIT_CHUNK: usize = 100;

/// Records `events` on `conn` (the caller's transaction).
pub(crate) async fn insert(
    conn: &mut sqlx::AnyConnection,
    events: &[NewEvent],
    at: i64,
) -> Result<(), Error> {
    for chunk in events.chunks(EMIT_CHUNK) {
        let sql = format!(
            "INSERT INTO event_log (at, origin, level, event_type, message, details, task_run_id) VALUES {}",
            crate::store::sql::value_rows(chunk.len(), 7)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(at)
                .bind(e.origin.clone())
                .bind(e.level.as_str())
                .bind(e.event_type)
                .bind(e.message.clone())
                .bind(e.details.to_string())
                .bind(e.task_run);
        }
        q.execute(&mut *conn).await.map_err(Error::store)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_levels() {
        let e = NewEvent::task_state(1, Some(2), TaskState::Running, TaskState::Failed, Some("boom"));
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.message, "running → failed: boom");
        let e = NewEvent::task_state(1, None, TaskState::Pending, TaskState::Queued, None);
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.message, "pending → queued");
        let e = NewEvent::task_state(1, None, TaskState::Running, TaskState::Queued, Some("lease lost"));
        assert_eq!(e.level, Level::Warn);
    }
}
