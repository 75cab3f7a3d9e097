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

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Views;
use crate::Error;
use crate::spec::{TaskSpec, Work};
use crate::store::now_ms;

/// The window `switchyard cost` and `GET /api/v1/cost` use when none is given.
pub const DEFAULT_SINCE: &str = "7d";

/// Slots per node for the all-dedicated scenario when no pool is configured (the pools' default).
const DEFAULT_SLOTS: i64 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    pub quantity: f64,
    /// `node-hour` or `vCPU-second`.
    pub unit: String,
    pub price: f64,
    pub cost: f64,
    pub arithmetic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub job: String,
    pub task: String,
    pub reason: String,
}

/// A node or worker's time in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One attempt clipped to the window.
struct Span {
    key: (String, String),
    node: String,
    serverless: bool,
    start: i64,
    end: i64,
}

impl Views {
    /// The cost report over the last `since` (a duration such as `7d`), until now.
    pub async fn cost(&self, since: &str) -> Result<CostReport, Error> {
        self.cost_until(since, now_ms()).await
    }

    /// The cost report over `[until − since, until)`: for reports at a fixed time (tests).
    pub async fn cost_until(&self, since: &str, until: i64) -> Result<CostReport, Error> {
        let window = parse_since(since)?;
        let from = until - window;
        let settings = &self.config.settings;
        let price_d = settings.prices.dedicated_node_hour;
        let price_s = settings.prices.serverless_vcpu_second;
        let vcpus = settings.serverless.vcpus_per_worker;
        let slots_per_node =
            settings.pools.iter().map(|p| i64::from(p.slots)).max().unwrap_or(DEFAULT_SLOTS).max(1);
        let window_s = window as f64 / 1000.0;
        let window_h = window_s / 3600.0;
        let ttl = self.config.lease_ttl.as_millis() as i64;

        // Attempts overlapping the window.
        let rows = sqlx::query(
            "SELECT a.id, a.node_id, a.started_at, a.finished_at, a.task_run_id, t.task, t.compute, t.continuous, r.job \
             FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN job_runs r ON r.id = t.run_id \
             WHERE a.started_at < $1 AND (a.finished_at IS NULL OR a.finished_at > $2) ORDER BY a.id",
        )
        .bind(until)
        .bind(from)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut spans = Vec::with_capacity(rows.len());
        // A node reporting an attempt's end was alive then, even if it heartbeat earlier.
        let mut reported: HashMap<String, i64> = HashMap::new();
        // Per task: compute, continuous, and its latest task run (whose spec says what it connects to).
        let mut latest: BTreeMap<(String, String), (String, bool, i64)> = BTreeMap::new();
        for row in &rows {
            let started: i64 = row.try_get("started_at").map_err(Error::store)?;
            let finished: Option<i64> = row.try_get("finished_at").map_err(Error::store)?;
            let (start, end) = (started.max(from), finished.unwrap_or(until).min(until));
            let key: (String, String) =
                (row.try_get("job").map_err(Error::store)?, row.try_get("task").map_err(Error::store)?);
            let compute: String = row.try_get("compute").map_err(Error::store)?;
            let continuous: i64 = row.try_get("continuous").map_err(Error::store)?;
            let task_run: i64 = row.try_get("task_run_id").map_err(Error::store)?;
            let entry = latest.entry(key.clone()).or_insert((compute.clone(), continuous != 0, task_run));
            if task_run >= entry.2 {
                *entry = (compute.clone(), continuous != 0, task_run);
            }
            let node: String = row.try_get("node_id").map_err(Error::store)?;
            if let Some(finished) = finished {
                let seen = reported.entry(node.clone()).or_insert(finished);
                *seen = (*seen).max(finished);
            }
            if end <= start {
                continue;
            }
            spans.push(Span { key, node, serverless: compute == "serverless", start, end });
        }

        // Nodes and workers alive in the window.
        let rows = sqlx::query(
            "SELECT id, kind, pool, slots, state, registered_at, heartbeat_at, launched_at, first_lease_at \
             FROM nodes WHERE heartbeat_at >= $1 AND COALESCE(launched_at, registered_at) < $2 \
             ORDER BY kind, registered_at, id",
        )
        .bind(from - ttl)
        .bind(until)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut busy_by_node: HashMap<&str, i64> = HashMap::new();
        for s in &spans {
            *busy_by_node.entry(s.node.as_str()).or_default() += s.end - s.start;
        }
        let mut nodes = Vec::new();
        let mut cold_starts = Vec::new();
        let (mut dedicated_ms, mut dedicated_count, mut worker_ms, mut worker_count) = (0i64, 0, 0i64, 0);
        for row in &rows {
            let id: String = row.try_get("id").map_err(Error::store)?;
            let kind: String = row.try_get("kind").map_err(Error::store)?;
            let state: String = row.try_get("state").map_err(Error::store)?;
            let registered_at: i64 = row.try_get("registered_at").map_err(Error::store)?;
            let heartbeat_at: i64 = row.try_get("heartbeat_at").map_err(Error::store)?;
            let launched_at: Option<i64> = row.try_get("launched_at").map_err(Error::store)?;
            let first_lease_at: Option<i64> = row.try_get("first_lease_at").map_err(Error::store)?;
            let serverless = kind == "serverless";
            let start = if serverless { launched_at.unwrap_or(registered_at) } else { registered_at };
            let live = state == "active" && heartbeat_at >= until - ttl;
            let last_seen = heartbeat_at.max(reported.get(id.as_str()).copied().unwrap_or(heartbeat_at));
            let end = if live { until } else { last_seen };
            let (counted_from, counted_until) = (start.max(from), end.min(until));
            if counted_until <= counted_from {
                continue;
            }
            let ms = counted_until - counted_from;
            let seconds = ms as f64 / 1000.0;
            let cold = match (serverless, launched_at, first_lease_at) {
                (true, Some(l), Some(f)) if f >= l => Some((f - l) as f64 / 1000.0),
                _ => None,
            };
            if let (Some(c), Some(l)) = (cold, launched_at) {
                if l >= from {
                    cold_starts.push(c);
                }
            }
            let ends = if live {
                "still running"
            } else if state == "gone" {
                "gone"
            } else {
                "silent: counted to its last heartbeat or report"
            };
            let (cost, arithmetic) = if serverless {
                worker_ms += ms;
                worker_count += 1;
                let cost = money(seconds * vcpus * price_s);
                (
                    cost,
                    format!(
                        "{} s × {} vCPU × {} = {} ({ends})",
                        num(seconds),
                        num(vcpus),
                        num(price_s),
                        fmt_money(cost)
                    ),
                )
            } else {
                dedicated_ms += ms;
                dedicated_count += 1;
                let cost = money(seconds / 3600.0 * price_d);
                (
                    cost,
                    format!("{} h × {} = {} ({ends})", num(seconds / 3600.0), num(price_d), fmt_money(cost)),
                )
            };
            nodes.push(NodeUsage {
                busy_seconds: busy_by_node.get(id.as_str()).copied().unwrap_or(0) as f64 / 1000.0,
                id,
                kind,
                pool: row.try_get("pool").map_err(Error::store)?,
                slots: row.try_get("slots").map_err(Error::store)?,
                state,
                registered_at,
                launched_at,
                first_lease_at,
                last_heartbeat_at: heartbeat_at,
                counted_from,
                counted_until,
                seconds,
                cold_start_seconds: cold,
                cost,
                arithmetic,
            });
        }
        let cold = median(&mut cold_starts);
        let cold_s = cold.unwrap_or(0.0);
        let node_slots: HashMap<&str, i64> = nodes.iter().map(|n| (n.id.as_str(), n.slots.max(1))).collect();

        // The measured scenario.
        let dedicated_h = dedicated_ms as f64 / 3_600_000.0;
        let worker_s = worker_ms as f64 / 1000.0;
        let actual_dedicated = CostLine {
            quantity: round(dedicated_h),
            unit: "node-hour".into(),
            price: price_d,
            cost: money(dedicated_h * price_d),
            arithmetic: format!(
                "{dedicated_count} node(s), {} node-h × {} = {}",
                num(dedicated_h),
                num(price_d),
                fmt_money(money(dedicated_h * price_d))
            ),
        };
        let actual_serverless = CostLine {
            quantity: round(worker_s * vcpus),
            unit: "vCPU-second".into(),
            price: price_s,
            cost: money(worker_s * vcpus * price_s),
            arithmetic: format!(
                "{worker_count} worker(s), {} worker-s × {} vCPU × {} = {}",
                num(worker_s),
                num(vcpus),
                num(price_s),
                fmt_money(money(worker_s * vcpus * price_s))
            ),
        };
        let actual = scenario(actual_dedicated.clone(), actual_serverless.clone(), vec![], vec![]);

        // Tasks.
        let specs = self.task_specs(latest.values().map(|v| v.2).collect()).await?;
        let mut tasks = Vec::new();
        let mut recommendations = Vec::new();
        let mut blocked = Vec::new();
        let (mut moved_ms, mut moved_attempts) = (0i64, 0i64);
        for (key, (compute, continuous, task_run)) in &latest {
            let mine: Vec<&Span> = spans.iter().filter(|s| &s.key == key).collect();
            let attempts = mine.len() as i64;
            let busy_ms: i64 = mine.iter().map(|s| s.end - s.start).sum();
            let busy = busy_ms as f64 / 1000.0;
            let peak = peak(mine.iter().map(|s| (s.start, s.end))).max(1);
            let dedicated = compute == "dedicated";
            let slots = if dedicated {
                mine.iter().find_map(|s| node_slots.get(s.node.as_str()).copied()).unwrap_or(slots_per_node)
            } else {
                slots_per_node
            };
            let serverless_cost = money((busy + attempts as f64 * cold_s) * vcpus * price_s);
            let serverless_arithmetic = format!(
                "({} s busy + {attempts} × {} s cold start) × {} vCPU × {} = {}",
                num(busy),
                num(cold_s),
                num(vcpus),
                num(price_s),
                fmt_money(serverless_cost)
            );
            let dedicated_cost = money(peak as f64 * window_h * price_d / slots as f64);
            let dedicated_arithmetic = format!(
                "{peak} of {slots} slots of an always-on node: {peak} × {} h × {} / {slots} = {}",
                num(window_h),
                num(price_d),
                fmt_money(dedicated_cost)
            );
            let spec = specs.get(task_run);
            let why_not = spec.and_then(why_not_serverless);
            // Where to make a change: `in FILE:LINE`, or the job when the spec predates that.
            let place = spec
                .and_then(|s| s.manifest.clone())
                .map_or_else(|| format!("in the manifest of job `{}`", key.0), |at| format!("in {at}"));
            // A dedicated task that reaches only the lake is there because its manifest says
            // `compute: dedicated`.
            let pinned = dedicated && why_not.is_none();
            if dedicated {
                moved_ms += busy_ms;
                moved_attempts += attempts;
                if let Some(reason) = &why_not {
                    blocked.push(Blocked { job: key.0.clone(), task: key.1.clone(), reason: reason.clone() });
                }
            }
            let name = format!("{}.{}", key.0, key.1);
            if dedicated && serverless_cost < dedicated_cost {
                let saving = money(dedicated_cost - serverless_cost);
                let message = match &why_not {
                    Some(reason) => format!(
                        "{name} would cost {} serverless instead of {} as dedicated slots, but it cannot move: {reason}",
                        fmt_money(serverless_cost),
                        fmt_money(dedicated_cost)
                    ),
                    None => format!(
                        "{name} would cost {} serverless instead of {} as dedicated slots; it reaches no external destination, so serverless is allowed",
                        fmt_money(serverless_cost),
                        fmt_money(dedicated_cost)
                    ),
                };
                recommendations.push(Recommendation {
                    job: key.0.clone(),
                    task: key.1.clone(),
                    from: "dedicated".into(),
                    to: "serverless".into(),
                    allowed: why_not.is_none(),
                    saving,
                    message,
                    change: pinned.then(|| {
                        format!("remove `compute: dedicated` (and any `pool:`) from task `{}` {place}", key.1)
                    }),
                });
            } else if !dedicated && dedicated_cost < serverless_cost {
                let saving = money(serverless_cost - dedicated_cost);
                let how = if *continuous { "runs continuously and was" } else { "was" };
                recommendations.push(Recommendation {
                    job: key.0.clone(),
                    task: key.1.clone(),
                    from: "serverless".into(),
                    to: "dedicated".into(),
                    allowed: true,
                    saving,
                    message: format!(
                        "{name} {how} busy {}% of the window: {peak} always-on dedicated slot(s) would cost {} instead of {} serverless (saving {}); \
                         on a pool's node it still reaches only the lake",
                        pct(busy / window_s),
                        fmt_money(dedicated_cost),
                        fmt_money(serverless_cost),
                        fmt_money(saving)
                    ),
                    change: Some(format!(
                        "add `compute: dedicated` to task `{}` {place} (and `pool: NAME` to choose the pool)",
                        key.1
                    )),
                });
            }
            tasks.push(TaskUsage {
                job: key.0.clone(),
                task: key.1.clone(),
                compute: compute.clone(),
                continuous: *continuous,
                attempts,
                busy_seconds: busy,
                busy_share: round(if window_s > 0.0 { busy / window_s } else { 0.0 }),
                peak_concurrent: peak,
                serverless_cost,
                serverless_arithmetic,
                dedicated_cost,
                dedicated_arithmetic,
                serverless_allowed: why_not.is_none(),
                why_not_serverless: why_not,
            });
        }
        recommendations.sort_by(|a, b| b.saving.total_cmp(&a.saving));

        // All-dedicated: the measured nodes, plus always-on nodes for the serverless work.
        let peak_serverless = peak(spans.iter().filter(|s| s.serverless).map(|s| (s.start, s.end)));
        let extra_nodes = (peak_serverless + slots_per_node - 1) / slots_per_node;
        let all_d_hours = dedicated_h + extra_nodes as f64 * window_h;
        let all_dedicated = scenario(
            CostLine {
                quantity: round(all_d_hours),
                unit: "node-hour".into(),
                price: price_d,
                cost: money(all_d_hours * price_d),
                arithmetic: format!(
                    "({} node-h measured + {extra_nodes} node(s) × {} h for the serverless work: ⌈{peak_serverless} concurrent attempts / {slots_per_node} slots⌉) × {} = {}",
                    num(dedicated_h),
                    num(window_h),
                    num(price_d),
                    fmt_money(money(all_d_hours * price_d))
                ),
            },
            zero("vCPU-second", price_s),
            vec![],
            if peak_serverless > 0 {
                vec!["Switchyard places tasks without external destinations on serverless workers; this prices a dedicated pool for them, which cannot be configured yet.".into()]
            } else {
                vec![]
            },
        );

        // All-serverless: the measured workers, plus every dedicated attempt moved to a worker.
        let moved_s = moved_ms as f64 / 1000.0 + moved_attempts as f64 * cold_s;
        let all_s_vcpu = (worker_s + moved_s) * vcpus;
        let mut notes = Vec::new();
        if cold.is_none() && moved_attempts > 0 {
            notes.push(
                "no cold start was measured in the window; moved attempts are priced without one".into(),
            );
        }
        let all_serverless = scenario(
            zero("node-hour", price_d),
            CostLine {
                quantity: round(all_s_vcpu),
                unit: "vCPU-second".into(),
                price: price_s,
                cost: money(all_s_vcpu * price_s),
                arithmetic: format!(
                    "({} worker-s measured + {} s of {moved_attempts} dedicated attempt(s) + {moved_attempts} × {} s cold start) × {} vCPU × {} = {}",
                    num(worker_s),
                    num(moved_ms as f64 / 1000.0),
                    num(cold_s),
                    num(vcpus),
                    num(price_s),
                    fmt_money(money(all_s_vcpu * price_s))
                ),
            },
            blocked,
            notes,
        );

        Ok(CostReport {
            since: since.trim().to_owned(),
            from,
            until,
            window_hours: round(window_h),
            inputs: CostInputs {
                dedicated_node_hour: price_d,
                serverless_vcpu_second: price_s,
                vcpus_per_worker: vcpus,
                slots_per_node,
                cold_start_seconds: cold,
                cold_starts_measured: cold_starts.len(),
                peak_serverless_attempts: peak_serverless,
                break_even_busy_share: (price_s > 0.0 && vcpus > 0.0)
                    .then(|| round(price_d / (slots_per_node as f64 * 3600.0 * vcpus * price_s))),
            },
            actual,
            all_dedicated,
            all_serverless,
            nodes,
            tasks,
            recommendations,
            assumptions: vec![
                "dedicated nodes cost for all the time they were alive (registered until the last heartbeat), idle or busy".into(),
                "workers cost from the launcher's decision to start them (cold start included) until their last heartbeat (idle timeout included)".into(),
                "a node or worker that stopped heartbeating without leaving is counted until its last heartbeat or the last attempt end it reported".into(),
                "all-dedicated: serverless work needs ⌈peak concurrent serverless attempts / slots per node⌉ always-on nodes for the whole window, beside the measured ones".into(),
                "all-serverless: each dedicated attempt costs its duration plus the median cold start on one worker; dedicated nodes are gone".into(),
                "per task, dedicated means the slots it needs of an always-on node, whether or not other tasks would share that node".into(),
            ],
        })
    }

