//! Health of every registered job and every pool, read from the store (so replicas agree): the
//! checks of a pipeline health check (seeds/002 §5.2) with the thresholds of its key metrics
//! (§6.1), each with a severity and what to do. Served at `GET /api/v1/health` and evaluated by the
//! alert loop ([`super::alerts`]).
//!
//! Per job:
//!
//! | check | bad when | severity |
//! | --- | --- | --- |
//! | `failed_state` | the latest finished run failed | critical |
//! | `recent_success` | no success within `expected_interval` (default for scheduled jobs: neither of the last two slots older than the SLA succeeded) | warning |
//! | `drop_rate` | over 5% of a transform's rows dropped or quarantined by expectations in the last 24 h | warning |
//! | `latency` | a run took, or has been running, longer than the job's `sla` (default 1 h) | warning |
//! | `certificate_expiry` | a client certificate on a live node of the job's pools expires within 30 days (critical within 7, or expired) | warning / critical |
//! | `live_nodes` | a dedicated task has no live node in any pool it may run on | critical |
//!
//! Per pool: `live_nodes` (no live node: critical when a registered job needs the pool, warning
//! otherwise) and `certificate_expiry`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Views;
use super::nodes::LiveNode;
use crate::Error;
use crate::plan::Compute;
use crate::spec::JobSpec;
use crate::store::now_ms;

/// Drop rate above which `drop_rate` warns (seeds/002 §6.1).
pub const DROP_RATE_THRESHOLD: f64 = 0.05;
/// The window `drop_rate` looks at.
pub const DROP_RATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// SLA of a job whose manifest sets none (seeds/002 §6.1: processing lag over 1 hour).
pub const DEFAULT_SLA: Duration = Duration::from_secs(3600);
/// Certificates expiring within this warn…
pub const CERT_WARNING: Duration = Duration::from_secs(30 * 86_400);
/// …and within this (or expired) are critical.
pub const CERT_CRITICAL: Duration = Duration::from_secs(7 * 86_400);

