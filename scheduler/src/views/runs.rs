//! Runs as `switchyard runs`, the API and the dashboard show them: each with its tasks, their
//! attempts and why they wait or why they were (not) retried.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use switchyard_config::FailureClass;

use super::Views;
use crate::Error;
use crate::engine::{RunState, TaskState};
use crate::store::sql::{json_column, parse_column};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub options: crate::api::types::RunOptions,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub number: i64,
    pub node_id: String,
    pub egress_ip: Option<String>,
    pub state: crate::engine::AttemptState,
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

impl Views {
    /// The latest runs (of one job, if given), newest first, with tasks and attempts.
    pub async fn runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<RunView>, Error> {
        self.runs_since(job, None, limit).await
    }

    /// Like [`Views::runs`], and with `since` (epoch ms) only runs still unfinished or finished
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
                options: crate::engine::lease::run_options(row)?,
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
            options: crate::engine::lease::run_options(&row)?,
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
