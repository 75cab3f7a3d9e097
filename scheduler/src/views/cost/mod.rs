//! The cost report (`switchyard cost [--since 7d] [--json]`, `GET /api/v1/cost?since=7d`): what the
//! recorded history cost on the compute it ran on, against the same history run all-dedicated and
//! all-serverless, with per-task recommendations. Every figure carries its arithmetic, and every
//! input is in the report (`nodes`) or in `switchyard runs --since … --json` (attempts), so an
//! operator can recompute the totals by hand.
//!
//! # The model
//!
//! The window is `[from, until)`: `until` is the time of the report, `from = until − since`.
//! Intervals are clipped to it; times are epoch milliseconds, durations seconds.
//!
//! * **Dedicated, measured**: every dedicated node costs for the time it was alive, idle or busy:
//!   `registered_at` until its last heartbeat or the end of the last attempt it reported, whichever
//!   is later (or `until` while it is still heartbeating within the lease TTL). Σ node-hours ×
//!   `[prices] dedicated_node_hour`.
//! * **Serverless, measured**: every worker costs from the launcher's decision to start it
//!   (`launched_at`, so the cold start is included; `registered_at` when unknown) until its last
//!   heartbeat or attempt end, as above (so the idle timeout before it exits is included). Σ worker-seconds ×
//!   `[serverless] vcpus_per_worker` × `[prices] serverless_vcpu_second`.
//! * **All-dedicated**: the measured dedicated nodes, plus enough always-on nodes for the serverless
//!   work: ⌈peak concurrent serverless attempts / slots per node⌉ × window hours × node-hour price.
//!   Slots per node are the largest pool's `slots` (4 without pools).
//! * **All-serverless**: the measured workers, plus every dedicated attempt moved to a worker: its
//!   duration plus the median measured cold start (launch → first lease), × vCPUs × price. Tasks that
//!   connect to external destinations cannot run serverless (workers have no egress); the scenario is
//!   then not `allowed` and `blocked` says which tasks and why.
//! * **Per task**: on serverless, `(busy seconds + attempts × median cold start) × vCPUs × price`; on
//!   dedicated, the slots it needs (its peak concurrent attempts) of an always-on node:
//!   `slots needed × window hours × node-hour price / slots per node`. When the other compute is
//!   cheaper, a recommendation says so, and whether the task may move.
//!
//! Money is rounded to 6 decimals in the JSON; the arithmetic strings round for reading.
//!
//! # JSON (`switchyard cost --json`, `GET /api/v1/cost`)
//!
//! ```json
//! { "since": "7d", "from": 1700000000000, "until": 1700604800000, "window_hours": 168.0,
//!   "inputs": { "dedicated_node_hour": 0.5, "serverless_vcpu_second": 0.000024, "vcpus_per_worker": 1.0,
//!               "slots_per_node": 4, "cold_start_seconds": 1.2, "cold_starts_measured": 12,
//!               "peak_serverless_attempts": 3, "break_even_busy_share": 1.45 },
//!   "actual":         { "dedicated":  { "quantity": 336.0, "unit": "node-hour", "price": 0.5, "cost": 168.0, "arithmetic": "…" },
//!                       "serverless": { "quantity": 9000.0, "unit": "vCPU-second", "price": 0.000024, "cost": 0.216, "arithmetic": "…" },
//!                       "total": 168.216, "arithmetic": "168.00 + 0.216 = 168.216",
//!                       "allowed": true, "blocked": [], "notes": [] },
//!   "all_dedicated":  { …same shape… },
//!   "all_serverless": { …same shape…, "allowed": false,
//!                       "blocked": [ { "job": "claims", "task": "ingest", "reason": "connects to api.partner.example:443 …" } ] },
//!   "nodes": [ { "id": "egress-a-127.0.0.2-1a2b3c4d", "kind": "dedicated", "pool": "egress-a", "slots": 4,
//!                "state": "active", "registered_at": 0, "launched_at": null, "first_lease_at": 0,
//!                "last_heartbeat_at": 0, "counted_from": 0, "counted_until": 0, "seconds": 604800.0,
//!                "busy_seconds": 3600.0, "cold_start_seconds": null, "cost": 84.0, "arithmetic": "…" } ],
//!   "tasks": [ { "job": "claims", "task": "silver", "compute": "serverless", "continuous": false,
//!                "attempts": 7, "busy_seconds": 420.0, "busy_share": 0.0007, "peak_concurrent": 1,
//!                "serverless_cost": 0.01, "serverless_arithmetic": "…",
//!                "dedicated_cost": 21.0, "dedicated_arithmetic": "…",
//!                "serverless_allowed": true, "why_not_serverless": null } ],
//!   "recommendations": [ { "job": "claims", "task": "stream", "from": "serverless", "to": "dedicated",
//!                          "allowed": true, "saving": 3.2, "message": "…",
//!                          "change": "add `compute: dedicated` to task `stream` in jobs/claims.yaml:14" } ],
//!   "assumptions": [ "…" ] }
//! ```
//!
//! # Layout
//!
//! `report` reads the history from the store (the SQL, nothing else) and `model` turns it into
//! the figures above (the arithmetic, nothing else), so the model can be checked without a store.

