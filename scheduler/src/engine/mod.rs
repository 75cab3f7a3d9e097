//! The run engine: job runs and task runs, leases with fencing, retries with backoff and full
//! jitter, timeouts, cancellation, upstream-failure propagation, continuous tasks and cron.
//!
//! All state lives in the [`Store`]; the engine keeps nothing that a restart would lose. Every task
//! state change goes through one place, [`transition`], which checks it against [`state::allowed`]
//! and records it in `task_events` and the event log. Hot paths (lease,
//! complete) change many rows in one transaction so that a batch of tasks costs a few statements,
//! not a few per task.

mod cancel;
mod certificates;
mod commits;
mod complete;
pub(crate) mod cron;
mod egress;
pub(crate) mod lease;
mod maintenance;
mod nodes;
mod queue;
mod settle;
pub mod state;
mod submit;
mod tick;
mod tokens;
mod transition;
mod triggers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use maintenance::maintenance_slot;
pub use state::{AttemptState, RunState, TaskState};
pub use tokens::hash_token;
// The wire types, for callers that knew them here.
pub use crate::api::types::{
    AuditRecord, HeartbeatReply, Lease, NodeInfo, NodeKind, Outcome, PolicyVersion, Registration, Report,
    ReportResult, Role, RunOptions, Stop,
};

use crate::Error;
use crate::store::Store;

/// Knobs of the engine, from the settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// How many times a task may lose its node before it fails.
    pub max_losses: u32,
    /// The settings' pools (name → egress IPs), for node registration checks.
    pub settings: switchyard_config::settings::Settings,
}

/// Cheap to clone; clones share the store and the wake-up signal.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) store: Store,
    pub(crate) config: Arc<EngineConfig>,
    /// Wakes long-polling lease requests when work is queued (in this process; other replicas'
    /// waiters notice within their poll interval).
    pub(crate) work: Arc<Notify>,
    /// Tokens already authenticated (every API call presents one): see `Engine::authenticate`.
    pub(crate) known_tokens: tokens::KnownTokens,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Self {
        Engine {
            store,
            config: Arc::new(config),
            work: Arc::new(Notify::new()),
            known_tokens: tokens::KnownTokens::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// What the control plane shows (runs, nodes, health, metrics, cost): read-only, on the
    /// store's reader pool.
    pub fn views(&self) -> crate::views::Views {
        crate::views::Views::from(self)
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ready(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.store.pool).await.map_err(Error::store)?;
        Ok(())
    }
}

/// Exponential backoff with full jitter: a uniform delay in `[0, min(max, base · 2^(n-1))]`.
pub(crate) fn backoff_ms(base: i64, max: i64, failures: i64) -> i64 {
    let exp = base.saturating_mul(1i64 << (failures - 1).clamp(0, 30));
    let cap = exp.min(max).max(0);
    if cap == 0 { 0 } else { rand::random_range(0..=cap) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_the_exponential_cap() {
        for failures in 1..10 {
            for _ in 0..200 {
                let d = backoff_ms(100, 5_000, failures);
                assert!(d >= 0 && d <= (100 << (failures - 1)).min(5_000), "{failures}: {d}");
            }
        }
        assert_eq!(backoff_ms(0, 1000, 3), 0);
    }
}
