//! Registering jobs and starting runs: one task run per task, dependencies as rows, the tasks with
//! no dependencies queued at once.

use std::collections::HashMap;

use sqlx::Row;

use super::{Engine, RunOptions, TaskState};
use crate::Error;
use crate::spec::{JobSpec, TaskSpec};
use crate::store::now_ms;
use crate::store::sql::Tx;

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Manual,
    Schedule,
    /// A commit to a table an `on_update` task reads.
    OnUpdate,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::OnUpdate => "on_update",
        }
    }
}

/// What a run consists of and how it runs.
pub(crate) struct RunRequest<'a> {
    pub(crate) trigger: Trigger,
    /// The cron slot of a scheduled run (unique per job).
    pub(crate) slot: Option<i64>,
    pub(crate) options: &'a RunOptions,
    /// Only these tasks (by name); every task of the job when absent.
    pub(crate) only: Option<&'a [String]>,
}

impl Engine {
    /// Creates or replaces job definitions. Runs already started keep the definition they began with.
    pub async fn upsert_jobs(&self, specs: &[JobSpec]) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        for spec in specs {
            let json = serde_json::to_string(spec).map_err(|e| Error::corrupt("job spec", e))?;
            sqlx::query(
                "INSERT INTO jobs (name, spec, schedule, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, schedule = excluded.schedule, \
                 updated_at = excluded.updated_at",
            )
            .bind(&spec.job)
            .bind(json)
            .bind(spec.schedule.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
            index_readers(&mut tx, spec).await?;
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }

    /// Starts a run of `job` now. Returns the run id.
    pub async fn trigger(&self, job: &str) -> Result<i64, Error> {
        self.trigger_with(job, &RunOptions::default(), None).await
    }

    /// Starts a run of `job` now with `options`, of only the tasks named in `only` when given
    /// (`--select`): dependencies on tasks left out are dropped, their tables are read as they
    /// are. Returns the run id.
    pub async fn trigger_with(
        &self,
        job: &str,
        options: &RunOptions,
        only: Option<&[String]>,
    ) -> Result<i64, Error> {
        let mut tx = self.store.begin().await?;
        let request = RunRequest { trigger: Trigger::Manual, slot: None, options, only };
        let run = start_run(&mut tx, job, &request).await?;
        tx.commit().await.map_err(Error::store)?;
        self.work.notify_waiters();
        run.ok_or_else(|| Error::corrupt("job run", "manual run conflicted"))
    }

    /// Starts the run of `job` for cron `slot`, unless one exists already (on any replica, before
    /// or after any restart): the unique (job, slot) row makes each slot fire exactly once.
    pub(crate) async fn trigger_slot(&self, job: &str, slot: i64) -> Result<Option<i64>, Error> {
        let mut tx = self.store.begin().await?;
        let options = RunOptions::default();
        let request =
            RunRequest { trigger: Trigger::Schedule, slot: Some(slot), options: &options, only: None };
        let run = start_run(&mut tx, job, &request).await?;
        tx.commit().await.map_err(Error::store)?;
        if run.is_some() {
            self.work.notify_waiters();
        }
        Ok(run)
    }
}

pub(crate) async fn start_run(
    tx: &mut Tx,
    job: &str,
    request: &RunRequest<'_>,
) -> Result<Option<i64>, Error> {
    let now = now_ms();
    let spec = load_spec(tx, job, request.only).await?;
    let Some(run_id) = insert_run(tx, job, request, now).await? else { return Ok(None) };
    let ids = insert_task_runs(tx, run_id, &spec.tasks, now).await?;
    let graph = dependencies(&spec.tasks, &ids);
    insert_deps(tx, &graph.deps).await?;
    super::queue::enqueue_many(tx, &graph.roots, TaskState::Pending, now, Some("no dependencies")).await?;
    tracing::info!(
        job,
        run = run_id,
        trigger = request.trigger.as_str(),
        tasks = spec.tasks.len(),
        "Started a job run."
    );
    Ok(Some(run_id))
}

/// The job's definition as stored, cut down to the tasks of `only` when given: naming none of
/// the job's tasks is an error rather than an empty run.
async fn load_spec(tx: &mut Tx, job: &str, only: Option<&[String]>) -> Result<JobSpec, Error> {
    let spec: String = sqlx::query_scalar("SELECT spec FROM jobs WHERE name = $1")
        .bind(job)
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::store)?
        .ok_or_else(|| Error::NotFound { what: "job", id: job.to_owned() })?;
    let mut spec: JobSpec = serde_json::from_str(&spec).map_err(|e| Error::corrupt("job spec", e))?;
    if let Some(only) = only {
        spec.tasks.retain(|t| only.contains(&t.name));
        if spec.tasks.is_empty() {
            return Err(Error::NotFound { what: "task", id: format!("{} of job {job}", only.join(", ")) });
        }
    }
    Ok(spec)
}

/// The run's row; `None` when the (job, slot) row exists already, so a cron slot fires once.
/// Default options are stored as NULL, like runs from before options existed.
async fn insert_run(
    tx: &mut Tx,
    job: &str,
    request: &RunRequest<'_>,
    now: i64,
) -> Result<Option<i64>, Error> {
    let options = if *request.options == RunOptions::default() {
        None
    } else {
        Some(serde_json::to_string(request.options).map_err(|e| Error::corrupt("run options", e))?)
    };
    let run_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO job_runs (job, state, trigger, slot, created_at, options) VALUES ($1, 'running', $2, $3, $4, $5) \
         ON CONFLICT (job, slot) DO NOTHING RETURNING id",
    )
    .bind(job)
    .bind(request.trigger.as_str())
    .bind(request.slot)
    .bind(now)
    .bind(options)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::store)?;
    Ok(run_id)
}

