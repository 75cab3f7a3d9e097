//! What the control plane stores about a submitted job and hands to nodes: each task's placement
//! (from the plan) and the work to do (from the manifest), resolved once at submission.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_config::Inputs;
use switchyard_config::manifest::{Expectation, RetryOn, RunMode, SinkSpec, Source, Task, Trigger};

use crate::plan::{Compute, Plan, PlanError};

/// The pool key of serverless work in the queue (not a valid pool name, so it cannot collide).
pub const SERVERLESS: &str = "*serverless";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job: String,
    pub schedule: Option<String>,
    pub tasks: Vec<TaskSpec>,
    /// The manifest's `sla` (ms): longest a run may take, for the `latency` health check.
    #[serde(default)]
    pub sla_ms: Option<u64>,
    /// The manifest's `expected_interval` (ms): a run must succeed at least this often.
    #[serde(default)]
    pub expected_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskSpec {
    pub name: String,
    pub class: String,
    pub compute: Compute,
    /// Pools whose nodes may run it (dedicated), in preference order; empty for serverless.
    pub pools: Vec<String>,
    pub depends_on: Vec<String>,
    pub continuous: bool,
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    /// The work itself: `kind` (`run`, `ingest`, `transform`) and its fields, as the manifest's
    /// task says (DESIGN §4.2). Kept open in the document: it mirrors the manifest format.
    #[schema(value_type = Object)]
    pub work: Work,
    /// Lake tables the task reads (a transform's SQL), lower-case: a commit to one of them starts
    /// an `on_update` task. Specs stored before this existed read nothing, hence the defaults.
    #[serde(default)]
    pub reads: Vec<String>,
    /// Lake tables the task writes (its sink), lower-case, for `--select TABLE`.
    #[serde(default)]
    pub writes: Vec<String>,
    /// `on_update`: the task also runs on its own when a table it reads changes.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Why the plan placed it where it did, for the dashboard's run view.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Where the task is declared, `FILE:LINE`, so advice about it (the cost report's) can name
    /// the line to change. Absent from specs stored before it was recorded.
    #[serde(default)]
    pub manifest: Option<String>,
    /// `retries.retry_on`: which failures are retried. `None` (and specs stored before it
    /// existed): the default for the kind of work, see [`TaskSpec::retries`].
    #[serde(default)]
    pub retry_on: Option<Vec<RetryOn>>,
}

impl TaskSpec {
    /// A task that runs `command`, with defaults for everything else (no retries, no timeout).
    pub fn command(name: &str, compute: Compute, pools: &[&str], command: &[&str]) -> TaskSpec {
        TaskSpec {
            name: name.to_owned(),
            class: if compute == Compute::Dedicated { "ingest.api" } else { "transform" }.to_owned(),
            compute,
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
            depends_on: vec![],
            continuous: false,
            max_retries: 0,
            backoff_ms: DEFAULT_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            timeout_ms: None,
            work: Work::Run {
                command: command.iter().map(|c| (*c).to_owned()).collect(),
                env: BTreeMap::new(),
                workdir: PathBuf::from("/"),
                declared_workdir: None,
                destinations: vec![],
            },
            reads: vec![],
            writes: vec![],
            trigger: None,
            reasons: vec![],
            manifest: None,
            retry_on: None,
        }
    }

    /// Whether a failure of this kind is worth another attempt: what `retry_on` says, else the
    /// default for the kind of work — ingestion and SQL transforms retry `connectivity` and
    /// `timeout` only (bad data, refused credentials or a missing permission fail the same way
    /// again), a `run` program every failure (its exit status says nothing about the cause).
    /// Also says where the rule comes from, for the run detail.
    pub fn retries(&self, failure: RetryOn) -> (bool, &'static str) {
        match &self.retry_on {
            Some(on) => (on.contains(&failure), "the task's `retry_on`"),
            None => match self.work {
                Work::Run { .. } => (true, "the default for `run` tasks (every failure)"),
                Work::Ingest { .. } | Work::Transform { .. } => (
                    matches!(failure, RetryOn::Connectivity | RetryOn::Timeout),
                    "the default for ingestion and transforms (connectivity and timeout)",
                ),
            },
        }
    }

    /// The queue keys under which the task can be leased.
    pub fn queue_keys(&self) -> Vec<String> {
        match self.compute {
            Compute::Serverless => vec![SERVERLESS.to_owned()],
            Compute::Dedicated => self.pools.clone(),
        }
    }
}

/// The work itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// A program (`run:` in the manifest).
    Run {
        command: Vec<String>,
        env: BTreeMap<String, String>,
        /// Absolute working directory on the machine that planned it: the manifest's folder, or
        /// `run.workdir` under it. Only agents on that machine use it (`switchyard run`, the
        /// local launcher's workers); a node elsewhere resolves `declared_workdir` itself.
        workdir: PathBuf,
        /// `run.workdir` as written in the manifest.
        #[serde(default)]
        declared_workdir: Option<PathBuf>,
        destinations: Vec<String>,
    },
    /// Ingestion from a source (`source:`) into `sink`, executed by the ingestion connectors.
    Ingest { source: Box<Source>, sink: SinkSpec },
    /// SQL over lake tables (`sql:`) into `sink`, checked by `expectations`, executed by
    /// serverless workers. Specs stored before sinks were carried have none: the worker then
    /// fails the attempt with a clear message instead of guessing a table.
    Transform {
        sql: String,
        #[serde(default)]
        sink: Option<SinkSpec>,
        #[serde(default)]
        expectations: Vec<Expectation>,
        /// `engine: distributed`: the Ballista scheduler (`df://HOST:PORT`) the query runs on,
        /// from the planning settings. Absent: the worker runs it itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distributed: Option<String>,
    },
}

