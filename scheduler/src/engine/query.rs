//! Read models for `runs`, the API and the dashboard, and cancellation.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use switchyard_config::FailureClass;

use super::complete::{finish_task, maybe_finish_run};
use super::{Engine, RunState, TaskState};
use crate::Error;
use crate::api::types::{Outcome, Report};
use crate::store::now_ms;
use crate::store::sql::{json_column, parse_column};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    pub job: String,
    pub state: RunState,
    pub trigger: String,
    /// The cron slot (epoch ms) of a scheduled run.
    pub slot: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// How the run was asked to run (full refresh, pinned input versions).
    #[serde(default)]
    pub options: super::RunOptions,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub id: i64,
    pub task: String,
    pub state: TaskState,
    pub compute: String,
    pub pools: Vec<String>,
    /// Why a queued task is not running yet.
    pub waiting: Option<String>,
    pub error_class: Option<FailureClass>,
    pub message: Option<String>,
    /// What an operator does about a failure of this class.
    #[serde(default)]
    pub hint: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The workload class (`ingest.kafka`, `transform`, …), its upstream tasks and why the plan
    /// placed it where it did: the run's DAG as the dashboard draws it.
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptView {
    pub id: i64,
    pub number: i64,
    pub node_id: String,
    pub egress_ip: Option<String>,
    pub state: super::AttemptState,
    pub queued_at: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub error_class: Option<FailureClass>,
    pub message: Option<String>,
    pub log_tail: Option<String>,
    /// What the attempt reported about its work (a transform's refresh mode, expectations), as
    /// the agent sent it.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    /// Why its failure was or was not retried (`retrying (1 of 3): connectivity failures are
    /// retried by …`, `not retried: data failures are not retried by …`); none for successes.
    #[serde(default)]
    pub retry: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    pub kind: String,
    pub pool: Option<String>,
    pub egress_ip: Option<String>,
    pub version: String,
    pub slots: i64,
    pub busy: i64,
    pub state: String,
    pub heartbeat_at: i64,
    pub launched_at: Option<i64>,
    pub registered_at: i64,
    pub first_lease_at: Option<i64>,
}

impl Engine {
    /// The latest runs (of one job, if given), newest first, with tasks and attempts.
    pub async fn runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<RunView>, Error> {
        self.runs_since(job, None, limit).await
    }

