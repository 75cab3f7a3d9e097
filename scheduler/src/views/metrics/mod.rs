//! What the control plane exports at `/metrics` (Prometheus text format 0.0.4), computed from the
//! store on every scrape so that every replica reports the same numbers. Names follow
//! `switchyard_<component>_<name>_<unit>`; counters are cumulative over the store's history.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `switchyard_scheduler_tasks_total` | counter | `class`, `compute`, `outcome` (finished task runs) |
//! | `switchyard_scheduler_tasks_running` | gauge | `compute` |
//! | `switchyard_scheduler_task_duration_seconds` | histogram | `class`, `compute` (first start to finish of finished task runs) |
//! | `switchyard_scheduler_queue_depth_tasks` | gauge | `pool` (`serverless` for workers) |
//! | `switchyard_scheduler_nodes_live` | gauge | — |
//! | `switchyard_scheduler_pool_nodes_live` | gauge | `pool` (every configured pool, 0 included) |
//! | `switchyard_serverless_workers_live` | gauge | — |
//! | `switchyard_scheduler_lease_losses_total` | counter | `compute` (attempts whose node stopped heartbeating) |
//! | `switchyard_gateway_egress_decisions_total` | counter | `destination`, `outcome` (`allowed`, `denied`, `would_deny`) |
//! | `switchyard_gateway_egress_bytes_total` | counter | `destination` (bytes of allowed connections) |
//! | `switchyard_gateway_certificate_expiry_seconds` | gauge | `node`, `pool`, `identity` |
//! | `switchyard_ingest_rows_total` | counter | `table` (rows committed by ingestion attempts) |
//! | `switchyard_ingest_bytes_total` | counter | `egress_ip` (bytes through the dedicated nodes' gateways) |
//! | `switchyard_transform_rows_total` | counter | `table` (rows committed by transforms) |
//! | `switchyard_transform_expectation_violations_total` | counter | `job_name`, `task`, `expectation`, `action` |
//!
//! The job label is `job_name`, not `job`: Prometheus sets `job` on every scraped series itself.

mod exposition;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use sqlx::any::AnyRow;

use self::exposition::Exposition;
use super::Views;
use super::nodes::LiveNode;
use crate::Error;
use crate::spec::JobSpec;
use crate::store::now_ms;
use crate::store::sql::get;

