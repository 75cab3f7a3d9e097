//! The cost model's arithmetic (see the module above): from what the store recorded and the
//! prices, to the report's lines, scenarios and advice. Plain data in, plain data out, so every
//! figure can be checked without a store.

use std::collections::{BTreeMap, HashMap};

use super::{
    Blocked, CostInputs, CostLine, NodeUsage, Recommendation, Scenario, TaskUsage, decimals, fmt_money,
};
use crate::spec::{TaskSpec, Work};

/// The window and prices, read once so every figure uses the same ones.
pub(super) struct Basis {
    pub(super) from: i64,
    pub(super) until: i64,
    /// In ms: a node that heartbeat this recently before `until` is still alive.
    pub(super) lease_ttl: i64,
    pub(super) window_s: f64,
    pub(super) window_h: f64,
    pub(super) price_d: f64,
    pub(super) price_s: f64,
    pub(super) vcpus: f64,
    pub(super) slots_per_node: i64,
}

/// One attempt as the store has it.
pub(super) struct AttemptRow {
    pub(super) started_at: i64,
    pub(super) finished_at: Option<i64>,
    pub(super) job: String,
    pub(super) task: String,
    pub(super) compute: String,
    pub(super) continuous: bool,
    pub(super) task_run: i64,
    pub(super) node: String,
}

/// One attempt clipped to the window.
pub(super) struct Span {
    key: (String, String),
    node: String,
    serverless: bool,
    start: i64,
    end: i64,
}

/// A task's latest run in the window: its spec says what the task connects to now.
struct LatestRun {
    compute: String,
    continuous: bool,
    task_run: i64,
}

/// The attempts overlapping the window, as the rest of the model needs them.
pub(super) struct Attempts {
    /// Only attempts with time in the window.
    pub(super) spans: Vec<Span>,
    /// A node reporting an attempt's end was alive then, even if it heartbeat earlier.
    pub(super) reported: HashMap<String, i64>,
    latest: BTreeMap<(String, String), LatestRun>,
}

impl Attempts {
    /// The task runs whose specs the per-task advice reads.
    pub(super) fn task_runs(&self) -> Vec<i64> {
        self.latest.values().map(|v| v.task_run).collect()
    }
}

/// Clips the attempts to the window, noting per node its last reported end and per task its
/// latest run; an attempt with no time left after clipping still counts for those two.
pub(super) fn attempts(rows: Vec<AttemptRow>, b: &Basis) -> Attempts {
    let mut out =
        Attempts { spans: Vec::with_capacity(rows.len()), reported: HashMap::new(), latest: BTreeMap::new() };
    for row in rows {
        let (start, end) = (row.started_at.max(b.from), row.finished_at.unwrap_or(b.until).min(b.until));
        let key = (row.job, row.task);
        let run =
            LatestRun { compute: row.compute.clone(), continuous: row.continuous, task_run: row.task_run };
        match out.latest.get_mut(&key) {
            Some(latest) => {
                if run.task_run >= latest.task_run {
                    *latest = run;
                }
            }
            None => {
                out.latest.insert(key.clone(), run);
            }
        }
        if let Some(finished) = row.finished_at {
            let seen = out.reported.entry(row.node.clone()).or_insert(finished);
            *seen = (*seen).max(finished);
        }
        if end <= start {
            continue;
        }
        out.spans.push(Span { key, node: row.node, serverless: row.compute == "serverless", start, end });
    }
    out
}

/// Most serverless attempts running at once: what always-on nodes would have to hold.
pub(super) fn peak_serverless(spans: &[Span]) -> i64 {
    peak(spans.iter().filter(|s| s.serverless).map(|s| (s.start, s.end)))
}

/// A node or worker as the store has it.
pub(super) struct NodeRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) state: String,
    pub(super) registered_at: i64,
    pub(super) heartbeat_at: i64,
    pub(super) launched_at: Option<i64>,
    pub(super) first_lease_at: Option<i64>,
}

/// The part of a node's life that falls in the window.
pub(super) struct Counted {
    from: i64,
    until: i64,
    /// Still heartbeating within the lease TTL: counted until `until`.
    live: bool,
}

