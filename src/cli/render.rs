//! Human output: the plan as a table grouped by job with reasons, and errors as
//! `FILE:LINE:COL: error[code]: message` with the source line, a caret and a hint. Colour only
//! on a terminal, and never when `NO_COLOR` is set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use switchyard_scheduler::{Compute, Plan, PlanError};

#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    color: bool,
}

impl Style {
    pub(super) fn detect(is_terminal: bool) -> Self {
        Style { color: is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub(super) fn paint_pub(self, code: &str, text: &str) -> String {
        self.paint(code, text)
    }

    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    fn red(self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn green(self, t: &str) -> String {
        self.paint("32", t)
    }
    fn cyan(self, t: &str) -> String {
        self.paint("36", t)
    }
    fn yellow(self, t: &str) -> String {
        self.paint("33", t)
    }
}

pub(super) fn render_plan(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    for job in &plan.jobs {
        let mut header = format!("job {}", style.bold(&job.job));
        let mut facts = vec![job.file.display().to_string()];
        if let Some(s) = &job.schedule {
            facts.push(format!("schedule {s}"));
        }
        let _ = write!(header, "  {}", style.dim(&format!("({})", facts.join(", "))));
        let _ = writeln!(out, "{header}");
        let rows: Vec<[String; 6]> = job
            .tasks
            .iter()
            .map(|t| {
                [
                    t.task.clone(),
                    t.class.as_str().to_owned(),
                    t.compute.as_str().to_owned(),
                    t.pool.clone().unwrap_or_else(|| "-".into()),
                    if t.egress_ips.is_empty() {
                        "-".into()
                    } else {
                        t.egress_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                    },
                    if t.depends_on.is_empty() { "-".into() } else { t.depends_on.join(", ") },
                ]
            })
            .collect();
        if rows.is_empty() {
            let _ = writeln!(out, "  {}\n", style.dim("no task could be planned; see the errors"));
            continue;
        }
        let heads = ["TASK", "CLASS", "COMPUTE", "POOL", "EGRESS IP", "DEPENDS ON"];
        let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    let _ = write!(s, "  {cell}");
                } else {
                    let _ = write!(s, "  {cell:<w$}", w = widths[i]);
                }
            }
            s
        };
        let _ = writeln!(out, "{}", style.dim(&line(&heads.map(str::to_owned))));
        for (task, row) in job.tasks.iter().zip(rows) {
            let mut text = line(&row);
            if style.color {
                let compute = match task.compute {
                    Compute::Dedicated => style.yellow("dedicated"),
                    Compute::Serverless => style.green("serverless"),
                };
                text = text.replacen(task.compute.as_str(), &compute, 1);
            }
            let _ = writeln!(out, "{text}");
            for reason in &task.reasons {
                let _ = writeln!(out, "    {} {}", style.dim("·"), style.dim(reason));
            }
        }
        out.push('\n');
    }
    out
}

/// One line: jobs, tasks, where they run, and the error count by code.
pub(super) fn summary(plan: &Plan) -> String {
    let tasks: Vec<_> = plan.jobs.iter().flat_map(|j| &j.tasks).collect();
    let dedicated = tasks.iter().filter(|t| t.compute == Compute::Dedicated).count();
    let pools: BTreeSet<&str> = tasks.iter().filter_map(|t| t.pool.as_deref()).collect();
    let mut s = format!(
        "{} job{}, {} task{}: {dedicated} dedicated on {} pool{}, {} serverless",
        plan.jobs.len(),
        plural(plan.jobs.len()),
        tasks.len(),
        plural(tasks.len()),
        pools.len(),
        plural(pools.len()),
        tasks.len() - dedicated
    );
    if plan.errors.is_empty() {
        s.push_str("; no errors");
    } else {
        let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &plan.errors {
            *by_code.entry(e.code.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by_code.iter().map(|(c, n)| format!("{n} {c}")).collect();
        let _ =
            write!(s, "; {} error{} ({})", plan.errors.len(), plural(plan.errors.len()), counts.join(", "));
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(super) fn render_errors(errors: &[PlanError], style: Style) -> String {
    let mut sources: HashMap<&str, Option<String>> = HashMap::new();
    let mut out = String::new();
    for e in errors {
        let place = if e.line == 0 { e.file.clone() } else { format!("{}:{}:{}", e.file, e.line, e.column) };
        let _ = writeln!(
            out,
            "{}: {}: {}",
            style.bold(&place),
            style.red(&format!("error[{}]", e.code.as_str())),
            style.bold(&e.message)
        );
        let source = sources.entry(e.file.as_str()).or_insert_with(|| std::fs::read_to_string(&e.file).ok());
        if let Some(line) = source.as_deref().and_then(|s| s.lines().nth((e.line as usize).wrapping_sub(1)))
            && line.len() <= 200
        {
            let number = e.line.to_string();
            let pad = " ".repeat(number.len());
            let caret_at: String = line
                .chars()
                .take((e.column as usize).saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, " {} {} {line}", style.dim(&number), style.dim("|"));
            let _ = writeln!(out, " {pad} {} {caret_at}{}", style.dim("|"), style.red("^"));
        }
        if !e.hint.is_empty() {
            let _ = writeln!(out, "  {} {}", style.cyan("hint:"), e.hint);
        }
    }
    out
}
