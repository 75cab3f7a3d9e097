//! Reading the cost report's history from the store: each query in its own function, decoded
//! into the model's plain rows, then priced by `model`.

use std::collections::HashMap;

use sqlx::Row;

use super::model::{self, AttemptRow, Basis, CountedNode, NodeRow};
use super::{CostReport, DEFAULT_SLOTS, parse_since};
use crate::Error;
use crate::spec::TaskSpec;
use crate::store::now_ms;
use crate::views::Views;

impl Views {
    /// The cost report over the last `since` (a duration such as `7d`), until now.
    pub async fn cost(&self, since: &str) -> Result<CostReport, Error> {
        self.cost_until(since, now_ms()).await
    }

    /// The cost report over `[until − since, until)`: for reports at a fixed time (tests).
    pub async fn cost_until(&self, since: &str, until: i64) -> Result<CostReport, Error> {
        let b = self.basis(parse_since(since)?, until);
        let attempts = model::attempts(self.attempts_in_window(&b).await?, &b);
        let counted = self.nodes_in_window(&b, &attempts.reported).await?;
        let fleet = model::price_nodes(counted, &attempts.spans, &b);
        let specs = self.task_specs(attempts.task_runs()).await?;
        let priced = model::price_tasks(&attempts, &fleet.nodes, &specs, &b, fleet.cold.unwrap_or(0.0));
        let peak_serverless = model::peak_serverless(&attempts.spans);
        Ok(CostReport {
            since: since.trim().to_owned(),
            from: b.from,
            until,
            window_hours: model::round(b.window_h),
            inputs: model::inputs(&b, &fleet, peak_serverless),
            actual: model::actual(&fleet, &b),
            all_dedicated: model::all_dedicated(&b, fleet.dedicated_hours(), peak_serverless),
            all_serverless: model::all_serverless(&b, fleet.worker_seconds(), fleet.cold, priced.moved),
            nodes: fleet.nodes,
            tasks: priced.tasks,
            recommendations: priced.recommendations,
            assumptions: model::assumptions(),
        })
    }

    /// The window `[until − window, until)` and the configured prices, read once.
    fn basis(&self, window: i64, until: i64) -> Basis {
        let settings = &self.config.settings;
        let window_s = window as f64 / 1000.0;
        Basis {
            from: until - window,
            until,
            lease_ttl: self.config.lease_ttl.as_millis() as i64,
            window_s,
            window_h: window_s / 3600.0,
            price_d: settings.prices.dedicated_node_hour,
            price_s: settings.prices.serverless_vcpu_second,
            vcpus: settings.serverless.vcpus_per_worker,
            slots_per_node: settings
                .pools
                .iter()
                .map(|p| i64::from(p.slots))
                .max()
                .unwrap_or(DEFAULT_SLOTS)
                .max(1),
        }
    }

    /// Attempts overlapping the window, with their task and job.
    async fn attempts_in_window(&self, b: &Basis) -> Result<Vec<AttemptRow>, Error> {
        let rows = sqlx::query(
            "SELECT a.id, a.node_id, a.started_at, a.finished_at, a.task_run_id, t.task, t.compute, t.continuous, r.job \
             FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN job_runs r ON r.id = t.run_id \
             WHERE a.started_at < $1 AND (a.finished_at IS NULL OR a.finished_at > $2) ORDER BY a.id",
        )
        .bind(b.until)
        .bind(b.from)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut attempts = Vec::with_capacity(rows.len());
        for row in &rows {
            attempts.push(AttemptRow {
                started_at: row.try_get("started_at").map_err(Error::store)?,
                finished_at: row.try_get("finished_at").map_err(Error::store)?,
                job: row.try_get("job").map_err(Error::store)?,
                task: row.try_get("task").map_err(Error::store)?,
                compute: row.try_get("compute").map_err(Error::store)?,
                continuous: row.try_get::<i64, _>("continuous").map_err(Error::store)? != 0,
                task_run: row.try_get("task_run_id").map_err(Error::store)?,
                node: row.try_get("node_id").map_err(Error::store)?,
            });
        }
        Ok(attempts)
    }

    /// Nodes and workers alive in the window, with the interval each is counted for. `reported`
    /// is each node's last reported attempt end, which can keep a silent node alive longer.
    async fn nodes_in_window(
        &self,
        b: &Basis,
        reported: &HashMap<String, i64>,
    ) -> Result<Vec<CountedNode>, Error> {
        let rows = sqlx::query(
            "SELECT id, kind, pool, slots, state, registered_at, heartbeat_at, launched_at, first_lease_at \
             FROM nodes WHERE heartbeat_at >= $1 AND COALESCE(launched_at, registered_at) < $2 \
             ORDER BY kind, registered_at, id",
        )
        .bind(b.from - b.lease_ttl)
        .bind(b.until)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut counted = Vec::new();
        for row in &rows {
            let node = NodeRow {
                id: row.try_get("id").map_err(Error::store)?,
                kind: row.try_get("kind").map_err(Error::store)?,
                state: row.try_get("state").map_err(Error::store)?,
                registered_at: row.try_get("registered_at").map_err(Error::store)?,
                heartbeat_at: row.try_get("heartbeat_at").map_err(Error::store)?,
                launched_at: row.try_get("launched_at").map_err(Error::store)?,
                first_lease_at: row.try_get("first_lease_at").map_err(Error::store)?,
            };
            // Pool and slots are read only for counted nodes, so a row outside the window cannot
            // fail the report.
            let Some(interval) = model::counted(&node, b, reported) else {
                continue;
            };
            counted.push(CountedNode {
                node,
                counted: interval,
                pool: row.try_get("pool").map_err(Error::store)?,
                slots: row.try_get("slots").map_err(Error::store)?,
            });
        }
        Ok(counted)
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
