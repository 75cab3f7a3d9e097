//! What the dashboard shows, read from the store in a few queries per page so that every replica
//! serves the same picture and a page load stays cheap while runs are busy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use switchyard_config::FailureClass;

use super::Views;
use super::nodes::NodeView;
use crate::Error;
use crate::api::types::AuditRecord;
use crate::api::types::CertificateExpiry;
use crate::store::now_ms;

/// How far back the overview looks for failures and worker counts.
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Buckets of the serverless-workers chart: one per minute over the last hour.
const WORKER_BUCKETS: i64 = 60;

/// The overview page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overview {
    /// The store's clock (epoch ms), so the page computes ages without trusting the browser's.
    pub now: i64,
    pub jobs: Vec<JobStatus>,
    /// Failed task runs of the last 24 hours, newest first.
    pub failures: Vec<FailureView>,
    /// Tasks waiting, per compute class (and pool for dedicated work), with why they wait.
    pub queues: Vec<QueueDepth>,
    /// Serverless workers alive in each minute of the last hour, oldest first.
    pub workers: Vec<WorkerPoint>,
    /// Dedicated nodes (live, and those gone within the last hour).
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub job: String,
    pub schedule: Option<String>,
    pub runs: i64,
    pub last_run: Option<RunBrief>,
    /// When a run of it last succeeded (epoch ms).
    pub last_success_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunBrief {
    pub id: i64,
    pub state: String,
    pub trigger: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailureView {
    pub run: i64,
    pub job: String,
    pub task: String,
    pub task_run: i64,
    pub state: String,
    pub class: Option<FailureClass>,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueDepth {
    /// `dedicated` or `serverless`.
    pub compute: String,
    /// The first eligible pool of dedicated work; `None` for serverless.
    pub pool: Option<String>,
    /// Queued or retrying tasks.
    pub tasks: i64,
    /// Why they are not running ("cannot schedule" reasons), with how many tasks each.
    pub reasons: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReasonCount {
    pub reason: String,
    pub tasks: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerPoint {
    /// Start of the minute (epoch ms).
    pub at: i64,
    pub workers: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeView,
    /// Heartbeating within the lease TTL.
    pub live: bool,
}

/// The egress page: the rules come from the policy (see the API handler), the rest from the audit
/// trail and the nodes' certificate reports.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EgressActivity {
    pub now: i64,
    /// Connections per destination over the last 24 hours.
    pub destinations: Vec<DestinationCounts>,
    /// The latest denials (and dry-run would-be denials), newest first.
    pub denials: Vec<AuditRecord>,
    /// Client certificates the nodes hold, soonest expiry first.
    pub identities: Vec<IdentityExpiry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestinationCounts {
    pub destination: String,
    pub allowed: i64,
    pub denied: i64,
    pub bytes: i64,
    pub last_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentityExpiry {
    pub identity: String,
    pub node: String,
    pub pool: Option<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// Whole days left (negative: expired).
    pub days_left: i64,
}

impl Views {
    pub async fn overview(&self) -> Result<Overview, Error> {
        let now = now_ms();
        Ok(Overview {
            now,
            jobs: self.job_statuses().await?,
            failures: self.recent_failures(now - DAY_MS, 50).await?,
            queues: self.queue_depths().await?,
            workers: self.worker_counts(now).await?,
            nodes: self.node_statuses(now).await?,
        })
    }

    async fn job_statuses(&self) -> Result<Vec<JobStatus>, Error> {
        let rows = sqlx::query(
            "SELECT j.name, j.schedule, \
               (SELECT COUNT(*) FROM job_runs r WHERE r.job = j.name) AS runs, \
               (SELECT MAX(r.finished_at) FROM job_runs r WHERE r.job = j.name AND r.state = 'succeeded') AS last_success_at, \
               r.id, r.state, r.trigger, r.created_at, r.finished_at \
             FROM jobs j LEFT JOIN job_runs r ON r.id = (SELECT MAX(id) FROM job_runs WHERE job = j.name) \
             ORDER BY j.name",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                let id: Option<i64> = row.try_get("id").map_err(Error::store)?;
                let last_run = match id {
                    Some(id) => Some(RunBrief {
                        id,
                        state: row.try_get("state").map_err(Error::store)?,
                        trigger: row.try_get("trigger").map_err(Error::store)?,
                        created_at: row.try_get("created_at").map_err(Error::store)?,
                        finished_at: row.try_get("finished_at").map_err(Error::store)?,
                    }),
                    None => None,
                };
                Ok(JobStatus {
                    job: row.try_get("name").map_err(Error::store)?,
                    schedule: row.try_get("schedule").map_err(Error::store)?,
                    runs: row.try_get("runs").map_err(Error::store)?,
                    last_run,
                    last_success_at: row.try_get("last_success_at").map_err(Error::store)?,
                })
            })
            .collect()
    }

    async fn recent_failures(&self, since: i64, limit: i64) -> Result<Vec<FailureView>, Error> {
        let rows = sqlx::query(
            "SELECT t.id, t.run_id, r.job, t.task, t.state, t.error_class, t.message, t.finished_at, t.updated_at \
             FROM task_runs t JOIN job_runs r ON r.id = t.run_id \
             WHERE t.state IN ('failed', 'timed_out') AND t.updated_at >= $1 \
             ORDER BY t.updated_at DESC, t.id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                let class: Option<String> = row.try_get("error_class").map_err(Error::store)?;
                let class = class.as_deref().and_then(FailureClass::parse);
                let finished: Option<i64> = row.try_get("finished_at").map_err(Error::store)?;
                Ok(FailureView {
                    run: row.try_get("run_id").map_err(Error::store)?,
                    job: row.try_get("job").map_err(Error::store)?,
                    task: row.try_get("task").map_err(Error::store)?,
                    task_run: row.try_get("id").map_err(Error::store)?,
                    state: row.try_get("state").map_err(Error::store)?,
                    class,
                    message: row.try_get("message").map_err(Error::store)?,
                    hint: class.map(|c| c.hint().to_owned()),
                    at: finished.map_or_else(|| row.try_get("updated_at").map_err(Error::store), Ok)?,
                })
            })
            .collect()
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, Error> {
        let rows = sqlx::query(
            "SELECT compute, pools, waiting, COUNT(*) AS n FROM task_runs \
             WHERE state IN ('queued', 'retrying') GROUP BY compute, pools, waiting",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut depths: BTreeMap<(String, Option<String>), QueueDepth> = BTreeMap::new();
        for row in &rows {
            let compute: String = row.try_get("compute").map_err(Error::store)?;
            let pools: String = row.try_get("pools").map_err(Error::store)?;
            let pools: Vec<String> = serde_json::from_str(&pools).map_err(|e| Error::corrupt("pools", e))?;
            let waiting: Option<String> = row.try_get("waiting").map_err(Error::store)?;
            let n: i64 = row.try_get("n").map_err(Error::store)?;
            let pool = pools.into_iter().next();
            let depth = depths.entry((compute.clone(), pool.clone())).or_insert_with(|| QueueDepth {
                compute,
                pool,
                tasks: 0,
                reasons: vec![],
            });
            depth.tasks += n;
            let reason = waiting.unwrap_or_else(|| "ready: waiting for a free slot".to_owned());
            match depth.reasons.iter_mut().find(|r| r.reason == reason) {
                Some(r) => r.tasks += n,
                None => depth.reasons.push(ReasonCount { reason, tasks: n }),
            }
        }
        let mut depths: Vec<QueueDepth> = depths.into_values().collect();
        for d in &mut depths {
            d.reasons.sort_by(|a, b| b.tasks.cmp(&a.tasks).then_with(|| a.reason.cmp(&b.reason)));
        }
        // Serverless always shows, even at zero: "is serverless keeping up" is a question asked
        // most when nothing is queued.
        if !depths.iter().any(|d| d.compute == "serverless") {
            depths.push(QueueDepth { compute: "serverless".into(), pool: None, tasks: 0, reasons: vec![] });
        }
        Ok(depths)
    }

    /// Workers alive in each minute: from registration (or launch) to their last heartbeat, or
    /// to now for workers still heartbeating.
    async fn worker_counts(&self, now: i64) -> Result<Vec<WorkerPoint>, Error> {
        let start = (now / 60_000 - (WORKER_BUCKETS - 1)) * 60_000;
        let live_after = now - self.config.lease_ttl.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT COALESCE(launched_at, registered_at) AS since, heartbeat_at, state FROM nodes \
             WHERE kind = 'serverless' AND heartbeat_at >= $1",
        )
        .bind(start)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut spans = Vec::with_capacity(rows.len());
        for row in &rows {
            let since: i64 = row.try_get("since").map_err(Error::store)?;
            let last: i64 = row.try_get("heartbeat_at").map_err(Error::store)?;
            let state: String = row.try_get("state").map_err(Error::store)?;
            let until = if state == "active" && last >= live_after { now } else { last };
            spans.push((since, until));
        }
        Ok(bucket_counts(&spans, start, WORKER_BUCKETS))
    }

    async fn node_statuses(&self, now: i64) -> Result<Vec<NodeStatus>, Error> {
        let live_after = now - self.config.lease_ttl.as_millis() as i64;
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.kind == "dedicated" && (n.state == "active" || n.heartbeat_at >= now - HOUR_MS))
            .map(|n| {
                let live = n.state == "active" && n.heartbeat_at >= live_after;
                NodeStatus { node: n, live }
            })
            .collect())
    }

    /// Audit counts, recent denials and certificate expiries for the egress page.
    pub async fn egress_activity(&self) -> Result<EgressActivity, Error> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT destination, \
               CAST(SUM(CASE WHEN verdict = 'allowed' THEN count ELSE 0 END) AS BIGINT) AS allowed, \
               CAST(SUM(CASE WHEN verdict = 'allowed' THEN 0 ELSE count END) AS BIGINT) AS denied, \
               CAST(SUM(bytes) AS BIGINT) AS bytes, MAX(at) AS last_at \
             FROM egress_audit WHERE at >= $1 GROUP BY destination ORDER BY destination",
        )
        .bind(now - DAY_MS)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut destinations = Vec::with_capacity(rows.len());
        for row in &rows {
            destinations.push(DestinationCounts {
                destination: row.try_get("destination").map_err(Error::store)?,
                allowed: sum_column(row, "allowed")?,
                denied: sum_column(row, "denied")?,
                bytes: sum_column(row, "bytes")?,
                last_at: row.try_get("last_at").map_err(Error::store)?,
            });
        }
        let denials = self.audit(true, 50).await?;
        let rows = sqlx::query(
            "SELECT id, pool, certificates FROM nodes WHERE state = 'active' AND certificates IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut identities = Vec::new();
        for row in &rows {
            let node: String = row.try_get("id").map_err(Error::store)?;
            let pool: Option<String> = row.try_get("pool").map_err(Error::store)?;
            let certificates: String = row.try_get("certificates").map_err(Error::store)?;
            let certificates: Vec<CertificateExpiry> =
                serde_json::from_str(&certificates).map_err(|e| Error::corrupt("certificates", e))?;
            for c in certificates {
                identities.push(IdentityExpiry {
                    days_left: (c.not_after - now / 1000).div_euclid(86_400),
                    identity: c.identity,
                    node: node.clone(),
                    pool: pool.clone(),
                    not_after: c.not_after,
                });
            }
        }
        identities.sort_by(|a, b| a.not_after.cmp(&b.not_after).then_with(|| a.node.cmp(&b.node)));
        Ok(EgressActivity { now, destinations, denials, identities })
    }
}

/// A `CAST(SUM(…) AS BIGINT)` column: NULL when there were no rows.
fn sum_column(row: &sqlx::any::AnyRow, col: &str) -> Result<i64, Error> {
    Ok(row.try_get::<Option<i64>, _>(col).map_err(Error::store)?.unwrap_or(0))
}

/// How many of `spans` (start, end; epoch ms) overlap each of `n` minutes from `start`.
fn bucket_counts(spans: &[(i64, i64)], start: i64, n: i64) -> Vec<WorkerPoint> {
    (0..n)
        .map(|i| {
            let from = start + i * 60_000;
            let to = from + 60_000;
            let workers = spans.iter().filter(|(s, e)| *s < to && *e >= from).count() as i64;
            WorkerPoint { at: from, workers }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_counts_in_every_minute_it_was_alive() {
        let start = 600_000;
        // One worker alive 1:30–3:10 (minutes 1, 2 and 3), one alive only in minute 0.
        let spans = [(start + 90_000, start + 190_000), (start + 1_000, start + 2_000)];
        let counts: Vec<i64> = bucket_counts(&spans, start, 5).iter().map(|p| p.workers).collect();
        assert_eq!(counts, vec![1, 1, 1, 1, 0]);
    }
}
