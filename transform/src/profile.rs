//! Where a run's time went, recorded with the attempt (`details.transform.profile`): the phases
//! Switchyard runs around the query, and the query's operators by the compute time their own
//! metrics count. What dominates a slow transform is read off here, not guessed.

use std::collections::BTreeMap;
use std::time::Duration;

use deltalake::datafusion::physical_plan::ExecutionPlan;
use serde::Serialize;
use switchyard_lake::deltalake;

/// Wall time per phase, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Profile {
    /// Input versions, the output's position check, the inputs' logs replayed for the scan and
    /// the output's, opened for writing.
    pub inputs_ms: f64,
    /// SQL to a physical plan (with the expectations' checks).
    pub plan_ms: f64,
    /// Whether the run can be incremental: the inputs' logs since the last run.
    pub refresh_ms: f64,
    /// The query's stream (scan, join, aggregate…), less the time spent writing its output.
    pub query_ms: f64,
    /// Expectations and Parquet encoding and upload of the output, as it streams.
    pub write_ms: f64,
    /// Closing the files and the commits (quarantine, then output).
    pub commit_ms: f64,
    /// The query's operators by name (`DataSourceExec` is the scan), summed over partitions:
    /// CPU time, which on several cores can exceed `query_ms`.
    pub operators: Vec<OperatorTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorTime {
    pub operator: String,
    pub compute_ms: f64,
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Each operator's `elapsed_compute`, summed by operator name, largest first.
pub(crate) fn operators(plan: &dyn ExecutionPlan) -> Vec<OperatorTime> {
    fn walk(plan: &dyn ExecutionPlan, into: &mut BTreeMap<String, u64>) {
        if let Some(nanos) = plan.metrics().and_then(|m| m.elapsed_compute()) {
            *into.entry(plan.name().to_owned()).or_default() += nanos as u64;
        }
        for child in plan.children() {
            walk(child.as_ref(), into);
        }
    }
    let mut by_name = BTreeMap::new();
    walk(plan, &mut by_name);
    let mut out: Vec<OperatorTime> = by_name
        .into_iter()
        .map(|(operator, nanos)| OperatorTime { operator, compute_ms: ms(Duration::from_nanos(nanos)) })
        .collect();
    out.sort_by(|a, b| b.compute_ms.total_cmp(&a.compute_ms));
    out
}