/// A node's counted interval, or `None` when it has no time in the window.
pub(super) fn counted(node: &NodeRow, b: &Basis, reported: &HashMap<String, i64>) -> Option<Counted> {
    let serverless = node.kind == "serverless";
    let start = if serverless { node.launched_at.unwrap_or(node.registered_at) } else { node.registered_at };
    let live = node.state == "active" && node.heartbeat_at >= b.until - b.lease_ttl;
    let last_seen =
        node.heartbeat_at.max(reported.get(node.id.as_str()).copied().unwrap_or(node.heartbeat_at));
    let end = if live { b.until } else { last_seen };
    let (from, until) = (start.max(b.from), end.min(b.until));
    (until > from).then_some(Counted { from, until, live })
}

/// A node with time in the window, with what only those are read for.
pub(super) struct CountedNode {
    pub(super) node: NodeRow,
    pub(super) counted: Counted,
    pub(super) pool: Option<String>,
    pub(super) slots: i64,
}

/// The measured nodes and workers: the report's `nodes` and what the scenarios sum from them.
pub(super) struct Fleet {
    pub(super) nodes: Vec<NodeUsage>,
    dedicated_ms: i64,
    dedicated_count: i64,
    worker_ms: i64,
    worker_count: i64,
    /// Median cold start of the workers launched in the window.
    pub(super) cold: Option<f64>,
    cold_starts_measured: usize,
}

impl Fleet {
    pub(super) fn dedicated_hours(&self) -> f64 {
        self.dedicated_ms as f64 / 3_600_000.0
    }

    pub(super) fn worker_seconds(&self) -> f64 {
        self.worker_ms as f64 / 1000.0
    }
}

/// Prices every counted node, in the order given.
pub(super) fn price_nodes(counted: Vec<CountedNode>, spans: &[Span], b: &Basis) -> Fleet {
    let mut busy_by_node: HashMap<&str, i64> = HashMap::new();
    for s in spans {
        *busy_by_node.entry(s.node.as_str()).or_default() += s.end - s.start;
    }
    let mut fleet = Fleet {
        nodes: Vec::new(),
        dedicated_ms: 0,
        dedicated_count: 0,
        worker_ms: 0,
        worker_count: 0,
        cold: None,
        cold_starts_measured: 0,
    };
    let mut cold_starts = Vec::new();
    for n in counted {
        let busy_ms = busy_by_node.get(n.node.id.as_str()).copied().unwrap_or(0);
        let usage = price_node(n, busy_ms, b);
        let ms = usage.counted_until - usage.counted_from;
        if usage.kind == "serverless" {
            fleet.worker_ms += ms;
            fleet.worker_count += 1;
        } else {
            fleet.dedicated_ms += ms;
            fleet.dedicated_count += 1;
        }
        // A worker launched before the window says what cold starts cost then, not now.
        if let (Some(c), Some(l)) = (usage.cold_start_seconds, usage.launched_at) {
            if l >= b.from {
                cold_starts.push(c);
            }
        }
        fleet.nodes.push(usage);
    }
    fleet.cold_starts_measured = cold_starts.len();
    fleet.cold = median(&mut cold_starts);
    fleet
}

/// A node's line: its counted time at its compute's price, idle or busy.
fn price_node(n: CountedNode, busy_ms: i64, b: &Basis) -> NodeUsage {
    let CountedNode { node, counted, pool, slots } = n;
    let serverless = node.kind == "serverless";
    let seconds = (counted.until - counted.from) as f64 / 1000.0;
    let cold = match (serverless, node.launched_at, node.first_lease_at) {
        (true, Some(l), Some(f)) if f >= l => Some((f - l) as f64 / 1000.0),
        _ => None,
    };
    let ends = if counted.live {
        "still running"
    } else if node.state == "gone" {
        "gone"
    } else {
        "silent: counted to its last heartbeat or report"
    };
    let (cost, arithmetic) = if serverless {
        let cost = money(seconds * b.vcpus * b.price_s);
        (
            cost,
            format!(
                "{} s × {} vCPU × {} = {} ({ends})",
                num(seconds),
                num(b.vcpus),
                num(b.price_s),
                fmt_money(cost)
            ),
        )
    } else {
        let cost = money(seconds / 3600.0 * b.price_d);
        (cost, format!("{} h × {} = {} ({ends})", num(seconds / 3600.0), num(b.price_d), fmt_money(cost)))
    };
    NodeUsage {
        busy_seconds: busy_ms as f64 / 1000.0,
        id: node.id,
        kind: node.kind,
        pool,
        slots,
        state: node.state,
        registered_at: node.registered_at,
        launched_at: node.launched_at,
        first_lease_at: node.first_lease_at,
        last_heartbeat_at: node.heartbeat_at,
        counted_from: counted.from,
        counted_until: counted.until,
        seconds,
        cold_start_seconds: cold,
        cost,
        arithmetic,
    }
}

