//! Task and job run states, and the one table of legal task transitions (DESIGN §5). Every state
//! change in the engine goes through [`check`], so an illegal move is a bug caught where it happens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for the tasks it depends on.
    Pending,
    /// Ready; waiting for a node or worker to lease it.
    Queued,
    Running,
    /// Between attempts, waiting out its backoff; leasable once the backoff has passed.
    Retrying,
    Succeeded,
    Failed,
    UpstreamFailed,
    Cancelled,
    TimedOut,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::Cancelled,
        TaskState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::UpstreamFailed
                | TaskState::Cancelled
                | TaskState::TimedOut
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task state `{s}`"))
    }
}

/// The legal task transitions. Anything else is refused.
pub(crate) fn allowed(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    matches!(
        (from, to),
        (Pending, Queued | UpstreamFailed | Cancelled)
            | (Queued, Running | Cancelled)
            | (Running, Succeeded | Failed | TimedOut | Retrying | Queued | Cancelled)
            | (Retrying, Running | Cancelled)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

impl FromStr for RunState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "cancelled" => RunState::Cancelled,
            other => return Err(format!("unknown run state `{other}`")),
        })
    }
}

/// What an attempt ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Its node stopped heartbeating; the lease was reclaimed.
    Lost,
    /// Its node gave the lease back (draining) before finishing.
    HandedBack,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::TimedOut => "timed_out",
            AttemptState::Cancelled => "cancelled",
            AttemptState::Lost => "lost",
            AttemptState::HandedBack => "handed_back",
        }
    }
}

impl FromStr for AttemptState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => AttemptState::Running,
            "succeeded" => AttemptState::Succeeded,
            "failed" => AttemptState::Failed,
            "timed_out" => AttemptState::TimedOut,
            "cancelled" => AttemptState::Cancelled,
            "lost" => AttemptState::Lost,
            "handed_back" => AttemptState::HandedBack,
            other => return Err(format!("unknown attempt state `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_go_nowhere() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(!allowed(from, to), "{from} → {to}");
            }
        }
        assert!(allowed(TaskState::Running, TaskState::Queued), "a lost lease requeues");
        assert!(!allowed(TaskState::Pending, TaskState::Running), "no running before queued");
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
    }
}