mod model;
mod report;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The window `switchyard cost` and `GET /api/v1/cost` use when none is given.
pub const DEFAULT_SINCE: &str = "7d";

/// Slots per node for the all-dedicated scenario when no pool is configured (the pools' default).
const DEFAULT_SLOTS: i64 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostReport {
    /// The window as asked for (`7d`, `12h`).
    pub since: String,
    /// Window start and end, epoch ms; `until` is when the report was made.
    pub from: i64,
    pub until: i64,
    pub window_hours: f64,
    pub inputs: CostInputs,
    /// What the history cost on the compute it ran on.
    pub actual: Scenario,
    /// The same history with serverless work on always-on dedicated nodes.
    pub all_dedicated: Scenario,
    /// The same history with dedicated work on serverless workers.
    pub all_serverless: Scenario,
    /// Every node and worker alive in the window, with the interval counted.
    pub nodes: Vec<NodeUsage>,
    /// Every task with an attempt in the window, with what it would cost on either compute.
    pub tasks: Vec<TaskUsage>,
    pub recommendations: Vec<Recommendation>,
    /// The model's simplifications, in words.
    pub assumptions: Vec<String>,
}

/// Prices and measured figures the scenarios are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostInputs {
    pub dedicated_node_hour: f64,
    pub serverless_vcpu_second: f64,
    pub vcpus_per_worker: f64,
    /// Slots of a dedicated node running serverless work in the all-dedicated scenario.
    pub slots_per_node: i64,
    /// Median cold start (launcher decision → first lease) of workers launched in the window, in
    /// seconds; `null` when none was measured (moved attempts are then priced without one).
    pub cold_start_seconds: Option<f64>,
    pub cold_starts_measured: usize,
    /// Most serverless attempts running at once in the window.
    pub peak_serverless_attempts: i64,
    /// Share of the window a task must be busy for one always-on dedicated slot to cost less than
    /// serverless: `node-hour price / (slots per node × 3600 × vCPUs × vCPU-second price)`. Above 1:
    /// never. `null` when serverless is free.
    pub break_even_busy_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scenario {
    pub dedicated: CostLine,
    pub serverless: CostLine,
    pub total: f64,
    pub arithmetic: String,
    /// False when some task could not run this way: the figure is then hypothetical, and
    /// `blocked` says which tasks and why.
    pub allowed: bool,
    pub blocked: Vec<Blocked>,
    pub notes: Vec<String>,
}

/// One priced quantity: `quantity × price = cost`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostLine {
    pub quantity: f64,
    /// `node-hour` or `vCPU-second`.
    pub unit: String,
    pub price: f64,
    pub cost: f64,
    pub arithmetic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Blocked {
    pub job: String,
    pub task: String,
    pub reason: String,
}