    /// The specs of the given task runs, by id.
    async fn task_specs(&self, ids: Vec<i64>) -> Result<HashMap<i64, TaskSpec>, Error> {
        let mut specs = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, spec FROM task_runs WHERE id IN ({})",
                crate::store::sql::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.store.read).await.map_err(Error::store)? {
                let id: i64 = row.try_get("id").map_err(Error::store)?;
                let spec: String = row.try_get("spec").map_err(Error::store)?;
                // A spec this version cannot read only loses the "why not serverless" text.
                if let Ok(spec) = serde_json::from_str::<TaskSpec>(&spec) {
                    specs.insert(id, spec);
                }
            }
        }
        Ok(specs)
    }
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

/// Why a dedicated task may not run on a serverless worker: what it connects to.
fn why_not_serverless(spec: &TaskSpec) -> Option<String> {
    let destinations: Vec<String> = match &spec.work {
        Work::Run { destinations, .. } => destinations.clone(),
        Work::Ingest { source, .. } => {
            crate::plan::source_destinations(source).iter().map(ToString::to_string).collect()
        }
        Work::Transform { .. } => vec![],
    };
    if destinations.is_empty() {
        return None;
    }
    let session = if matches!(&spec.work, Work::Ingest { source, .. } if matches!(**source, switchyard_config::manifest::Source::Kafka(_)))
    {
        " and keeps a Kafka consumer group session on its node"
    } else {
        ""
    };
    Some(format!(
        "it connects to {}{session}; serverless workers have no egress and no static IP a destination could allowlist",
        destinations.join(", ")
    ))
}