const DEFAULT_BACKOFF_MS: u64 = 1_000;
const DEFAULT_MAX_BACKOFF_MS: u64 = 300_000;

/// Builds the specs of every planned job. Errors if the plan has errors: only a clean plan runs.
pub fn job_specs(inputs: &Inputs, plan: &Plan) -> Result<Vec<JobSpec>, Vec<PlanError>> {
    if !plan.errors.is_empty() {
        return Err(plan.errors.clone());
    }
    let mut specs = Vec::new();
    for (m, job_plan) in inputs.manifests.iter().zip(&plan.jobs) {
        let base =
            m.doc.file().canonicalize().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_default();
        let tasks = job_plan
            .tasks
            .iter()
            .filter_map(|tp| {
                let index = m.manifest.tasks.iter().position(|t| t.name == tp.task)?;
                let task = &m.manifest.tasks[index];
                let line = m.doc.locate(&m.task_path(index)).line;
                Some(TaskSpec {
                    manifest: Some(format!("{}:{line}", m.doc.file().display())),
                    name: tp.task.clone(),
                    class: tp.class.as_str().to_owned(),
                    compute: tp.compute,
                    pools: tp.eligible_pools.clone(),
                    depends_on: tp.depends_on.clone(),
                    reasons: tp.reasons.clone(),
                    continuous: task.mode() == RunMode::Continuous,
                    max_retries: task.retries.as_ref().map_or(0, |r| r.max),
                    backoff_ms: task
                        .retries
                        .as_ref()
                        .and_then(|r| r.backoff)
                        .map_or(DEFAULT_BACKOFF_MS, |d| d.as_std().as_millis() as u64),
                    max_backoff_ms: task
                        .retries
                        .as_ref()
                        .and_then(|r| r.max_backoff)
                        .map_or(DEFAULT_MAX_BACKOFF_MS, |d| d.as_std().as_millis() as u64),
                    timeout_ms: task.timeout.map(|d| d.as_std().as_millis() as u64),
                    work: work_of(task, &base, scheduler(inputs, tp)),
                    reads: tp.reads.clone(),
                    writes: task.sink.iter().map(|s| s.table.as_str().to_owned()).collect(),
                    trigger: task.trigger,
                    retry_on: task.retries.as_ref().and_then(|r| r.retry_on.clone()),
                })
            })
            .collect();
        specs.push(JobSpec {
            job: m.manifest.job.clone(),
            schedule: m.manifest.schedule.as_ref().map(ToString::to_string),
            tasks,
            sla_ms: m.manifest.sla.map(|d| d.as_std().as_millis() as u64),
            expected_interval_ms: m.manifest.expected_interval.map(|d| d.as_std().as_millis() as u64),
        });
    }
    Ok(specs)
}

/// For `--select TABLE…`: by job, the names of the tasks that write one of `tables` (jobs with
/// none are absent). A table no task writes is an error naming the tables that can be selected,
/// so a typo never silently runs nothing.
pub fn select_tasks(
    specs: &[JobSpec],
    tables: &[String],
) -> Result<BTreeMap<String, Vec<String>>, crate::Error> {
    let wanted: Vec<String> = tables.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
    let mut selected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in specs {
        for task in &job.tasks {
            if task.writes.iter().any(|w| wanted.contains(w)) {
                selected.entry(job.job.clone()).or_default().push(task.name.clone());
            }
        }
    }
    let written = |t: &String| specs.iter().flat_map(|j| &j.tasks).any(|task| task.writes.contains(t));
    let mut unknown: Vec<String> = wanted.iter().filter(|t| !written(t)).cloned().collect();
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        let mut known: Vec<String> =
            specs.iter().flat_map(|j| &j.tasks).flat_map(|t| t.writes.iter().cloned()).collect();
        known.sort();
        known.dedup();
        return Err(crate::Error::UnknownSelection { unknown, known });
    }
    Ok(selected)
}

/// The Ballista scheduler of a transform planned `engine: distributed`.
fn scheduler(inputs: &Inputs, tp: &crate::plan::TaskPlan) -> Option<String> {
    let ballista = inputs.settings.settings.transform.ballista.as_ref()?;
    (tp.engine == Some(switchyard_config::manifest::Engine::Distributed)).then(|| ballista.scheduler.clone())
}

fn work_of(task: &Task, base: &std::path::Path, distributed: Option<String>) -> Work {
    if let Some(run) = &task.run {
        return Work::Run {
            command: run.command.clone(),
            env: run.env.clone(),
            workdir: run.workdir.as_ref().map_or_else(|| base.to_path_buf(), |w| base.join(w)),
            declared_workdir: run.workdir.clone(),
            destinations: run.destinations.iter().map(ToString::to_string).collect(),
        };
    }
    if let Some(sql) = &task.sql {
        return Work::Transform {
            sql: sql.clone(),
            sink: task.sink.clone(),
            expectations: task.expectations.clone(),
            distributed,
        };
    }
    match (&task.source, &task.sink) {
        (Some(source), Some(sink)) => Work::Ingest { source: Box::new(source.clone()), sink: sink.clone() },
        // A clean plan has a sink on every ingestion (`missing_sink`) and one of source/sql/run.
        _ => Work::Transform { sql: String::new(), sink: None, expectations: vec![], distributed: None },
    }
}
