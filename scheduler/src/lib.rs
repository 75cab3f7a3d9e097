//! Switchyard's scheduler: classification and planning today; the run engine, leases, state store,
//! control-plane API and serverless launcher come with the runtime issue.
//!
//! [`plan::plan`] takes loaded [`switchyard_config::Inputs`] and decides, for every task, its
//! workload class, its compute (`dedicated` when it has an external destination, `serverless` when
//! it reads only lake tables), the pool and static egress IPs it may use, and the tasks it runs
//! after — each with human-readable reasons — or says exactly which rule makes that impossible.

#![forbid(unsafe_code)]

pub mod plan;

pub use plan::{Compute, JobPlan, Plan, PlanError, TaskPlan, plan};