/// The report's `inputs`: what an operator needs to redo the scenarios by hand.
pub(super) fn inputs(b: &Basis, fleet: &Fleet, peak_serverless: i64) -> CostInputs {
    CostInputs {
        dedicated_node_hour: b.price_d,
        serverless_vcpu_second: b.price_s,
        vcpus_per_worker: b.vcpus,
        slots_per_node: b.slots_per_node,
        cold_start_seconds: fleet.cold,
        cold_starts_measured: fleet.cold_starts_measured,
        peak_serverless_attempts: peak_serverless,
        break_even_busy_share: (b.price_s > 0.0 && b.vcpus > 0.0)
            .then(|| round(b.price_d / (b.slots_per_node as f64 * 3600.0 * b.vcpus * b.price_s))),
    }
}

/// The measured scenario.
pub(super) fn actual(fleet: &Fleet, b: &Basis) -> Scenario {
    let dedicated_h = fleet.dedicated_hours();
    let worker_s = fleet.worker_seconds();
    let dedicated = CostLine {
        quantity: round(dedicated_h),
        unit: "node-hour".into(),
        price: b.price_d,
        cost: money(dedicated_h * b.price_d),
        arithmetic: format!(
            "{} node(s), {} node-h × {} = {}",
            fleet.dedicated_count,
            num(dedicated_h),
            num(b.price_d),
            fmt_money(money(dedicated_h * b.price_d))
        ),
    };
    let serverless = CostLine {
        quantity: round(worker_s * b.vcpus),
        unit: "vCPU-second".into(),
        price: b.price_s,
        cost: money(worker_s * b.vcpus * b.price_s),
        arithmetic: format!(
            "{} worker(s), {} worker-s × {} vCPU × {} = {}",
            fleet.worker_count,
            num(worker_s),
            num(b.vcpus),
            num(b.price_s),
            fmt_money(money(worker_s * b.vcpus * b.price_s))
        ),
    };
    scenario(dedicated, serverless, vec![], vec![])
}

/// All-dedicated: the measured nodes, plus always-on nodes for the serverless work.
pub(super) fn all_dedicated(b: &Basis, dedicated_h: f64, peak_serverless: i64) -> Scenario {
    let slots_per_node = b.slots_per_node;
    let extra_nodes = (peak_serverless + slots_per_node - 1) / slots_per_node;
    let all_d_hours = dedicated_h + extra_nodes as f64 * b.window_h;
    scenario(
        CostLine {
            quantity: round(all_d_hours),
            unit: "node-hour".into(),
            price: b.price_d,
            cost: money(all_d_hours * b.price_d),
            arithmetic: format!(
                "({} node-h measured + {extra_nodes} node(s) × {} h for the serverless work: ⌈{peak_serverless} concurrent attempts / {slots_per_node} slots⌉) × {} = {}",
                num(dedicated_h),
                num(b.window_h),
                num(b.price_d),
                fmt_money(money(all_d_hours * b.price_d))
            ),
        },
        zero("vCPU-second", b.price_s),
        vec![],
        if peak_serverless > 0 {
            vec!["Switchyard places tasks without external destinations on serverless workers; this prices a dedicated pool for them, which cannot be configured yet.".into()]
        } else {
            vec![]
        },
    )
}

/// The dedicated work the all-serverless scenario moves to workers.
pub(super) struct Moved {
    ms: i64,
    attempts: i64,
    /// Tasks that cannot move, and why.
    blocked: Vec<Blocked>,
}

/// All-serverless: the measured workers, plus every dedicated attempt moved to a worker.
pub(super) fn all_serverless(b: &Basis, worker_s: f64, cold: Option<f64>, moved: Moved) -> Scenario {
    let Moved { ms: moved_ms, attempts: moved_attempts, blocked } = moved;
    let cold_s = cold.unwrap_or(0.0);
    let moved_s = moved_ms as f64 / 1000.0 + moved_attempts as f64 * cold_s;
    let all_s_vcpu = (worker_s + moved_s) * b.vcpus;
    let mut notes = Vec::new();
    if cold.is_none() && moved_attempts > 0 {
        notes.push("no cold start was measured in the window; moved attempts are priced without one".into());
    }
    scenario(
        zero("node-hour", b.price_d),
        CostLine {
            quantity: round(all_s_vcpu),
            unit: "vCPU-second".into(),
            price: b.price_s,
            cost: money(all_s_vcpu * b.price_s),
            arithmetic: format!(
                "({} worker-s measured + {} s of {moved_attempts} dedicated attempt(s) + {moved_attempts} × {} s cold start) × {} vCPU × {} = {}",
                num(worker_s),
                num(moved_ms as f64 / 1000.0),
                num(cold_s),
                num(b.vcpus),
                num(b.price_s),
                fmt_money(money(all_s_vcpu * b.price_s))
            ),
        },
        blocked,
        notes,
    )
}