/// A node or worker's time in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeUsage {
    pub id: String,
    /// `dedicated` or `serverless`.
    pub kind: String,
    pub pool: Option<String>,
    pub slots: i64,
    /// `active` or `gone`.
    pub state: String,
    pub registered_at: i64,
    pub launched_at: Option<i64>,
    pub first_lease_at: Option<i64>,
    pub last_heartbeat_at: i64,
    /// The interval priced: alive time clipped to the window. Alive until the later of the last
    /// heartbeat and the last attempt end the node reported, or until `until` while it is still
    /// heartbeating within the lease TTL.
    pub counted_from: i64,
    pub counted_until: i64,
    /// `(counted_until − counted_from) / 1000`.
    pub seconds: f64,
    /// Attempt time on this node in the window, summed over its slots.
    pub busy_seconds: f64,
    /// `(first_lease_at − launched_at) / 1000` for a worker that has both.
    pub cold_start_seconds: Option<f64>,
    pub cost: f64,
    pub arithmetic: String,
}

/// A task's work in the window (all runs of it), priced on either compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskUsage {
    pub job: String,
    pub task: String,
    /// Where it runs: `dedicated` or `serverless`.
    pub compute: String,
    pub continuous: bool,
    /// Attempts overlapping the window.
    pub attempts: i64,
    /// Σ attempt durations clipped to the window (a running attempt counts until `until`).
    pub busy_seconds: f64,
    /// `busy_seconds / window seconds`.
    pub busy_share: f64,
    /// Most attempts of this task running at once.
    pub peak_concurrent: i64,
    pub serverless_cost: f64,
    pub serverless_arithmetic: String,
    pub dedicated_cost: f64,
    pub dedicated_arithmetic: String,
    /// Whether the task may run on a serverless worker (not when it connects to external
    /// destinations).
    pub serverless_allowed: bool,
    pub why_not_serverless: Option<String>,
}

/// Another compute would cost less for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    pub job: String,
    pub task: String,
    pub from: String,
    pub to: String,
    /// Whether the task may run there; when not, `message` says why it stays.
    pub allowed: bool,
    /// What moving would save over the window (its current estimate − the other).
    pub saving: f64,
    pub message: String,
    /// The manifest change that makes the move, when it is allowed: which line of which file
    /// (for tasks submitted before manifests' locations were recorded, the job only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// `7d`, `12h`, `90m` → milliseconds; refused with what to write when it is not a positive duration.
pub fn parse_since(since: &str) -> Result<i64, Error> {
    let parsed: Result<switchyard_config::value::Duration, _> = since.trim().parse();
    match parsed {
        Ok(d) if !d.as_std().is_zero() => Ok(i64::try_from(d.as_std().as_millis()).unwrap_or(i64::MAX / 2)),
        Ok(_) => Err(Error::BadRequest {
            what: format!("--since {since}"),
            reason: "the window is empty".into(),
            hint: "give a positive duration, e.g. 7d, 24h or 90m".into(),
        }),
        Err(e) => Err(Error::BadRequest {
            what: format!("--since {since}"),
            reason: e.message,
            hint: "give a duration with a unit, e.g. 7d, 24h or 90m".into(),
        }),
    }
}

/// Decimals that show `x` to 3 significant digits when it is below 1 (at least `min`, at most 9).
fn decimals(x: f64, min: usize) -> usize {
    if x == 0.0 || x.abs() >= 1.0 {
        return min;
    }
    let leading_zeros = (-x.abs().log10()).floor() as usize;
    (leading_zeros + 3).clamp(min, 9)
}

/// Money for reading: at least 2 decimals, up to 4, or 3 significant digits below 0.01 (`7.00`,
/// `0.612`, `0.00029`).
pub fn fmt_money(x: f64) -> String {
    let s = format!("{x:.*}", if x.abs() < 0.01 { decimals(x, 4) } else { 4 });
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    format!("{int}.{frac:0<2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formatting() {
        assert_eq!(fmt_money(7.0), "7.00");
        assert_eq!(fmt_money(0.612), "0.612");
        assert_eq!(fmt_money(1.25), "1.25");
        assert_eq!(fmt_money(0.000291), "0.000291");
        assert_eq!(fmt_money(0.0000102), "0.0000102");
        assert_eq!(fmt_money(0.0), "0.00");
        assert_eq!(fmt_money(13.14), "13.14");
    }

    #[test]
    fn since_is_a_positive_duration() {
        assert_eq!(parse_since("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_since("1h 30m").unwrap(), 5_400_000);
        let e = parse_since("7").unwrap_err().to_string();
        assert!(e.contains("--since 7") && e.contains("unit"), "{e}");
        assert!(parse_since("0s").is_err());
    }
}