/// Upper bounds (seconds) of the task duration histogram's buckets.
const DURATION_BUCKETS: [f64; 12] =
    [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// What a transform attempt reported about its rows, from `attempts.details`
/// (`{"transform": {"output": {"rows"}, "expectations": [{name, action, violations}], "quarantined"}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TransformDetails {
    #[serde(default)]
    pub(crate) output: Option<TransformOutput>,
    #[serde(default)]
    pub(crate) expectations: Vec<ExpectationCount>,
    #[serde(default)]
    pub(crate) quarantined: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TransformOutput {
    #[serde(default)]
    pub(crate) rows: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ExpectationCount {
    pub(crate) name: String,
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) violations: u64,
}

impl TransformDetails {
    /// The transform part of an attempt's details, if it has one.
    pub(crate) fn parse(details: &str) -> Option<TransformDetails> {
        #[derive(Deserialize)]
        struct Wrapper {
            transform: Option<TransformDetails>,
        }
        serde_json::from_str::<Wrapper>(details).ok()?.transform
    }

    /// Rows kept out of the output: dropped by `drop` expectations plus quarantined rows. A row
    /// failing two `drop` checks counts twice, so this can overstate slightly.
    pub(crate) fn removed(&self) -> u64 {
        let dropped: u64 =
            self.expectations.iter().filter(|e| e.action == "drop").map(|e| e.violations).sum();
        dropped + self.quarantined
    }

    pub(crate) fn written(&self) -> u64 {
        self.output.as_ref().map_or(0, |o| o.rows)
    }
}

impl Views {
    /// Each registered job's task → workload class, for labelling task runs.
    pub(crate) async fn task_classes(&self) -> Result<HashMap<(String, String), String>, Error> {
        let rows = sqlx::query("SELECT name, spec FROM jobs")
            .fetch_all(&self.store.read)
            .await
            .map_err(Error::store)?;
        let mut classes = HashMap::new();
        for row in &rows {
            let spec: String = get(row, "spec")?;
            let Ok(job) = serde_json::from_str::<JobSpec>(&spec) else { continue };
            for task in job.tasks {
                classes.insert((job.job.clone(), task.name), task.class);
            }
        }
        Ok(classes)
    }

    /// The order of the calls is the order of the families in the output; scrapers do not care,
    /// but people diffing two scrapes do.
    pub async fn metrics(&self) -> Result<String, Error> {
        let now = now_ms();
        let mut out = Exposition(String::new());
        self.task_run_metrics(&mut out).await?;
        self.running_metrics(&mut out).await?;
        self.queue_metrics(&mut out, now).await?;
        let nodes = self.live_nodes(now).await?;
        self.node_metrics(&mut out, &nodes);
        self.lease_loss_metrics(&mut out).await?;
        self.egress_metrics(&mut out).await?;
        certificate_metrics(&mut out, &nodes, now);
        self.lake_commit_metrics(&mut out).await?;
        self.ingest_byte_metrics(&mut out).await?;
        self.expectation_metrics(&mut out).await?;
        Ok(out.0)
    }

    /// Outcome counts and the duration histogram come from one grouped query, so both families
    /// describe the same finished runs; the class is looked up in the job specs because task runs
    /// do not store it.
    async fn task_run_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let classes = self.task_classes().await?;
        let class_of = |job: &str, task: &str| {
            classes.get(&(job.to_owned(), task.to_owned())).cloned().unwrap_or_else(|| "unknown".to_owned())
        };
        let buckets = duration_bucket_columns();
        let rows = sqlx::query(&format!(
            "SELECT r.job, t.task, t.compute, t.state, COUNT(*) AS n, \
             SUM(CASE WHEN t.started_at IS NOT NULL THEN 1 ELSE 0 END) AS timed, \
             CAST(COALESCE(SUM(CASE WHEN t.started_at IS NOT NULL THEN t.finished_at - t.started_at ELSE 0 END), 0) AS BIGINT) AS total_ms{buckets} \
             FROM task_runs t JOIN job_runs r ON r.id = t.run_id WHERE t.finished_at IS NOT NULL \
             GROUP BY r.job, t.task, t.compute, t.state"
        ))
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut outcomes: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        let mut histograms: BTreeMap<(String, String), (Vec<i64>, i64, i64)> = BTreeMap::new();
        for row in &rows {
            let job: String = get(row, "job")?;
            let task: String = get(row, "task")?;
            let compute: String = get(row, "compute")?;
            let state: String = get(row, "state")?;
            let class = class_of(&job, &task);
            *outcomes.entry((class.clone(), compute.clone(), state)).or_default() += get::<i64>(row, "n")?;
            let h =
                histograms.entry((class, compute)).or_insert_with(|| (vec![0; DURATION_BUCKETS.len()], 0, 0));
            for (i, b) in h.0.iter_mut().enumerate() {
                *b += get::<i64>(row, &format!("b{i}"))?;
            }
            h.1 += get::<i64>(row, "timed")?;
            h.2 += get::<i64>(row, "total_ms")?;
        }
        out.family(
            "switchyard_scheduler_tasks_total",
            "counter",
            "Finished task runs by workload class, compute and outcome.",
        );
        for ((class, compute, outcome), n) in &outcomes {
            out.sample(
                "switchyard_scheduler_tasks_total",
                &[("class", class), ("compute", compute), ("outcome", outcome)],
                n,
            );
        }
        out.family(
            "switchyard_scheduler_task_duration_seconds",
            "histogram",
            "Time from a task run's first start to its end (retries included), by class and compute.",
        );
        for ((class, compute), (counts, timed, total_ms)) in &histograms {
            let name = "switchyard_scheduler_task_duration_seconds_bucket";
            for (bound, n) in DURATION_BUCKETS.iter().zip(counts) {
                out.sample(name, &[("class", class), ("compute", compute), ("le", &bound.to_string())], n);
            }
            out.sample(name, &[("class", class), ("compute", compute), ("le", "+Inf")], timed);
            let labels = [("class", class.as_str()), ("compute", compute.as_str())];
            out.sample("switchyard_scheduler_task_duration_seconds_sum", &labels, *total_ms as f64 / 1000.0);
            out.sample("switchyard_scheduler_task_duration_seconds_count", &labels, timed);
        }
        Ok(())
    }

    async fn running_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let running = sqlx::query(
            "SELECT compute, COUNT(*) AS n FROM task_runs WHERE state = 'running' GROUP BY compute ORDER BY compute",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        out.family(
            "switchyard_scheduler_tasks_running",
            "gauge",
            "Task runs with a live attempt, by compute.",
        );
        per_compute(out, "switchyard_scheduler_tasks_running", &running)
    }

    /// Only tasks whose `not_before` has passed count, so backed-off retries do not look like a
    /// backlog.
    async fn queue_metrics(&self, out: &mut Exposition, now: i64) -> Result<(), Error> {
        let queue = sqlx::query(
            "SELECT pool, COUNT(*) AS n FROM queue WHERE not_before <= $1 GROUP BY pool ORDER BY pool",
        )
        .bind(now)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        out.family(
            "switchyard_scheduler_queue_depth_tasks",
            "gauge",
            "Tasks ready to be leased, by pool (`serverless` for workers).",
        );
        for row in &queue {
            let name: String = get(row, "pool")?;
            let name = if name == crate::spec::SERVERLESS { "serverless".to_owned() } else { name };
            out.sample("switchyard_scheduler_queue_depth_tasks", &[("pool", &name)], get::<i64>(row, "n")?);
        }
        Ok(())
    }

    /// Every configured pool gets a sample, 0 included, so an alert on an empty pool has a series
    /// to fire on.
    fn node_metrics(&self, out: &mut Exposition, nodes: &[LiveNode]) {
        out.family(
            "switchyard_scheduler_nodes_live",
            "gauge",
            "Nodes and workers heartbeating within the lease TTL.",
        );
        out.sample("switchyard_scheduler_nodes_live", &[], nodes.len());
        out.family(
            "switchyard_scheduler_pool_nodes_live",
            "gauge",
            "Dedicated nodes heartbeating within the lease TTL, by pool (configured pools always listed).",
        );
        let mut per_pool: BTreeMap<String, usize> =
            self.config.settings.pools.iter().map(|p| (p.name.clone(), 0)).collect();
        for n in nodes.iter().filter(|n| n.kind != "serverless") {
            *per_pool.entry(n.pool.clone().unwrap_or_default()).or_default() += 1;
        }
        for (name, n) in &per_pool {
            out.sample("switchyard_scheduler_pool_nodes_live", &[("pool", name)], n);
        }
        out.family(
            "switchyard_serverless_workers_live",
            "gauge",
            "Serverless workers heartbeating within the lease TTL.",
        );
        out.sample(
            "switchyard_serverless_workers_live",
            &[],
            nodes.iter().filter(|n| n.kind == "serverless").count(),
        );
    }

    async fn lease_loss_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let losses = sqlx::query(
            "SELECT t.compute, COUNT(*) AS n FROM attempts a JOIN task_runs t ON t.id = a.task_run_id \
             WHERE a.state = 'lost' GROUP BY t.compute",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        out.family(
            "switchyard_scheduler_lease_losses_total",
            "counter",
            "Attempts whose node stopped heartbeating (lease reclaimed), by compute.",
        );
        per_compute(out, "switchyard_scheduler_lease_losses_total", &losses)
    }

    /// Decisions and bytes share one query; bytes count only for allowed connections, since a
    /// denied one carries none worth reporting.
    async fn egress_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let egress = sqlx::query(
            "SELECT destination, verdict, CAST(SUM(count) AS BIGINT) AS n, CAST(SUM(bytes) AS BIGINT) AS bytes \
             FROM egress_audit GROUP BY destination, verdict ORDER BY destination, verdict",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        out.family(
            "switchyard_gateway_egress_decisions_total",
            "counter",
            "Outbound connections decided by the nodes' gateways, by destination and outcome.",
        );
        let mut bytes: BTreeMap<String, i64> = BTreeMap::new();
        for row in &egress {
            let destination: String = get(row, "destination")?;
            let verdict: String = get(row, "verdict")?;
            out.sample(
                "switchyard_gateway_egress_decisions_total",
                &[("destination", &destination), ("outcome", &verdict)],
                get::<i64>(row, "n")?,
            );
            if verdict == "allowed" {
                *bytes.entry(destination).or_default() += get::<i64>(row, "bytes")?;
            }
        }
        out.family(
            "switchyard_gateway_egress_bytes_total",
            "counter",
            "Bytes carried by allowed outbound connections, both directions, by destination.",
        );
        for (destination, n) in &bytes {
            out.sample("switchyard_gateway_egress_bytes_total", &[("destination", destination)], n);
        }
        Ok(())
    }

    /// Rows committed by dedicated nodes are ingestion and by serverless workers transforms, so
    /// one query by compute feeds both families.
    async fn lake_commit_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let commits = sqlx::query(
            "SELECT t.compute, c.table_name, CAST(SUM(c.rows_added) AS BIGINT) AS n FROM lake_commits c \
             JOIN attempts a ON a.id = c.attempt_id JOIN task_runs t ON t.id = a.task_run_id \
             GROUP BY t.compute, c.table_name ORDER BY c.table_name",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        for (compute, name, help) in [
            (
                "dedicated",
                "switchyard_ingest_rows_total",
                "Rows committed to lake tables by ingestion, by table.",
            ),
            (
                "serverless",
                "switchyard_transform_rows_total",
                "Rows committed to lake tables by transforms, by table.",
            ),
        ] {
            out.family(name, "counter", help);
            for row in &commits {
                if get::<String>(row, "compute")? == compute {
                    let table: String = get(row, "table_name")?;
                    out.sample(name, &[("table", &table)], get::<i64>(row, "n")?);
                }
            }
        }
        Ok(())
    }

    /// Serverless workers have no gateway of their own (their audit rows say `serverless` for the
    /// egress IP), so they are left out.
    async fn ingest_byte_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let ingest_bytes = sqlx::query(
            "SELECT egress_ip, CAST(SUM(bytes) AS BIGINT) AS n FROM egress_audit \
             WHERE verdict = 'allowed' AND egress_ip <> 'serverless' GROUP BY egress_ip ORDER BY egress_ip",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        out.family(
            "switchyard_ingest_bytes_total",
            "counter",
            "Bytes that dedicated nodes' connections carried through their gateways, by egress IP.",
        );
        for row in &ingest_bytes {
            let ip: String = get(row, "egress_ip")?;
            out.sample("switchyard_ingest_bytes_total", &[("egress_ip", &ip)], get::<i64>(row, "n")?);
        }
        Ok(())
    }

    async fn expectation_metrics(&self, out: &mut Exposition) -> Result<(), Error> {
        let violations = self.expectation_violations(None).await?;
        out.family(
            "switchyard_transform_expectation_violations_total",
            "counter",
            "Rows that failed an expectation, by job, task, expectation and action.",
        );
        for ((job, task, expectation, action), n) in &violations {
            out.sample(
                "switchyard_transform_expectation_violations_total",
                &[("job_name", job), ("task", task), ("expectation", expectation), ("action", action)],
                n,
            );
        }
        Ok(())
    }

    /// Expectation violations reported by transform attempts (finished after `since`, epoch ms, if
    /// given), summed by job, task, expectation and action.
    pub(crate) async fn expectation_violations(
        &self,
        since: Option<i64>,
    ) -> Result<BTreeMap<(String, String, String, String), u64>, Error> {
        let mut sums = BTreeMap::new();
        for (job, task, details) in self.transform_details(None, since).await? {
            for e in details.expectations {
                *sums.entry((job.clone(), task.clone(), e.name, e.action)).or_default() += e.violations;
            }
        }
        Ok(sums)
    }

    /// `(job, task, details)` of transform attempts that reported expectation counts, of one job or
    /// all, finished after `since` (epoch ms) or ever.
    pub(crate) async fn transform_details(
        &self,
        job: Option<&str>,
        since: Option<i64>,
    ) -> Result<Vec<(String, String, TransformDetails)>, Error> {
        let rows = sqlx::query(
            "SELECT r.job, t.task, a.details FROM attempts a JOIN task_runs t ON t.id = a.task_run_id \
             JOIN job_runs r ON r.id = t.run_id \
             WHERE a.details LIKE '%\"transform\"%' AND a.finished_at >= $1 AND ($2 IS NULL OR r.job = $2)",
        )
        .bind(since.unwrap_or(0))
        .bind(job)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let details: String = get(row, "details")?;
            if let Some(d) = TransformDetails::parse(&details) {
                out.push((get(row, "job")?, get(row, "task")?, d));
            }
        }
        Ok(out)
    }
}