/// The per-task figures and what they add up to.
pub(super) struct Priced {
    pub(super) tasks: Vec<TaskUsage>,
    /// Largest saving first.
    pub(super) recommendations: Vec<Recommendation>,
    pub(super) moved: Moved,
}

/// Prices every task on both computes, in task order, and advises where the other is cheaper.
/// `specs` are by task run; a task whose spec is missing gets no "why not serverless".
pub(super) fn price_tasks(
    attempts: &Attempts,
    nodes: &[NodeUsage],
    specs: &HashMap<i64, TaskSpec>,
    b: &Basis,
    cold_s: f64,
) -> Priced {
    let pricing = TaskPricing {
        basis: b,
        cold_s,
        node_slots: nodes.iter().map(|n| (n.id.as_str(), n.slots.max(1))).collect(),
    };
    let mut out = Priced {
        tasks: Vec::new(),
        recommendations: Vec::new(),
        moved: Moved { ms: 0, attempts: 0, blocked: Vec::new() },
    };
    for (key, run) in &attempts.latest {
        let mine: Vec<&Span> = attempts.spans.iter().filter(|s| &s.key == key).collect();
        let busy_ms: i64 = mine.iter().map(|s| s.end - s.start).sum();
        let spec = specs.get(&run.task_run);
        let task = pricing.price(key, run, &mine, busy_ms, spec.and_then(why_not_serverless));
        if task.compute == "dedicated" {
            out.moved.ms += busy_ms;
            out.moved.attempts += task.attempts;
            if let Some(reason) = &task.why_not_serverless {
                out.moved.blocked.push(Blocked {
                    job: task.job.clone(),
                    task: task.task.clone(),
                    reason: reason.clone(),
                });
            }
        }
        if let Some(recommendation) = recommend(&task, spec, b.window_s) {
            out.recommendations.push(recommendation);
        }
        out.tasks.push(task);
    }
    out.recommendations.sort_by(|a, b| b.saving.total_cmp(&a.saving));
    out
}

/// What pricing one task needs besides the task's own attempts.
struct TaskPricing<'a> {
    basis: &'a Basis,
    cold_s: f64,
    /// Slots of each measured node: a dedicated task is priced as a share of the node it ran on.
    node_slots: HashMap<&'a str, i64>,
}

impl TaskPricing<'_> {
    /// The task's line: `mine` are its spans, `busy_ms` their sum.
    fn price(
        &self,
        key: &(String, String),
        run: &LatestRun,
        mine: &[&Span],
        busy_ms: i64,
        why_not: Option<String>,
    ) -> TaskUsage {
        let b = self.basis;
        let attempts = mine.len() as i64;
        let busy = busy_ms as f64 / 1000.0;
        let peak = peak(mine.iter().map(|s| (s.start, s.end))).max(1);
        let slots = if run.compute == "dedicated" {
            mine.iter()
                .find_map(|s| self.node_slots.get(s.node.as_str()).copied())
                .unwrap_or(b.slots_per_node)
        } else {
            b.slots_per_node
        };
        let serverless_cost = money((busy + attempts as f64 * self.cold_s) * b.vcpus * b.price_s);
        let serverless_arithmetic = format!(
            "({} s busy + {attempts} × {} s cold start) × {} vCPU × {} = {}",
            num(busy),
            num(self.cold_s),
            num(b.vcpus),
            num(b.price_s),
            fmt_money(serverless_cost)
        );
        let dedicated_cost = money(peak as f64 * b.window_h * b.price_d / slots as f64);
        let dedicated_arithmetic = format!(
            "{peak} of {slots} slots of an always-on node: {peak} × {} h × {} / {slots} = {}",
            num(b.window_h),
            num(b.price_d),
            fmt_money(dedicated_cost)
        );
        TaskUsage {
            job: key.0.clone(),
            task: key.1.clone(),
            compute: run.compute.clone(),
            continuous: run.continuous,
            attempts,
            busy_seconds: busy,
            busy_share: round(if b.window_s > 0.0 { busy / b.window_s } else { 0.0 }),
            peak_concurrent: peak,
            serverless_cost,
            serverless_arithmetic,
            dedicated_cost,
            dedicated_arithmetic,
            serverless_allowed: why_not.is_none(),
            why_not_serverless: why_not,
        }
    }
}