fn scenario(
    dedicated: CostLine,
    serverless: CostLine,
    blocked: Vec<Blocked>,
    notes: Vec<String>,
) -> Scenario {
    let total = money(dedicated.cost + serverless.cost);
    Scenario {
        arithmetic: format!(
            "{} + {} = {}",
            fmt_money(dedicated.cost),
            fmt_money(serverless.cost),
            fmt_money(total)
        ),
        total,
        dedicated,
        serverless,
        allowed: blocked.is_empty(),
        blocked,
        notes,
    }
}

fn zero(unit: &str, price: f64) -> CostLine {
    CostLine { quantity: 0.0, unit: unit.into(), price, cost: 0.0, arithmetic: "none".into() }
}

/// Most intervals overlapping at one instant (an interval ending when another starts does not
/// overlap it).
fn peak(spans: impl Iterator<Item = (i64, i64)>) -> i64 {
    let mut events: Vec<(i64, i64)> = spans.flat_map(|(s, e)| [(s, 1), (e, -1)]).collect();
    events.sort();
    let (mut now, mut max) = (0, 0);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(round(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }))
}

/// Money in the JSON: 6 decimals.
fn money(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Quantities in the JSON: 6 decimals, so sums by hand match.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Decimals that show `x` to 3 significant digits when it is below 1 (at least `min`, at most 9).
fn decimals(x: f64, min: usize) -> usize {
    if x == 0.0 || x.abs() >= 1.0 {
        return min;
    }
    let leading_zeros = (-x.abs().log10()).floor() as usize;
    (leading_zeros + 3).clamp(min, 9)
}

/// A quantity for reading: up to 3 decimals, or 3 significant digits below 1, no trailing zeros
/// (`14`, `3.5`, `0.000583`, `0.000024`).
fn num(x: f64) -> String {
    let s = format!("{x:.*}", decimals(x, 3));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// Money for reading: at least 2 decimals, up to 4, or 3 significant digits below 0.01 (`7.00`,
/// `0.612`, `0.00029`).
pub fn fmt_money(x: f64) -> String {
    let s = format!("{x:.*}", if x.abs() < 0.01 { decimals(x, 4) } else { 4 });
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    format!("{int}.{frac:0<2}")
}

fn pct(share: f64) -> String {
    format!("{:.0}", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_counts_overlaps_only() {
        assert_eq!(peak([(0, 10), (10, 20)].into_iter()), 1);
        assert_eq!(peak([(0, 10), (5, 20), (6, 7)].into_iter()), 3);
        assert_eq!(peak(std::iter::empty()), 0);
    }

    #[test]
    fn median_and_formatting() {
        assert_eq!(median(&mut [30.0, 10.0, 50.0]), Some(30.0));
        assert_eq!(median(&mut [1.0, 2.0]), Some(1.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(fmt_money(7.0), "7.00");
        assert_eq!(fmt_money(0.612), "0.612");
        assert_eq!(fmt_money(1.25), "1.25");
        assert_eq!(num(14.0), "14");
        assert_eq!(num(3.5), "3.5");
        assert_eq!(num(0.0001), "0.0001");
        assert_eq!(num(0.000024), "0.000024");
        assert_eq!(num(0.0005827777777777778), "0.000583");
        assert_eq!(num(25150.0), "25150");
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