/// One `SUM(...) AS b{i}` column per histogram bucket, so the store does the bucketing and a
/// scrape reads one row per group instead of every task run.
fn duration_bucket_columns() -> String {
    DURATION_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                ", SUM(CASE WHEN t.started_at IS NOT NULL AND t.finished_at - t.started_at <= {} THEN 1 ELSE 0 END) AS b{i}",
                (b * 1000.0) as i64
            )
        })
        .collect()
}

/// Both computes get a sample, 0 when the `(compute, n)` rows have none, so the series do not
/// vanish while a compute is idle.
fn per_compute(out: &mut Exposition, name: &str, rows: &[AnyRow]) -> Result<(), Error> {
    for compute in ["dedicated", "serverless"] {
        let mut n: i64 = 0;
        for row in rows {
            if get::<String>(row, "compute")? == compute {
                n = get::<i64>(row, "n")?;
            }
        }
        out.sample(name, &[("compute", compute)], n);
    }
    Ok(())
}

/// Relative to `now` rather than the absolute `not_after`, so an alert is a plain threshold.
fn certificate_metrics(out: &mut Exposition, nodes: &[LiveNode], now: i64) {
    out.family(
        "switchyard_gateway_certificate_expiry_seconds",
        "gauge",
        "Seconds until a node's client certificate expires (negative: expired).",
    );
    for n in nodes {
        for c in &n.certificates {
            out.sample(
                "switchyard_gateway_certificate_expiry_seconds",
                &[("node", &n.id), ("pool", n.pool.as_deref().unwrap_or("")), ("identity", &c.identity)],
                c.not_after - now / 1000,
            );
        }
    }
}