/// Task runs in multi-row inserts; RETURNING gives (id, task) pairs, matched back by name
/// (task name → task run id).
async fn insert_task_runs(
    tx: &mut Tx,
    run_id: i64,
    tasks: &[TaskSpec],
    now: i64,
) -> Result<HashMap<String, i64>, Error> {
    let per = crate::store::sql::CHUNK / 2;
    let mut ids: HashMap<String, i64> = HashMap::new();
    for (c, chunk) in tasks.chunks(per).enumerate() {
        let sql = format!(
            "INSERT INTO task_runs (run_id, task, position, state, compute, pools, spec, continuous, max_retries, \
             backoff_ms, max_backoff_ms, timeout_ms, created_at, updated_at) VALUES {} RETURNING id, task",
            task_run_values(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (i, task) in chunk.iter().enumerate() {
            let task_json = serde_json::to_string(task).map_err(|e| Error::corrupt("task spec", e))?;
            let pools = serde_json::to_string(&task.queue_keys()).map_err(|e| Error::corrupt("pools", e))?;
            q = q
                .bind(run_id)
                .bind(&task.name)
                .bind((c * per + i) as i64)
                .bind(task.compute.as_str())
                .bind(pools)
                .bind(task_json)
                .bind(i64::from(task.continuous))
                .bind(i64::from(task.max_retries))
                .bind(task.backoff_ms as i64)
                .bind(task.max_backoff_ms as i64)
                .bind(task.timeout_ms.map(|t| t as i64))
                .bind(now);
        }
        for row in q.fetch_all(&mut **tx).await.map_err(Error::store)? {
            ids.insert(row.try_get("task").map_err(Error::store)?, row.try_get("id").map_err(Error::store)?);
        }
    }
    Ok(ids)
}

/// The VALUES list for `rows` task runs: twelve binds a row, the state a literal, and `now`
/// bound once for both created_at and updated_at.
fn task_run_values(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p: Vec<String> = (1..=12).map(|k| format!("${}", i * 12 + k)).collect();
            format!(
                "({}, {}, {}, 'pending', {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[11]
            )
        })
        .collect();
    values.join(", ")
}

/// A run's task runs as a graph, by task run id.
struct Graph {
    /// (task run, dependency), the `task_deps` rows.
    deps: Vec<(i64, i64)>,
    /// The task runs with no dependency in the run, queued at once, with their queue keys.
    roots: Vec<(i64, Vec<String>)>,
}

/// A dependency on a task outside the run (left out by `only`) is dropped: its tables are read
/// as they are, so a task whose dependencies were all left out is a root.
fn dependencies(tasks: &[TaskSpec], ids: &HashMap<String, i64>) -> Graph {
    let mut deps: Vec<(i64, i64)> = Vec::new();
    let mut roots: Vec<(i64, Vec<String>)> = Vec::new();
    for task in tasks {
        let id = ids[&task.name];
        let known: Vec<i64> = task.depends_on.iter().filter_map(|d| ids.get(d).copied()).collect();
        if known.is_empty() {
            roots.push((id, task.queue_keys()));
        }
        deps.extend(known.into_iter().map(|dep| (id, dep)));
    }
    Graph { deps, roots }
}

/// Dependency rows in multi-row inserts, chunked to stay under the databases' bind limits.
async fn insert_deps(tx: &mut Tx, deps: &[(i64, i64)]) -> Result<(), Error> {
    for chunk in deps.chunks(crate::store::sql::CHUNK) {
        let sql = format!(
            "INSERT INTO task_deps (task_run_id, dep_id) VALUES {}",
            crate::store::sql::value_rows(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (id, dep) in chunk {
            q = q.bind(*id).bind(*dep);
        }
        q.execute(&mut **tx).await.map_err(Error::store)?;
    }
    Ok(())
}

/// The queue keys stored with a task run.
pub(crate) fn keys_of(row: &sqlx::any::AnyRow) -> Result<Vec<String>, Error> {
    let pools: String = row.try_get("pools").map_err(Error::store)?;
    serde_json::from_str(&pools).map_err(|e| Error::corrupt("task pools", e))
}

/// Records which tables the `on_update` tasks of `spec` read, replacing what the job's previous
/// definition recorded.
pub(crate) async fn index_readers(tx: &mut Tx, spec: &JobSpec) -> Result<(), Error> {
    sqlx::query("DELETE FROM trigger_reads WHERE job = $1")
        .bind(&spec.job)
        .execute(&mut **tx)
        .await
        .map_err(Error::store)?;
    for task in
        spec.tasks.iter().filter(|t| t.trigger == Some(switchyard_config::manifest::Trigger::OnUpdate))
    {
        for table in &task.reads {
            sqlx::query(
                "INSERT INTO trigger_reads (table_name, job, task) VALUES ($1, $2, $3) \
                 ON CONFLICT (table_name, job, task) DO NOTHING",
            )
            .bind(table)
            .bind(&spec.job)
            .bind(&task.name)
            .execute(&mut **tx)
            .await
            .map_err(Error::store)?;
        }
    }
    Ok(())
}
