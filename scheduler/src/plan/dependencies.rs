//! Linking a job's tasks by the tables they read and write, checking that every table read exists,
//! and reporting dependency cycles.

use switchyard_config::manifest::LoadedManifest;
use switchyard_config::{Code, Diagnostic, Seg, suggest};

use super::dag::{Because, Deps, find_cycles};
use super::sql;
use super::{Context, TaskFacts, TaskPlan};

impl Context<'_> {
    /// Builds the job's dependency lists (into `tasks[..].depends_on`, in file order) and reports
    /// tables that nothing writes.
    pub(super) fn link(
        &self,
        j: usize,
        m: &LoadedManifest,
        facts: &[TaskFacts],
        tasks: &mut [TaskPlan],
        out: &mut Vec<Diagnostic>,
    ) -> Deps {
        let doc = &m.doc;
        let job = &m.manifest.job;
        let mut deps: Deps = vec![Vec::new(); facts.len()];
        for (t, fact) in facts.iter().enumerate() {
            let task = &m.manifest.tasks[t];
            for table in &fact.reads {
                let writers = self.writers.get(&table.name).map(Vec::as_slice).unwrap_or_default();
                for &(wj, wt) in writers {
                    if wj == j && wt != t {
                        deps[t].push((wt, Because::Table(table.name.clone())));
                    } else if wj != j {
                        let other = &self.inputs.manifests[wj].manifest;
                        tasks[t].reasons.push(format!(
                            "reads {}, written by task {} of job {}",
                            table.name, other.tasks[wt].name, other.job
                        ));
                    }
                }
                let external = m.manifest.external_tables.iter().any(|e| e.as_str() == table.name);
                if writers.is_empty() && !external && self.refs_ok {
                    let base = m.task_path(t);
                    let path = [base[0], base[1], Seg::Key("sql")];
                    let known = self
                        .writers
                        .keys()
                        .map(String::as_str)
                        .chain(m.manifest.external_tables.iter().map(|e| e.as_str()));
                    out.push(
                        doc.error(Code::UnknownTable, &path, format!("task `{}` reads table `{}`, which no task writes", task.name, table.name))
                            .with_hint(format!(
                                "{}if it already exists in the lake, list it under `external_tables:` of job `{job}`",
                                suggest::did_you_mean(&table.name, known)
                            ))
                            .at(sql::file_position(doc, &path, Some((table.line, table.column))))
                            .for_task(job, Some(&task.name)),
                    );
                }
            }
            for dep in &task.depends_on {
                if let Some(d) = m.manifest.tasks.iter().position(|x| &x.name == dep)
                    && d != t
                    && !deps[t].iter().any(|(x, _)| *x == d)
                {
                    deps[t].push((d, Because::Explicit));
                }
            }
        }
        for (t, list) in deps.iter().enumerate() {
            let mut order: Vec<usize> = list.iter().map(|(d, _)| *d).collect();
            order.sort_unstable();
            order.dedup();
            tasks[t].depends_on = order.into_iter().map(|d| m.manifest.tasks[d].name.clone()).collect();
        }
        deps
    }

    pub(super) fn report_cycles(&self, m: &LoadedManifest, deps: &Deps, out: &mut Vec<Diagnostic>) {
        let names = |i: usize| m.manifest.tasks[i].name.as_str();
        for cycle in find_cycles(deps) {
            let first = cycle[0];
            let mut steps = Vec::new();
            let mut explicit_first = false;
            for (k, &a) in cycle.iter().enumerate() {
                let b = cycle[(k + 1) % cycle.len()];
                let why = deps[a].iter().find(|(x, _)| *x == b).map(|(_, w)| w.clone());
                steps.push(match why {
                    Some(Because::Table(t)) => format!("{} reads {t} written by {}", names(a), names(b)),
                    _ => {
                        if k == 0 {
                            explicit_first = true;
                        }
                        format!("{} depends_on {}", names(a), names(b))
                    }
                });
            }
            let path: Vec<&str> = cycle.iter().chain(std::iter::once(&first)).map(|&i| names(i)).collect();
            let base = m.task_path(first);
            let field = if explicit_first {
                "depends_on"
            } else if m.manifest.tasks[first].sql.is_some() {
                "sql"
            } else {
                "name"
            };
            out.push(
                m.doc
                    .error(
                        Code::Cycle,
                        &[base[0], base[1], Seg::Key(field)],
                        format!("dependency cycle: {}", path.join(" → ")),
                    )
                    .with_hint(format!("{}; remove one of these dependencies", steps.join("; ")))
                    .for_task(&m.manifest.job, Some(names(first))),
            );
        }
    }
}
