//! `switchyard plan`: where every task runs and why (DESIGN §4.4–4.5).
//!
//! For each task: derive its needs ([`classify`]), check its class tag against them, find the
//! tables its SQL reads ([`sql`]), link it into its job's DAG ([`dag`]) and, when it is dedicated,
//! choose a pool ([`placement`]). Checks between documents (tables, identities, pools, rules) are
//! made only when the documents they rely on read cleanly, so one typo does not cascade into a
//! page of errors.

mod classify;
mod dag;
mod dedicated;
mod dependencies;
mod placement;
mod sql;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;
use switchyard_config::egress::RuleIndex;
use switchyard_config::manifest::{Engine, LoadedManifest, Task, WorkloadClass};
use switchyard_config::{Code, Diagnostic, Inputs, Seg, sort_in_reading_order};

pub use classify::{Compute, Needs, class_mismatch, derive_needs, source_destinations};

/// The plan: the contract of `switchyard plan --json` (DESIGN §4.5). Field order is the output order.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub jobs: Vec<JobPlan>,
    pub errors: Vec<PlanError>,
}

impl Plan {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobPlan {
    pub job: String,
    pub tasks: Vec<TaskPlan>,
    #[serde(skip)]
    pub schedule: Option<String>,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TaskPlan {
    pub task: String,
    pub class: WorkloadClass,
    pub compute: Compute,
    pub pool: Option<String>,
    #[schema(value_type = Vec<String>)]
    pub egress_ips: Vec<IpAddr>,
    pub destinations: Vec<String>,
    pub depends_on: Vec<String>,
    pub reasons: Vec<String>,
    /// A transform's query engine (absent for other tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "local")]
    pub engine: Option<Engine>,
    /// Every pool the task may run on (the chosen one first); the runtime uses all of them.
    #[serde(skip)]
    pub eligible_pools: Vec<String>,
    /// The lake tables its SQL reads (lower-case), for data-triggered runs.
    #[serde(skip)]
    pub reads: Vec<String>,
}

/// One error of `plan --json`: a [`Diagnostic`] flattened to the documented fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PlanError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub job: Option<String>,
    pub task: Option<String>,
    pub code: Code,
    pub message: String,
    pub hint: String,
}

impl From<&Diagnostic> for PlanError {
    fn from(d: &Diagnostic) -> Self {
        PlanError {
            file: d.file.display().to_string(),
            line: d.location.line,
            column: d.location.column,
            job: d.job.clone(),
            task: d.task.clone(),
            code: d.code,
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// Plans every job of `inputs`. Errors include those found while loading.
pub fn plan(inputs: &Inputs) -> Plan {
    let diagnostics = plan_diagnostics(inputs);
    let (jobs, mut more) = diagnostics;
    let mut all = inputs.diagnostics.clone();
    all.append(&mut more);
    sort_in_reading_order(&mut all, &inputs.files);
    Plan { jobs, errors: all.iter().map(PlanError::from).collect() }
}

/// The job plans and the diagnostics of the cross-document checks.
fn plan_diagnostics(inputs: &Inputs) -> (Vec<JobPlan>, Vec<Diagnostic>) {
    let index = RuleIndex::new(&inputs.policy.policy);
    let ctx = Context {
        inputs,
        index: &index,
        can_place: inputs.settings.clean && inputs.policy.clean,
        refs_ok: inputs.manifests_clean(),
        writers: table_writers(&inputs.manifests),
        faulty: faulty_tasks(&inputs.diagnostics),
        bad_expectations: check_expectations(&inputs.manifests),
        pools_by_ip: pools_by_ip(&inputs.settings.settings),
    };
    // Jobs plan independently: use every core, keep file order.
    let planned: Vec<(JobPlan, Vec<Diagnostic>)> = inputs
        .manifests
        .par_iter()
        .enumerate()
        .map(|(j, m)| {
            let mut out = Vec::new();
            let job = ctx.plan_job(j, m, &mut out);
            (job, out)
        })
        .collect();
    let mut out = Vec::new();
    let jobs = planned
        .into_iter()
        .map(|(job, diagnostics)| {
            out.extend(diagnostics);
            job
        })
        .collect();
    (jobs, out)
}

struct Context<'a> {
    inputs: &'a Inputs,
    index: &'a RuleIndex,
    /// Settings and policy read cleanly, so placement verdicts can be trusted.
    can_place: bool,
    /// Every manifest read cleanly, so a table with no writer is really unknown.
    refs_ok: bool,
    /// table → (manifest, task) of each task writing it.
    writers: HashMap<String, Vec<(usize, usize)>>,
    /// (file, index in its `tasks:` list) of every task with an error of its own: such a task is
    /// left out of the plan rather than planned from a half-read declaration.
    faulty: HashSet<(PathBuf, usize)>,
    /// Expectation checks that are not valid SQL expressions, by text. The same check (`id IS NOT
    /// NULL`) recurs across many tasks; each distinct text is parsed once.
    bad_expectations: HashMap<&'a str, sql::SqlProblem>,
    /// Egress IP → indexes of the pools that have it, so placement looks only at pools that can
    /// possibly qualify.
    pools_by_ip: HashMap<IpAddr, Vec<usize>>,
}

fn check_expectations(manifests: &[LoadedManifest]) -> HashMap<&str, sql::SqlProblem> {
    let distinct: HashSet<&str> = manifests
        .iter()
        .flat_map(|m| &m.manifest.tasks)
        .flat_map(|t| &t.expectations)
        .map(|e| e.check.as_str())
        .collect();
    distinct.into_par_iter().filter_map(|text| sql::check_expression(text).err().map(|p| (text, p))).collect()
}

fn pools_by_ip(settings: &switchyard_config::settings::Settings) -> HashMap<IpAddr, Vec<usize>> {
    let mut map: HashMap<IpAddr, Vec<usize>> = HashMap::new();
    for (i, pool) in settings.pools.iter().enumerate() {
        for ip in &pool.egress_ips {
            map.entry(*ip).or_default().push(i);
        }
    }
    map
}

fn faulty_tasks(diagnostics: &[Diagnostic]) -> HashSet<(PathBuf, usize)> {
    diagnostics
        .iter()
        .filter_map(|d| {
            let rest = d.path.strip_prefix("tasks[")?;
            let index = rest.split(']').next()?.parse().ok()?;
            Some((d.file.clone(), index))
        })
        .collect()
}

fn table_writers(manifests: &[LoadedManifest]) -> HashMap<String, Vec<(usize, usize)>> {
    let mut writers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (j, m) in manifests.iter().enumerate() {
        for (t, task) in m.manifest.tasks.iter().enumerate() {
            if let Some(sink) = &task.sink {
                writers.entry(sink.table.as_str().to_owned()).or_default().push((j, t));
            }
        }
    }
    writers
}

/// Per-task facts gathered before the DAG is built.
struct TaskFacts {
    reads: Vec<sql::TableRef>,
}

impl Context<'_> {
    fn plan_job(&self, j: usize, m: &LoadedManifest, out: &mut Vec<Diagnostic>) -> JobPlan {
        let job = &m.manifest.job;
        let mut tasks = Vec::new();
        let mut facts = Vec::new();
        let faulty: Vec<bool> = (0..m.manifest.tasks.len())
            .map(|t| self.faulty.contains(&(m.doc.file().to_path_buf(), m.task_index[t])))
            .collect();
        for (t, task) in m.manifest.tasks.iter().enumerate() {
            let mut diags = Vec::new();
            let (plan, fact) = self.plan_task(m, t, task, &mut diags);
            // A faulty task's SQL errors are its own; anything else would be a cascade.
            diags.retain(|d| !faulty[t] || d.code == Code::Syntax);
            out.extend(diags.into_iter().map(|d| d.for_task(job, Some(&task.name))));
            tasks.push(plan);
            facts.push(fact);
        }
        let deps = self.link(j, m, &facts, &mut tasks, out);
        self.report_cycles(m, &deps, out);
        let tasks = tasks.into_iter().zip(faulty).filter(|(_, f)| !f).map(|(t, _)| t).collect();
        JobPlan {
            job: job.clone(),
            tasks,
            schedule: m.manifest.schedule.as_ref().map(ToString::to_string),
            file: m.doc.file().to_path_buf(),
        }
    }

    fn plan_task(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        out: &mut Vec<Diagnostic>,
    ) -> (TaskPlan, TaskFacts) {
        let doc = &m.doc;
        let base = m.task_path(t);
        let at = |key: &'static str| [base[0], base[1], Seg::Key(key)];
        let needs = derive_needs(&m.manifest.job, task);
        let compute = match (task.compute, needs.compute()) {
            // Serverless workers have no egress: a task that connects out cannot be sent there.
            (Some(Compute::Serverless), Compute::Dedicated) => {
                let destinations: Vec<String> = needs.destinations.iter().map(ToString::to_string).collect();
                out.push(
                    doc.error(
                        Code::ClassMismatch,
                        &at("compute"),
                        format!(
                            "task declares `compute: serverless` but its {} connects to {}; serverless workers have no egress",
                            needs.declared,
                            destinations.join(", ")
                        ),
                    )
                    .with_hint("remove `compute`, or move the external read into an ingest task that writes a table this task reads"),
                );
                Compute::Dedicated
            }
            // Widening a lake-only task to a pool's node is the manifest's choice (cost, not egress).
            (Some(declared), _) => declared,
            (None, needed) => needed,
        };
        let mut reasons = Vec::new();
        match task.class {
            Some(declared) => {
                if let Some((message, hint)) = class_mismatch(declared, &needs) {
                    out.push(doc.error(Code::ClassMismatch, &at("class"), message).with_hint(hint));
                }
            }
            None => reasons.push(format!(
                "class inferred as {} from its {}",
                needs.inferred.as_str(),
                needs.declared
            )),
        }
        let reads = self.check_sql(m, t, task, out);
        let mut plan = TaskPlan {
            task: task.name.clone(),
            class: needs.inferred,
            compute,
            pool: None,
            egress_ips: vec![],
            destinations: needs.destinations.iter().map(ToString::to_string).collect(),
            depends_on: vec![],
            reasons: vec![],
            engine: None,
            eligible_pools: vec![],
            reads: reads.iter().map(|r| r.name.clone()).collect(),
        };
        self.choose_engine(m, t, task, &mut plan, out);
        match compute {
            Compute::Serverless => {
                reasons.insert(
                    0,
                    if task.run.is_some() {
                        "declares no destinations: no egress needed".to_owned()
                    } else {
                        "reads only lake tables".to_owned()
                    },
                );
                if let Some(pool) = &task.pool {
                    out.push(
                        doc.error(
                            Code::ClassMismatch,
                            &at("pool"),
                            format!("task is pinned to pool `{pool}` but runs serverless"),
                        )
                        .with_hint(
                            "add `compute: dedicated` to run it on that pool's nodes (it still gets no egress there), \
                             or remove `pool:`",
                        ),
                    );
                }
            }
            Compute::Dedicated if needs.destinations.is_empty() => {
                self.place_without_destinations(m, t, task, &mut plan, &mut reasons, out)
            }
            Compute::Dedicated => self.place_task(m, t, task, &needs, &mut plan, &mut reasons, out),
        }
        plan.reasons.extend(reasons);
        (plan, TaskFacts { reads })
    }

    /// A transform's engine: its own `engine:`, else the settings' `[transform] engine`.
    /// `distributed` needs a Ballista scheduler in the settings; without one there is nowhere to
    /// run it, and the plan says so.
    fn choose_engine(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        plan: &mut TaskPlan,
        out: &mut Vec<Diagnostic>,
    ) {
        if task.sql.is_none() {
            return;
        }
        let transform = &self.inputs.settings.settings.transform;
        let engine = task.engine.unwrap_or(transform.engine);
        plan.engine = Some(engine);
        if engine == Engine::Local {
            return;
        }
        let whose = match task.engine {
            Some(_) => "the task asks for `engine: distributed`",
            None => "the settings' `[transform] engine` is `distributed`",
        };
        match &transform.ballista {
            Some(ballista) => plan.reasons.push(format!(
                "{whose}: the query runs on the Ballista cluster at {}; this worker pins the inputs, checks expectations and commits the output",
                ballista.scheduler
            )),
            // A distributed default without a scheduler is the settings' error, reported there.
            None if task.engine.is_none() => {}
            None => {
                let base = m.task_path(t);
                let at = [base[0], base[1], Seg::Key("engine")];
                out.push(
                    m.doc
                        .error(Code::Unplaceable, &at, format!("{whose} but the settings name no Ballista scheduler"))
                        .with_hint(
                            "add `[transform.ballista] scheduler = \"df://HOST:50050\"` to the settings, or remove \
                             `engine: distributed` to run it on one serverless worker",
                        ),
                );
            }
        }
    }

    /// Parses the task's SQL and expectations; returns the tables it reads.
    fn check_sql(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        out: &mut Vec<Diagnostic>,
    ) -> Vec<sql::TableRef> {
        let doc = &m.doc;
        let base = m.task_path(t);
        let mut reads = Vec::new();
        if let Some(text) = &task.sql {
            let path = [base[0], base[1], Seg::Key("sql")];
            match sql::tables_read(text) {
                Ok(tables) => reads = tables,
                Err(p) => out.push(
                    doc.error(Code::Syntax, &path, p.message)
                        .with_hint(p.hint)
                        .at(sql::file_position(doc, &path, p.at)),
                ),
            }
        }
        for (e, exp) in task.expectations.iter().enumerate() {
            let path = [base[0], base[1], Seg::Key("expectations"), Seg::Index(e), Seg::Key("check")];
            if let Some(p) = self.bad_expectations.get(exp.check.as_str()) {
                let p = p.clone();
                out.push(
                    doc.error(Code::Syntax, &path, format!("expectation `{}`: {}", exp.name, p.message))
                        .with_hint(p.hint)
                        .at(sql::file_position(doc, &path, p.at)),
                );
            }
        }
        reads
    }
}
