//! Switchyard's scheduler: classification and planning ([`plan`]), the run engine with leases,
//! retries, timeouts and cron ([`engine`]; every task-state change goes through its one
//! transition writer), what the control plane shows ([`views`]: runs, nodes, dashboard, health,
//! metrics, cost, audit — read-only), what it tells the outside on its own ([`observe`]: alert
//! webhooks, event-log export), the state store ([`store`]: SQLite embedded, PostgreSQL for
//! several replicas, with the SQL helpers every writer shares), the control-plane HTTP API
//! ([`api`], wire types in [`api::types`]) and its client ([`client`]), and the serverless
//! launcher ([`launcher`]).
//!
//! Data flows: manifests → [`plan::plan`] → [`spec::JobSpec`]s stored by [`engine::Engine`] →
//! task runs queued in DAG order → leased over the API by node agents and serverless workers →
//! reports fenced by attempt id → dependents queued, failures propagated, runs finished.

#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod control_plane;
pub mod engine;
mod error;
pub mod launcher;
pub mod observe;
pub mod plan;
pub mod spec;
pub mod store;
pub mod views;

pub use error::Error;
pub use plan::{Compute, JobPlan, Plan, PlanError, TaskPlan, plan};
