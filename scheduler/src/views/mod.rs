//! What the control plane shows: runs with their tasks and attempts ([`runs`]), nodes
//! ([`nodes`]), the dashboard's overview ([`dashboard`]), per-job and per-pool health with
//! severities and actions ([`health`]), the Prometheus exposition ([`metrics`]), the cost
//! report and its advice ([`cost`]) and the egress audit trail ([`audit`]).
//!
//! Views only read, from the store's reader pool, so a dashboard refresh or a scrape never
//! waits behind the engine's writes; what they show changes only through the engine. They are
//! computed from the store on every call, so every replica shows the same.

pub mod audit;
pub mod cost;
pub mod dashboard;
pub mod health;
pub mod metrics;
pub mod nodes;
pub mod runs;

use std::sync::Arc;

pub use cost::{Blocked, CostInputs, CostLine, CostReport, NodeUsage, Recommendation, Scenario, TaskUsage};
pub use dashboard::{
    DestinationCounts, EgressActivity, FailureView, IdentityExpiry, JobStatus, NodeStatus, Overview,
    QueueDepth, ReasonCount, RunBrief, WorkerPoint,
};
pub use health::Health;
pub use nodes::NodeView;
pub use runs::{AttemptView, RunView, TaskView};

use crate::engine::{Engine, EngineConfig};
use crate::store::Store;

/// Cheap to clone: a handle on the store and the settings the views need (pools, prices, the
/// lease TTL that says which nodes are live).
#[derive(Debug, Clone)]
pub struct Views {
    pub(crate) store: Store,
    pub(crate) config: Arc<EngineConfig>,
}

impl Views {
    pub fn new(store: Store, config: Arc<EngineConfig>) -> Self {
        Views { store, config }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl From<&Engine> for Views {
    fn from(engine: &Engine) -> Self {
        Views::new(engine.store.clone(), engine.config.clone())
    }
}