/// How bad a failing check is. A passing check is `info`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A job's, a pool's or the whole control plane's verdict: the worst failing check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    fn of(checks: &[Check]) -> Status {
        checks.iter().filter(|c| !c.ok).map(|c| c.severity).max().map_or(Status::Ok, |s| match s {
            Severity::Critical => Status::Critical,
            Severity::Warning => Status::Warning,
            Severity::Info => Status::Ok,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// `GET /api/v1/health`:
///
/// ```json
/// { "status": "ok" | "warning" | "critical",          // worst failing check anywhere
///   "checked_at": 1760000000000,                      // epoch ms
///   "jobs": [
///     { "job": "claims_daily", "status": "critical",
///       "sla_ms": 3600000, "expected_interval_ms": null, "schedule": "0 */6 * * *",
///       "last_run": { "id": 12, "state": "failed", "created_at": …, "finished_at": … } | null,
///       "last_success_at": 1759990000000 | null,
///       "checks": [ { "check": "failed_state", "ok": false, "severity": "critical",
///                     "message": "run 12 failed: task ingest_claims failed (connectivity): …",
///                     "action": "…" }, … ] } ],
///   "pools": [
///     { "pool": "egress-a", "status": "ok", "live_nodes": 1, "egress_ips": ["203.0.113.10"],
///       "checks": [ … ] } ] }
/// ```
///
/// Every check is always listed: `ok: true` with severity `info` and `action: null` when it
/// passes (or is not applicable, which its message says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub status: Status,
    pub checked_at: i64,
    pub jobs: Vec<JobHealth>,
    pub pools: Vec<PoolHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// `failed_state`, `recent_success`, `drop_rate`, `latency`, `certificate_expiry`, `live_nodes`.
    pub check: String,
    pub ok: bool,
    pub severity: Severity,
    pub message: String,
    /// What to do about it; `null` when the check passes.
    pub action: Option<String>,
}

impl Check {
    fn pass(check: &str, message: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            ok: true,
            severity: Severity::Info,
            message: message.into(),
            action: None,
        }
    }

    fn fail(check: &str, severity: Severity, message: impl Into<String>, action: impl Into<String>) -> Check {
        Check {
            check: check.to_owned(),
            ok: false,
            severity,
            message: message.into(),
            action: Some(action.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobHealth {
    pub job: String,
    pub status: Status,
    pub schedule: Option<String>,
    /// The SLA the `latency` check used (the manifest's `sla` or the 1 h default).
    pub sla_ms: u64,
    pub expected_interval_ms: Option<u64>,
    pub last_run: Option<HealthRun>,
    pub last_success_at: Option<i64>,
    pub checks: Vec<Check>,
}

/// The job's latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthRun {
    pub id: i64,
    pub state: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PoolHealth {
    pub pool: String,
    pub status: Status,
    pub live_nodes: usize,
    pub egress_ips: Vec<String>,
    pub checks: Vec<Check>,
}

/// `1h 5m`, `3d 2h`, `42s`: two units at most.
pub(crate) fn human(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec > 0 => format!("{m}m {sec}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

fn utc(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// What the failed-state check says to do, by failure class.
fn remedy(class: Option<&str>, job: &str) -> String {
    let runs = format!("`switchyard runs --job {job}`");
    match class {
        Some("connectivity") => format!(
            "check that the destination is up and reachable from the pool's egress IP (`switchyard egress check --egress-ip IP` on a node), then start the job again; details in {runs}"
        ),
        Some("authentication") => format!(
            "check the client certificate and that the destination trusts it (`switchyard egress check`), then start the job again; details in {runs}"
        ),
        Some("access") => format!(
            "the destination or the egress policy refused the connection: allowlist the pool's egress IP or fix the rule (`switchyard egress diff`), then start the job again; details in {runs}"
        ),
        Some("data") => {
            format!("fix the data or the task (see the output tail in {runs}), then start the job again")
        }
        _ => format!("investigate the failure in {runs} and the node's log, then start the job again"),
    }
}

/// The job's runs the checks judge, read once so every check sees the same ones.
#[derive(Debug)]
struct JobRuns {
    last_run: Option<HealthRun>,
    last_finished: Option<HealthRun>,
    last_success: Option<HealthRun>,
}

/// What the checks that only compute share, so they need not each take a long parameter list.
#[derive(Debug)]
struct JobContext<'a> {
    spec: &'a JobSpec,
    created_at: i64,
    now: i64,
    /// Not `spec.sla_ms`: a manifest without one gets [`DEFAULT_SLA`].
    sla_ms: u64,
}

fn health_run(row: &sqlx::any::AnyRow) -> Result<HealthRun, Error> {
    Ok(HealthRun {
        id: row.try_get("id").map_err(Error::store)?,
        state: row.try_get("state").map_err(Error::store)?,
        created_at: row.try_get("created_at").map_err(Error::store)?,
        finished_at: row.try_get("finished_at").map_err(Error::store)?,
    })
}

impl Views {
    /// Health of every job and pool now.
    pub async fn health(&self) -> Result<Health, Error> {
        self.health_at(now_ms()).await
    }

    /// Health as of `now` (epoch ms).
    pub async fn health_at(&self, now: i64) -> Result<Health, Error> {
        let jobs = sqlx::query("SELECT spec, created_at FROM jobs ORDER BY name")
            .fetch_all(&self.store.read)
            .await
            .map_err(Error::store)?;
        let nodes = self.live_nodes(now).await?;
        let mut live: BTreeMap<String, Vec<&LiveNode>> =
            self.config.settings.pools.iter().map(|p| (p.name.clone(), vec![])).collect();
        for n in nodes.iter().filter(|n| n.kind != "serverless") {
            live.entry(n.pool.clone().unwrap_or_default()).or_default().push(n);
        }
        let mut needed: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::with_capacity(jobs.len());
        for row in &jobs {
            let spec: String = row.try_get("spec").map_err(Error::store)?;
            let created_at: i64 = row.try_get("created_at").map_err(Error::store)?;
            let spec: JobSpec = serde_json::from_str(&spec).map_err(|e| Error::corrupt("job spec", e))?;
            for t in spec.tasks.iter().filter(|t| t.compute == Compute::Dedicated) {
                needed.extend(t.pools.iter().cloned());
            }
            out.push(self.job_health(&spec, created_at, now, &live).await?);
        }
        let pools: Vec<PoolHealth> = live
            .iter()
            .map(|(pool, nodes)| self.pool_health(pool, nodes, needed.contains(pool), now))
            .collect();
        let status =
            out.iter().map(|j| j.status).chain(pools.iter().map(|p| p.status)).max().unwrap_or(Status::Ok);
        Ok(Health { status, checked_at: now, jobs: out, pools })
    }

    /// `needed` (a registered job's dedicated task lists this pool) makes an empty pool critical
    /// rather than a warning: work may be stranded, not just capacity missing.
    fn pool_health(&self, pool: &str, nodes: &[&LiveNode], needed: bool, now: i64) -> PoolHealth {
        let egress_ips = self
            .config
            .settings
            .pool(pool)
            .map(|p| p.egress_ips.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let live_nodes = if nodes.is_empty() {
            let (severity, why) = if needed {
                (Severity::Critical, "; tasks that may run only here cannot run")
            } else {
                (Severity::Warning, "; no registered job needs it")
            };
            Check::fail(
                "live_nodes",
                severity,
                format!("pool {pool} has no live node{why}"),
                format!(
                    "start a node on a machine holding one of the pool's egress IPs: `switchyard node --pool {pool} --egress-ip IP`"
                ),
            )
        } else {
            Check::pass("live_nodes", format!("{} live node(s)", nodes.len()))
        };
        let checks = vec![live_nodes, certificates(nodes, now, &format!("pool {pool}"))];
        PoolHealth {
            pool: pool.to_owned(),
            status: Status::of(&checks),
            live_nodes: nodes.len(),
            egress_ips,
            checks,
        }
    }

    /// The checks run in the order of the table in the module docs, which is the order the API
    /// lists them in.
    async fn job_health(
        &self,
        spec: &JobSpec,
        created_at: i64,
        now: i64,
        live: &BTreeMap<String, Vec<&LiveNode>>,
    ) -> Result<JobHealth, Error> {
        let job = spec.job.as_str();
        let runs = self.job_runs(job).await?;
        let cx = JobContext {
            spec,
            created_at,
            now,
            sla_ms: spec.sla_ms.unwrap_or(DEFAULT_SLA.as_millis() as u64),
        };
        let last_success_at = runs.last_success.as_ref().and_then(|r| r.finished_at);
        let mut checks = vec![
            self.failed_state_check(job, runs.last_finished.as_ref()).await?,
            recent_success_check(&cx, last_success_at),
            self.drop_rate_check(job, now).await?,
            latency_check(&cx, &runs),
        ];
        checks.extend(dedicated_task_checks(&cx, live));
        Ok(JobHealth {
            job: job.to_owned(),
            status: Status::of(&checks),
            schedule: spec.schedule.clone(),
            sla_ms: cx.sla_ms,
            expected_interval_ms: spec.expected_interval_ms,
            last_run: runs.last_run,
            last_success_at,
            checks,
        })
    }

    /// Three queries rather than one: the latest run, the latest finished one and the latest
    /// success are often different runs, and each check needs a particular one.
    async fn job_runs(&self, job: &str) -> Result<JobRuns, Error> {
        Ok(JobRuns {
            last_run: self
                .latest_run(
                    "SELECT id, state, created_at, finished_at FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
                    job,
                )
                .await?,
            last_finished: self
                .latest_run(
                    "SELECT id, state, created_at, finished_at FROM job_runs WHERE job = $1 AND finished_at IS NOT NULL \
                     ORDER BY finished_at DESC, id DESC LIMIT 1",
                    job,
                )
                .await?,
            last_success: self
                .latest_run(
                    "SELECT id, state, created_at, finished_at FROM job_runs WHERE job = $1 AND state = 'succeeded' \
                     ORDER BY finished_at DESC, id DESC LIMIT 1",
                    job,
                )
                .await?,
        })
    }

    /// `sql` selects the columns [`health_run`] reads and binds the job as `$1`.
    async fn latest_run(&self, sql: &str, job: &str) -> Result<Option<HealthRun>, Error> {
        sqlx::query(sql)
            .bind(job)
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?
            .map(|r| health_run(&r))
            .transpose()
    }

    /// Names the task that failed and its failure class, because the class decides the remedy.
    async fn failed_state_check(&self, job: &str, last_finished: Option<&HealthRun>) -> Result<Check, Error> {
        Ok(match last_finished {
            Some(run) if run.state == "failed" => {
                let failed = sqlx::query(
                    "SELECT task, state, error_class, message FROM task_runs WHERE run_id = $1 \
                     AND state IN ('failed', 'timed_out') ORDER BY position LIMIT 1",
                )
                .bind(run.id)
                .fetch_optional(&self.store.read)
                .await
                .map_err(Error::store)?;
                let (detail, class) = match &failed {
                    Some(t) => {
                        let task: String = t.try_get("task").map_err(Error::store)?;
                        let state: String = t.try_get("state").map_err(Error::store)?;
                        let class: Option<String> = t.try_get("error_class").map_err(Error::store)?;
                        let message: Option<String> = t.try_get("message").map_err(Error::store)?;
                        let mut message: String = message.unwrap_or_default();
                        if message.chars().count() > 300 {
                            message = format!("{}…", message.chars().take(300).collect::<String>());
                        }
                        let what = if state == "timed_out" { "timed out" } else { "failed" };
                        let class_text = class.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
                        let sep = if message.is_empty() { "" } else { ": " };
                        (format!(": task {task} {what}{class_text}{sep}{message}"), class)
                    }
                    None => (String::new(), None),
                };
                Check::fail(
                    "failed_state",
                    Severity::Critical,
                    format!("run {} failed{detail}", run.id),
                    remedy(class.as_deref(), job),
                )
            }
            Some(run) => Check::pass("failed_state", format!("latest finished run {} {}", run.id, run.state)),
            None => Check::pass("failed_state", "no run has finished yet"),
        })
    }

    /// Counts removed rows over everything the job wrote, so a transform that drops a few rows of
    /// a large table does not alarm; names the worst expectation so the fix starts there.
    async fn drop_rate_check(&self, job: &str, now: i64) -> Result<Check, Error> {
        let since = now - DROP_RATE_WINDOW.as_millis() as i64;
        let details = self.transform_details(Some(job), Some(since)).await?;
        let (mut removed, mut total) = (0u64, 0u64);
        let mut worst: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (_, task, d) in &details {
            removed += d.removed();
            total += d.removed() + d.written();
            for e in d.expectations.iter().filter(|e| e.action == "drop" || e.action == "quarantine") {
                *worst.entry((task.clone(), e.name.clone())).or_default() += e.violations;
            }
        }
        Ok(if total == 0 {
            Check::pass("drop_rate", "no expectation results in the last 24h")
        } else {
            let rate = removed as f64 / total as f64;
            let text = format!(
                "{:.1}% of rows dropped or quarantined by expectations in the last 24h ({removed} of {total})",
                rate * 100.0
            );
            if rate > DROP_RATE_THRESHOLD {
                let top = worst
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .max_by_key(|(_, n)| **n)
                    .map(|((task, name), n)| format!("; most from {task}'s `{name}` ({n})"))
                    .unwrap_or_default();
                Check::fail(
                    "drop_rate",
                    Severity::Warning,
                    format!("{text}{top}"),
                    format!(
                        "review the source data quality: counts per expectation are in `switchyard runs --job {job}`, quarantined rows in the `<table>__quarantine` tables"
                    ),
                )
            } else {
                Check::pass("drop_rate", text)
            }
        })
    }
}

/// A job with neither a schedule nor an `expected_interval` has no deadline, so it cannot be late;
/// one that has never succeeded is not late either while it was registered after the deadline.
fn recent_success_check(cx: &JobContext<'_>, last_success_at: Option<i64>) -> Check {
    let (job, now, created_at) = (cx.spec.job.as_str(), cx.now, cx.created_at);
    let deadline = match (cx.spec.expected_interval_ms, cx.spec.schedule.as_deref()) {
        (Some(interval), _) => {
            Some((now - interval as i64, format!("expected at least every {}", human(interval as i64))))
        }
        (None, Some(schedule)) => expected_by(schedule, now - cx.sla_ms as i64).map(|at| {
            (at, format!("schedule `{schedule}`: the run of the slot at {} should have succeeded", utc(at)))
        }),
        (None, None) => None,
    };
    match deadline {
        None => {
            Check::pass("recent_success", "not checked: the job has no schedule and no expected_interval")
        }
        Some((due, why)) => match last_success_at {
            Some(at) if at >= due => {
                Check::pass("recent_success", format!("last success {} ago", human(now - at)))
            }
            _ if last_success_at.is_none() && created_at >= due => Check::pass(
                "recent_success",
                "no success yet, but the job is newer than its expected interval",
            ),
            at => Check::fail(
                "recent_success",
                Severity::Warning,
                match at {
                    Some(at) => format!("no successful run in {} ({why})", human(now - at)),
                    None => format!(
                        "no successful run since the job was registered {} ago ({why})",
                        human(now - created_at)
                    ),
                },
                format!(
                    "verify the schedule and that runs start and finish: `switchyard runs --job {job}`; a control plane must be running for cron to fire"
                ),
            ),
        },
    }
}

/// A run still going past the SLA is late already, so it is judged before the last finished one;
/// failed runs are left to `failed_state`.
fn latency_check(cx: &JobContext<'_>, runs: &JobRuns) -> Check {
    let (job, now, sla_ms) = (cx.spec.job.as_str(), cx.now, cx.sla_ms);
    let continuous = cx.spec.tasks.iter().any(|t| t.continuous);
    let slow_action = format!(
        "find the slow task in `switchyard runs --job {job}`: add nodes to its pool or raise `[serverless] max_workers` if it waited for capacity, or raise the job's `sla`"
    );
    if continuous {
        Check::pass("latency", "not measured: continuous tasks keep the job's runs open")
    } else {
        match (&runs.last_run, &runs.last_finished) {
            (Some(run), _) if run.state == "running" && now - run.created_at > sla_ms as i64 => Check::fail(
                "latency",
                Severity::Warning,
                format!(
                    "run {} has been running for {} (SLA {})",
                    run.id,
                    human(now - run.created_at),
                    human(sla_ms as i64)
                ),
                slow_action,
            ),
            (_, Some(run)) if run.state == "succeeded" => {
                let took = run.finished_at.unwrap_or(now) - run.created_at;
                if took > sla_ms as i64 {
                    Check::fail(
                        "latency",
                        Severity::Warning,
                        format!("run {} took {} (SLA {})", run.id, human(took), human(sla_ms as i64)),
                        slow_action,
                    )
                } else {
                    Check::pass(
                        "latency",
                        format!("run {} took {} (SLA {})", run.id, human(took), human(sla_ms as i64)),
                    )
                }
            }
            _ => {
                Check::pass("latency", format!("no successful run to measure (SLA {})", human(sla_ms as i64)))
            }
        }
    }
}

/// `certificate_expiry` then `live_nodes` for the job: both look only at the pools its dedicated
/// tasks may run in, so they share one pass over the tasks.
fn dedicated_task_checks(cx: &JobContext<'_>, live: &BTreeMap<String, Vec<&LiveNode>>) -> [Check; 2] {
    let mut pools: BTreeSet<&str> = BTreeSet::new();
    let mut stranded = Vec::new();
    for t in cx.spec.tasks.iter().filter(|t| t.compute == Compute::Dedicated) {
        pools.extend(t.pools.iter().map(String::as_str));
        if !t.pools.iter().any(|p| live.get(p).is_some_and(|n| !n.is_empty())) {
            stranded.push(format!("{} (pools {})", t.name, t.pools.join(", ")));
        }
    }
    let job_nodes: Vec<&LiveNode> =
        pools.iter().filter_map(|p| live.get(*p)).flat_map(|n| n.iter().copied()).collect();
    let certificate_expiry = if pools.is_empty() {
        Check::pass("certificate_expiry", "no dedicated tasks")
    } else {
        certificates(
            &job_nodes,
            cx.now,
            &format!("the job's pools ({})", pools.iter().copied().collect::<Vec<_>>().join(", ")),
        )
    };
    let live_nodes = if stranded.is_empty() {
        Check::pass(
            "live_nodes",
            if pools.is_empty() {
                "no dedicated tasks".to_owned()
            } else {
                "every dedicated task has a live node".to_owned()
            },
        )
    } else {
        Check::fail(
            "live_nodes",
            Severity::Critical,
            format!("no live node can run {}", stranded.join("; ")),
            "start a node of one of those pools: `switchyard node --pool POOL --egress-ip IP`",
        )
    };
    [certificate_expiry, live_nodes]
}

/// The soonest-expiring certificate of `nodes`.
fn certificates(nodes: &[&LiveNode], now: i64, whose: &str) -> Check {
    let soonest = nodes
        .iter()
        .flat_map(|n| n.certificates.iter().map(move |c| (c.not_after * 1000 - now, &c.identity, &n.id)))
        .min_by_key(|(left, _, _)| *left);
    let Some((left, identity, node)) = soonest else {
        return Check::pass("certificate_expiry", format!("no client certificates reported on {whose}"));
    };
    let action = format!(
        "renew the client certificate `{identity}` and install it on the nodes (they reload it without a restart); the destination must trust the new one"
    );
    if left <= 0 {
        Check::fail(
            "certificate_expiry",
            Severity::Critical,
            format!("client certificate `{identity}` on node {node} expired {} ago", human(-left)),
            action,
        )
    } else if left <= CERT_CRITICAL.as_millis() as i64 {
        Check::fail(
            "certificate_expiry",
            Severity::Critical,
            format!("client certificate `{identity}` on node {node} expires in {}", human(left)),
            action,
        )
    } else if left <= CERT_WARNING.as_millis() as i64 {
        Check::fail(
            "certificate_expiry",
            Severity::Warning,
            format!("client certificate `{identity}` on node {node} expires in {}", human(left)),
            action,
        )
    } else {
        Check::pass(
            "certificate_expiry",
            format!("soonest expiry on {whose}: `{identity}` in {}", human(left)),
        )
    }
}

/// For a scheduled job without `expected_interval`: the slot before the latest slot at or before
/// `at`. A success finished after it means at most one slot went without one.
fn expected_by(schedule: &str, at: i64) -> Option<i64> {
    let latest = crate::engine::cron::latest_slot(schedule, at)?;
    crate::engine::cron::latest_slot(schedule, latest - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(42_000), "42s");
        assert_eq!(human(65_000), "1m 5s");
        assert_eq!(human(3_900_000), "1h 5m");
        assert_eq!(human(7_200_000), "2h");
        assert_eq!(human(3 * 86_400_000 + 7_200_000), "3d 2h");
    }

    #[test]
    fn scheduled_jobs_tolerate_one_missed_slot() {
        use chrono::{TimeZone, Utc};
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap().timestamp_millis();
        let due = expected_by("0 */6 * * *", at).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap().timestamp_millis());
    }
}