/// The other compute, when it would cost the task less.
fn recommend(task: &TaskUsage, spec: Option<&TaskSpec>, window_s: f64) -> Option<Recommendation> {
    // Where to make a change: `in FILE:LINE`, or the job when the spec predates that.
    let place = spec
        .and_then(|s| s.manifest.clone())
        .map_or_else(|| format!("in the manifest of job `{}`", task.job), |at| format!("in {at}"));
    let dedicated = task.compute == "dedicated";
    if dedicated && task.serverless_cost < task.dedicated_cost {
        Some(to_serverless(task, &place))
    } else if !dedicated && task.dedicated_cost < task.serverless_cost {
        Some(to_dedicated(task, &place, window_s))
    } else {
        None
    }
}

/// A dedicated task that would cost less serverless; it may move only if it reaches no
/// external destination.
fn to_serverless(task: &TaskUsage, place: &str) -> Recommendation {
    let name = format!("{}.{}", task.job, task.task);
    let (serverless_cost, dedicated_cost) = (task.serverless_cost, task.dedicated_cost);
    let saving = money(dedicated_cost - serverless_cost);
    let message = match &task.why_not_serverless {
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
    let allowed = task.why_not_serverless.is_none();
    Recommendation {
        job: task.job.clone(),
        task: task.task.clone(),
        from: "dedicated".into(),
        to: "serverless".into(),
        allowed,
        saving,
        message,
        // A dedicated task that reaches only the lake is there because its manifest says
        // `compute: dedicated`: taking that out is the move.
        change: allowed.then(|| {
            format!("remove `compute: dedicated` (and any `pool:`) from task `{}` {place}", task.task)
        }),
    }
}

/// A serverless task busy enough that always-on dedicated slots would cost less.
fn to_dedicated(task: &TaskUsage, place: &str, window_s: f64) -> Recommendation {
    let name = format!("{}.{}", task.job, task.task);
    let (serverless_cost, dedicated_cost) = (task.serverless_cost, task.dedicated_cost);
    let (busy, peak) = (task.busy_seconds, task.peak_concurrent);
    let saving = money(serverless_cost - dedicated_cost);
    let how = if task.continuous { "runs continuously and was" } else { "was" };
    Recommendation {
        job: task.job.clone(),
        task: task.task.clone(),
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
            task.task
        )),
    }
}

/// The model's simplifications, in words, for the report's `assumptions`.
pub(super) fn assumptions() -> Vec<String> {
    vec![
        "dedicated nodes cost for all the time they were alive (registered until the last heartbeat), idle or busy".into(),
        "workers cost from the launcher's decision to start them (cold start included) until their last heartbeat (idle timeout included)".into(),
        "a node or worker that stopped heartbeating without leaving is counted until its last heartbeat or the last attempt end it reported".into(),
        "all-dedicated: serverless work needs ⌈peak concurrent serverless attempts / slots per node⌉ always-on nodes for the whole window, beside the measured ones".into(),
        "all-serverless: each dedicated attempt costs its duration plus the median cold start on one worker; dedicated nodes are gone".into(),
        "per task, dedicated means the slots it needs of an always-on node, whether or not other tasks would share that node".into(),
    ]
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

/// Totals a scenario; it is allowed only when no task was blocked from running that way.
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

/// The line of a compute a scenario does not use, so every scenario has both lines.
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
pub(super) fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A quantity for reading: up to 3 decimals, or 3 significant digits below 1, no trailing zeros
/// (`14`, `3.5`, `0.000583`, `0.000024`).
fn num(x: f64) -> String {
    let s = format!("{x:.*}", decimals(x, 3));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// A share as a whole percentage, for messages.
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
        assert_eq!(num(14.0), "14");
        assert_eq!(num(3.5), "3.5");
        assert_eq!(num(0.0001), "0.0001");
        assert_eq!(num(0.000024), "0.000024");
        assert_eq!(num(0.0005827777777777778), "0.000583");
        assert_eq!(num(25150.0), "25150");
    }
}