    /// Like [`Engine::runs`], and with `since` (epoch ms) only runs still unfinished or finished
    /// at or after it: every run with an attempt in a cost report's window.
    pub async fn runs_since(
        &self,
        job: Option<&str>,
        since: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RunView>, Error> {
        let rows = sqlx::query(
            "SELECT id, job, state, trigger, slot, created_at, finished_at, options FROM job_runs \
             WHERE ($1 IS NULL OR job = $1) AND ($2 IS NULL OR finished_at IS NULL OR finished_at >= $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(job)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push(RunView {
                id: row.try_get("id").map_err(Error::store)?,
                job: row.try_get("job").map_err(Error::store)?,
                state: parse_column(row, "state")?,
                trigger: row.try_get("trigger").map_err(Error::store)?,
                slot: row.try_get("slot").map_err(Error::store)?,
                created_at: row.try_get("created_at").map_err(Error::store)?,
                finished_at: row.try_get("finished_at").map_err(Error::store)?,
                options: super::lease::run_options(row)?,
                tasks: vec![],
            });
        }
        for run in &mut runs {
            run.tasks = self.tasks_of(run.id).await?;
        }
        Ok(runs)
    }

    /// Just a run's state (cheap, for polling).
    pub async fn run_state(&self, id: i64) -> Result<RunState, Error> {
        let state: String = sqlx::query_scalar("SELECT state FROM job_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?
            .ok_or_else(|| Error::NotFound { what: "run", id: id.to_string() })?;
        state.parse().map_err(|e| Error::corrupt("run state", e))
    }

    pub async fn run(&self, id: i64) -> Result<RunView, Error> {
        let row = sqlx::query(
            "SELECT id, job, state, trigger, slot, created_at, finished_at, options FROM job_runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.store.read)
        .await
        .map_err(Error::store)?
        .ok_or_else(|| Error::NotFound { what: "run", id: id.to_string() })?;
        Ok(RunView {
            id,
            job: row.try_get("job").map_err(Error::store)?,
            state: parse_column(&row, "state")?,
            trigger: row.try_get("trigger").map_err(Error::store)?,
            slot: row.try_get("slot").map_err(Error::store)?,
            created_at: row.try_get("created_at").map_err(Error::store)?,
            finished_at: row.try_get("finished_at").map_err(Error::store)?,
            options: super::lease::run_options(&row)?,
            tasks: self.tasks_of(id).await?,
        })
    }

    async fn tasks_of(&self, run_id: i64) -> Result<Vec<TaskView>, Error> {
        let rows = sqlx::query(
            "SELECT id, task, state, compute, pools, waiting, error_class, message, started_at, finished_at, spec \
             FROM task_runs WHERE run_id = $1 ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let attempts = sqlx::query(
            "SELECT a.id, a.task_run_id, a.number, a.node_id, n.egress_ip, a.state, a.queued_at, a.started_at, \
             a.finished_at, a.exit_code, a.error_class, a.message, a.log_tail, a.details, a.retry FROM attempts a \
             JOIN task_runs t ON t.id = a.task_run_id LEFT JOIN nodes n ON n.id = a.node_id \
             WHERE t.run_id = $1 ORDER BY a.id",
        )
        .bind(run_id)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(Error::store)?;
            let pools: String = row.try_get("pools").map_err(Error::store)?;
            let class: Option<String> = row.try_get("error_class").map_err(Error::store)?;
            let error_class = class.as_deref().and_then(FailureClass::parse);
            let spec: String = row.try_get("spec").map_err(Error::store)?;
            let spec: crate::spec::TaskSpec =
                serde_json::from_str(&spec).map_err(|e| Error::corrupt("task spec", e))?;
            let mut view = TaskView {
                id,
                task: row.try_get("task").map_err(Error::store)?,
                state: parse_column(row, "state")?,
                compute: row.try_get("compute").map_err(Error::store)?,
                pools: serde_json::from_str(&pools).map_err(|e| Error::corrupt("pools", e))?,
                waiting: row.try_get("waiting").map_err(Error::store)?,
                error_class,
                message: row.try_get("message").map_err(Error::store)?,
                hint: error_class.map(|c| c.hint().to_owned()),
                started_at: row.try_get("started_at").map_err(Error::store)?,
                finished_at: row.try_get("finished_at").map_err(Error::store)?,
                class: spec.class,
                depends_on: spec.depends_on,
                reasons: spec.reasons,
                attempts: vec![],
            };
            for a in attempts.iter().filter(|a| a.try_get::<i64, _>("task_run_id").ok() == Some(id)) {
                let class: Option<String> = a.try_get("error_class").map_err(Error::store)?;
                view.attempts.push(AttemptView {
                    id: a.try_get("id").map_err(Error::store)?,
                    number: a.try_get("number").map_err(Error::store)?,
                    node_id: a.try_get("node_id").map_err(Error::store)?,
                    egress_ip: a.try_get("egress_ip").map_err(Error::store)?,
                    state: parse_column(a, "state")?,
                    queued_at: a.try_get("queued_at").map_err(Error::store)?,
                    started_at: a.try_get("started_at").map_err(Error::store)?,
                    finished_at: a.try_get("finished_at").map_err(Error::store)?,
                    exit_code: a.try_get("exit_code").map_err(Error::store)?,
                    error_class: class.as_deref().and_then(FailureClass::parse),
                    message: a.try_get("message").map_err(Error::store)?,
                    log_tail: a.try_get("log_tail").map_err(Error::store)?,
                    details: json_column(a, "details", "attempt details")?,
                    retry: a.try_get("retry").map_err(Error::store)?,
                });
            }
            tasks.push(view);
        }
        Ok(tasks)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, Error> {
        let rows = sqlx::query(
            "SELECT n.id, n.kind, n.pool, n.egress_ip, n.version, n.slots, n.state, n.heartbeat_at, n.launched_at, \
             n.registered_at, n.first_lease_at, \
             (SELECT COUNT(*) FROM attempts a WHERE a.node_id = n.id AND a.state = 'running') AS busy \
             FROM nodes n ORDER BY n.registered_at",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                Ok(NodeView {
                    id: row.try_get("id").map_err(Error::store)?,
                    kind: row.try_get("kind").map_err(Error::store)?,
                    pool: row.try_get("pool").map_err(Error::store)?,
                    egress_ip: row.try_get("egress_ip").map_err(Error::store)?,
                    version: row.try_get("version").map_err(Error::store)?,
                    slots: row.try_get("slots").map_err(Error::store)?,
                    busy: row.try_get("busy").map_err(Error::store)?,
                    state: row.try_get("state").map_err(Error::store)?,
                    heartbeat_at: row.try_get("heartbeat_at").map_err(Error::store)?,
                    launched_at: row.try_get("launched_at").map_err(Error::store)?,
                    registered_at: row.try_get("registered_at").map_err(Error::store)?,
                    first_lease_at: row.try_get("first_lease_at").map_err(Error::store)?,
                })
            })
            .collect()
    }

    /// Serverless tasks waiting for a worker, and serverless attempts running: the launcher's input.
    pub async fn serverless_demand(&self) -> Result<(i64, i64), Error> {
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM queue WHERE pool = $1 AND not_before <= $2")
                .bind(crate::spec::SERVERLESS)
                .bind(now_ms())
                .fetch_one(&self.store.read)
                .await
                .map_err(Error::store)?;
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attempts a JOIN nodes n ON n.id = a.node_id WHERE a.state = 'running' AND n.kind = 'serverless'",
        )
        .fetch_one(&self.store.read)
        .await
        .map_err(Error::store)?;
        Ok((queued, running))
    }

    /// Cancels every unfinished task of a run; running attempts are stopped at their next heartbeat.
    pub async fn cancel_run(&self, run_id: i64) -> Result<RunView, Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM task_runs WHERE run_id = $1 AND state IN ('pending', 'queued', 'running', 'retrying')",
        )
        .bind(run_id)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        self.cancel_tasks(&ids, "run cancelled").await?;
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        maybe_finish_run(&mut tx, run_id, now).await?;
        tx.commit().await.map_err(Error::store)?;
        self.run(run_id).await
    }

    /// Cancels one task (and, transitively, the tasks waiting for it).
    pub async fn cancel_task(&self, task_run_id: i64) -> Result<(), Error> {
        self.cancel_tasks(&[task_run_id], "task cancelled").await
    }

    async fn cancel_tasks(&self, ids: &[i64], why: &str) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        for id in ids {
            let row = sqlx::query(&format!(
                "SELECT state, run_id FROM task_runs WHERE id = $1{}",
                self.store.dialect.for_update()
            ))
            .bind(*id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?
            .ok_or_else(|| Error::NotFound { what: "task run", id: id.to_string() })?;
            let from: TaskState = parse_column(&row, "state")?;
            if from.is_terminal() {
                continue;
            }
            sqlx::query("DELETE FROM queue WHERE task_run_id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
            sqlx::query(
                "UPDATE attempts SET state = 'cancelled', finished_at = $1, message = $2 WHERE task_run_id = $3 AND state = 'running'",
            )
            .bind(now)
            .bind(why)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
            let report = Report {
                attempt: 0,
                outcome: Outcome::Cancelled,
                exit_code: None,
                error_class: None,
                message: Some(why.to_owned()),
                log_tail: None,
                details: None,
            };
            let m = super::transition::Move { task_run: *id, attempt: None, from, reason: None, since: None };
            finish_task(&mut tx, m, TaskState::Cancelled, now, &report, None).await?;
            let run_id: i64 = row.try_get("run_id").map_err(Error::store)?;
            maybe_finish_run(&mut tx, run_id, now).await?;
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }

    /// Queue→start latencies (ms) of attempts started since `since` (epoch ms), for benchmarks.
    pub async fn start_latencies(&self, since: i64) -> Result<Vec<i64>, Error> {
        sqlx::query_scalar("SELECT started_at - queued_at FROM attempts WHERE started_at >= $1 ORDER BY id")
            .bind(since)
            .fetch_all(&self.store.read)
            .await
            .map_err(Error::store)
    }

    /// Live attempts per task, for invariant checks: must never exceed one.
    pub async fn max_live_attempts_per_task(&self) -> Result<i64, Error> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM attempts WHERE state = 'running' GROUP BY task_run_id) x",
        )
        .fetch_one(&self.store.read)
        .await
        .map_err(Error::store)?;
        Ok(n.unwrap_or(0))
    }
}
