//! What the demo prints: before the run, what is set up; after it, per task where it ran and why,
//! what it wrote and what its expectations caught; the serverless denial as the control plane
//! audited it; the partner API's own view; the tables; and whether everything behaved as the
//! story says it must.
//!
//! A transform's `details` come from the worker as JSON and may be older or newer than this
//! code, so they are read field by field and anything missing is left out, never an error.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::Value;
use switchyard_scheduler::api::types::SubmitResponse;
use switchyard_scheduler::engine::{AuditRecord, RunState, TaskState};
use switchyard_scheduler::views::{AttemptView, RunView, TaskView};
use switchyard_scheduler::{Compute, TaskPlan};

use super::super::render::Style;
use super::inputs::{self, FETCH_JOB, Files, PIPELINE_JOB};
use super::network::Observed;
use super::partner::Partner;
use super::pki;

/// A lake table after the run: `rows` is `None` when it was not written.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) rows: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Facts<'a> {
    pub(crate) submitted: &'a SubmitResponse,
    pub(crate) runs: &'a [RunView],
    /// Denied egress records of the fetch job, or why they could not be read.
    pub(crate) audit: &'a Result<Vec<AuditRecord>, String>,
    pub(crate) partner: &'a Partner,
    pub(crate) tables: &'a [Table],
    pub(crate) interrupted: bool,
    pub(crate) elapsed: Duration,
    /// The pool's egress IP: 127.0.0.2, or 203.0.113.10 in network namespaces.
    pub(crate) egress_ip: std::net::IpAddr,
    /// With `--netns`: the routes and the partner firewall's counters.
    pub(crate) network: Option<Observed>,
}

/// Whether the demo showed what it set out to; each problem says what did not happen.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) problems: Vec<String>,
}

pub(crate) fn intro(
    dir: &Path,
    partner: &Partner,
    files: &Files,
    egress_ip: std::net::IpAddr,
    netns: bool,
    style: Style,
) {
    println!("{}", style.paint_pub("1", "Switchyard demo: the healthcare case on this machine"));
    println!(
        "  partner API    {} (in this process): client certificate from the demo CA required; firewall allows only {egress_ip}",
        partner.url()
    );
    if netns {
        println!(
            "  network        Linux network namespaces: the partner behind an nftables firewall admitting only {egress_ip}, \
             the node holding {egress_ip} on its own interface, workers in a namespace with no route out"
        );
    }
    println!("  directory      {} (wiped and made again on every run)", dir.display());
    println!(
        "  inputs         {}, {} (egress policy), {}/ (manifests)",
        rel(dir, &files.settings),
        rel(dir, &files.egress),
        rel(dir, &files.jobs)
    );
    println!(
        "  certificates   certs/ (a throwaway CA, the API's server certificate, client identity `{}`; keys 0600)",
        pki::IDENTITY
    );
    println!(
        "  running        control plane (state {}), one dedicated node of pool `{}` bound to {egress_ip}, \
         serverless workers on demand\n",
        rel(dir, &files.state_file),
        inputs::POOL
    );
}

fn rel(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

pub(crate) fn verdict(facts: &Facts<'_>) -> Verdict {
    let mut problems = Vec::new();
    if facts.interrupted {
        problems.push("interrupted: the runs were cancelled before they finished".to_owned());
    }
    match facts.runs.iter().find(|r| r.job == PIPELINE_JOB) {
        None => problems.push(format!("the {PIPELINE_JOB} job did not start a run")),
        Some(run) if run.state != RunState::Succeeded => {
            let failed: Vec<String> = run
                .tasks
                .iter()
                .filter(|t| t.state != TaskState::Succeeded)
                .map(|t| {
                    let why = t.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                    let class = t.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
                    format!("{} {}{class}{why}", t.task, t.state.as_str())
                })
                .collect();
            problems.push(format!("the {PIPELINE_JOB} pipeline did not succeed: {}", failed.join("; ")));
        }
        Some(_) => {
            if facts.partner.log.served().get(&facts.egress_ip).copied().unwrap_or(0) == 0 {
                problems.push(format!(
                    "the pipeline succeeded but the partner API served nothing to {}",
                    facts.egress_ip
                ));
            }
        }
    }
    let fetch = facts.runs.iter().find(|r| r.job == FETCH_JOB);
    match fetch.and_then(|r| r.tasks.iter().find(|t| t.task == inputs::FETCH_TASK)) {
        None => problems.push(format!("the {FETCH_JOB} job did not start a run")),
        Some(t) if t.state == TaskState::Succeeded => problems.push(format!(
            "the program on a serverless worker reached the partner API ({}), but serverless workers must have \
             no egress",
            last_line(t).unwrap_or_else(|| "it exited 0".into())
        )),
        Some(t) if t.state != TaskState::Failed => {
            problems.push(format!("the serverless fetch ended {} instead of being refused", t.state.as_str()))
        }
        Some(_) => match facts.audit {
            Err(e) => problems.push(format!("the egress audit could not be read: {e}")),
            Ok(records) if !records.iter().any(|r| r.verdict == "denied") => problems.push(format!(
                "the serverless fetch failed, but the control plane's egress audit holds no denial for {FETCH_JOB}; \
                 see the task's output above for why it failed"
            )),
            Ok(_) => {}
        },
    }
    if let Some(network) = &facts.network {
        network_problems(facts, network, &mut problems);
    }
    Verdict { problems }
}

/// In network namespaces: the program that ignored the proxy must have found no route (and been
/// reported `access`), the workers' namespace must have no route at all, and the partner's
/// firewall must have seen packets from the pool's egress IP only.
fn network_problems(facts: &Facts<'_>, network: &Observed, problems: &mut Vec<String>) {
    let direct = facts
        .runs
        .iter()
        .filter(|r| r.job == FETCH_JOB)
        .flat_map(|r| &r.tasks)
        .find(|t| t.task == inputs::DIRECT_TASK);
    match direct.and_then(|t| t.attempts.last()) {
        None => problems.push(format!("the {} task did not run", inputs::DIRECT_TASK)),
        Some(a) if a.error_class != Some(switchyard_config::FailureClass::Access) => problems.push(format!(
            "the program that ignored the proxy ended {} ({}) instead of finding no route out",
            a.state.as_str(),
            a.message.as_deref().unwrap_or("no message")
        )),
        Some(_) => {}
    }
    if !network.serverless_routes.trim().is_empty() {
        problems.push(format!("the workers' namespace has routes: {}", network.serverless_routes.trim()));
    }
    match &network.firewall {
        Err(e) => problems.push(format!("the partner firewall's counters could not be read: {e}")),
        Ok(counters) => {
            let others: Vec<String> = counters
                .sources
                .keys()
                .filter(|ip| std::net::IpAddr::V4(**ip) != facts.egress_ip)
                .map(ToString::to_string)
                .collect();
            if !others.is_empty() {
                problems.push(format!("the partner's firewall saw packets from {}", others.join(", ")));
            }
        }
    }
}

pub(crate) fn render(facts: &Facts<'_>, verdict: &Verdict, style: Style) -> String {
    let mut out = String::new();
    tasks(&mut out, facts, style);
    denial(&mut out, facts, style);
    partner(&mut out, facts, style);
    tables(&mut out, facts, style);
    if let Some(network) = &facts.network {
        network_section(&mut out, facts, network, style);
    }
    if verdict.problems.is_empty() {
        let _ = writeln!(
            out,
            "{} in {:.1}s: the partner feed was ingested on the dedicated node from its allowlisted IP {}, \
             silver and gold were built serverless from Delta, and the serverless worker's attempt to call the \
             partner was denied and audited{}.",
            style.paint_pub("32", "ok"),
            facts.elapsed.as_secs_f64(),
            facts.egress_ip,
            if facts.network.is_some() { "; its direct connection found no route out" } else { "" }
        );
    } else {
        let _ = writeln!(out, "{} the demo did not go as intended:", style.paint_pub("1;31", "FAILED:"));
        for p in &verdict.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

fn network_section(out: &mut String, facts: &Facts<'_>, network: &Observed, style: Style) {
    let _ = writeln!(out, "{}", style.paint_pub("1", "Network (Linux namespaces)"));
    let routes = |r: &str| if r.trim().is_empty() { "none".to_owned() } else { r.trim().replace('\n', "; ") };
    let _ = writeln!(out, "  node's routes      {}", routes(&network.pool_routes));
    let _ = writeln!(out, "  workers' routes    {}", routes(&network.serverless_routes));
    let direct = facts
        .runs
        .iter()
        .filter(|r| r.job == FETCH_JOB)
        .flat_map(|r| &r.tasks)
        .find(|t| t.task == inputs::DIRECT_TASK)
        .and_then(|t| t.attempts.last());
    if let Some(a) = direct {
        let class = a.error_class.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "  direct connect     {} ({class}): {}",
            a.state.as_str(),
            a.message.as_deref().unwrap_or("")
        );
    }
    match &network.firewall {
        Ok(c) => {
            let sources: Vec<String> =
                c.sources.iter().map(|(ip, n)| format!("{ip} ({n} packets)")).collect();
            let _ = writeln!(
                out,
                "  partner firewall   {} connection(s) admitted, {} packet(s) refused; sources seen: {}\n",
                c.accepted,
                c.refused,
                if sources.is_empty() { "none".to_owned() } else { sources.join(", ") }
            );
        }
        Err(e) => {
            let _ = writeln!(out, "  partner firewall   counters unreadable: {e}\n");
        }
    }
}

fn plan_of<'a>(facts: &'a Facts<'_>, job: &str, name: &str) -> Option<&'a TaskPlan> {
    facts.submitted.jobs.iter().filter(|j| j.job == job).flat_map(|j| &j.tasks).find(|t| t.task == name)
}

fn tasks(out: &mut String, facts: &Facts<'_>, style: Style) {
    let _ = writeln!(out, "{}", style.paint_pub("1", "Tasks"));
    let mut rows: Vec<([String; 6], &RunView, &TaskView)> = Vec::new();
    for run in facts.runs {
        for t in &run.tasks {
            let plan = plan_of(facts, &run.job, &t.task);
            let last = t.attempts.last();
            let compute = match plan.map(|p| p.compute) {
                Some(Compute::Dedicated) => {
                    let pool = plan.and_then(|p| p.pool.clone()).unwrap_or_else(|| t.pools.join("|"));
                    let ip = last
                        .and_then(|a| a.egress_ip.clone())
                        .or_else(|| plan.and_then(|p| p.egress_ips.first()).map(|ip| ip.to_string()))
                        .unwrap_or_else(|| "?".into());
                    format!("dedicated {pool} ({ip})")
                }
                _ => match last {
                    Some(a) => format!("serverless ({})", a.node_id),
                    None => t.compute.clone(),
                },
            };
            let duration = match (t.started_at, t.finished_at) {
                (Some(s), Some(f)) => format!("{:.2}s", (f - s) as f64 / 1000.0),
                _ => "-".into(),
            };
            rows.push((
                [
                    format!("{}/{}", run.job, t.task),
                    plan.map_or_else(|| "?".to_owned(), |p| p.class.as_str().to_owned()),
                    compute,
                    t.state.as_str().to_owned(),
                    last.and_then(rows_written).map_or_else(|| "-".to_owned(), |r| r.to_string()),
                    duration,
                ],
                run,
                t,
            ));
        }
    }
    let heads = ["TASK", "CLASS", "COMPUTE (EGRESS IP)", "STATE", "ROWS", "DURATION"];
    let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
    for (cells, _, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Padding first, colour after: escape codes must not count towards the widths.
    let line = |cells: &[String], paint: &dyn Fn(usize, String) -> String| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = match i {
                    4 => format!("{c:>w$}", w = widths[i]),
                    _ if i + 1 == cells.len() => c.clone(),
                    _ => format!("{c:<w$}", w = widths[i]),
                };
                paint(i, padded)
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let plain = |_: usize, c: String| c;
    let _ = writeln!(out, "  {}", style.paint_pub("2", &line(&heads.map(str::to_owned), &plain)));
    for (cells, run, t) in &rows {
        let code = match t.state {
            TaskState::Succeeded => "32",
            TaskState::Failed | TaskState::TimedOut | TaskState::UpstreamFailed => "1;31",
            _ => "33",
        };
        let paint = |i: usize, c: String| if i == 3 { style.paint_pub(code, &c) } else { c };
        let _ = writeln!(out, "  {}", line(cells, &paint));
        if let Some(plan) = plan_of(facts, &run.job, &t.task) {
            if !plan.reasons.is_empty() {
                let _ = writeln!(out, "      why: {}", plan.reasons.join("; "));
            }
        }
        let last = t.attempts.last();
        if let Some(transform) = last.and_then(|a| a.details.as_ref()).and_then(|d| d.get("transform")) {
            transform_lines(out, transform);
        }
        if matches!(t.state, TaskState::Failed | TaskState::TimedOut | TaskState::UpstreamFailed) {
            let class = t.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
            let _ =
                writeln!(out, "      {}{class}: {}", t.state.as_str(), t.message.as_deref().unwrap_or(""));
            if let Some(tail) = last.and_then(|a| a.log_tail.as_deref()).filter(|t| !t.trim().is_empty()) {
                for l in tail.lines().rev().take(4).collect::<Vec<_>>().into_iter().rev() {
                    let _ = writeln!(out, "        | {l}");
                }
            }
        }
    }
    out.push('\n');
}

/// Refresh mode, inputs read, output version and expectation counts of a transform attempt.
fn transform_lines(out: &mut String, t: &Value) {
    if let Some(refresh) = t.get("refresh") {
        let mode = refresh.get("mode").and_then(Value::as_str).unwrap_or("?");
        let reason =
            refresh.get("reason").and_then(Value::as_str).map(|r| format!(" ({r})")).unwrap_or_default();
        let inputs = t
            .get("input_versions")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| format!("{k} v{}", scalar(v))).collect::<Vec<_>>().join(", "))
            .filter(|s| !s.is_empty())
            .map(|s| format!("; read {s}"))
            .unwrap_or_default();
        let output = t
            .get("output")
            .and_then(|o| {
                Some(format!("; wrote {} v{}", o.get("table")?.as_str()?, scalar(o.get("version")?)))
            })
            .unwrap_or_default();
        let _ = writeln!(out, "      refresh: {mode}{reason}{inputs}{output}");
    }
    if let Some(list) = t.get("expectations").and_then(Value::as_array).filter(|l| !l.is_empty()) {
        let parts: Vec<String> = list
            .iter()
            .map(|e| {
                format!(
                    "{} ({}) {}",
                    e.get("name").and_then(Value::as_str).unwrap_or("?"),
                    e.get("action").and_then(Value::as_str).unwrap_or("?"),
                    e.get("violations").map_or_else(|| "?".to_owned(), scalar)
                )
            })
            .collect();
        let quarantined = t
            .get("quarantined")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .map(|n| format!("; {n} rows quarantined"))
            .unwrap_or_default();
        let _ = writeln!(out, "      expectations (violations): {}{quarantined}", parts.join(" · "));
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows an attempt wrote: a transform's output rows, else the count an ingestion reports as the
/// start of its message ("750 rows in 1 commits …").
fn rows_written(a: &AttemptView) -> Option<u64> {
    let details = a.details.as_ref();
    if let Some(rows) = details.and_then(|d| d.pointer("/transform/output/rows")).and_then(Value::as_u64) {
        return Some(rows);
    }
    if let Some(rows) = details.and_then(|d| d.get("rows")).and_then(Value::as_u64) {
        return Some(rows);
    }
    let mut words = a.message.as_deref()?.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next()? == "rows").then_some(n)
}

fn last_line(t: &TaskView) -> Option<String> {
    let tail = t.attempts.last()?.log_tail.as_deref()?;
    tail.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_owned)
}

fn denial(out: &mut String, facts: &Facts<'_>, style: Style) {
    let _ = writeln!(out, "{}", style.paint_pub("1", "Serverless egress (the control plane's audit)"));
    match facts.audit {
        Err(e) => {
            let _ = writeln!(out, "  could not read the audit: {e}");
        }
        Ok(records) if records.is_empty() => {
            let _ = writeln!(out, "  no denial recorded for {FETCH_JOB}");
        }
        Ok(records) => {
            for r in records {
                let when = Utc
                    .timestamp_millis_opt(r.at)
                    .single()
                    .map_or_else(|| r.at.to_string(), |t| t.format("%H:%M:%S UTC").to_string());
                let _ = writeln!(
                    out,
                    "  {when}  {} → {}  from {}: {}{}{}",
                    r.task.as_deref().unwrap_or("?"),
                    r.destination,
                    r.egress_ip,
                    style.paint_pub("1;31", &r.verdict),
                    r.code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
                    r.reason.as_deref().map(|c| format!(": {c}")).unwrap_or_default(),
                );
            }
        }
    }
    out.push('\n');
}

fn partner(out: &mut String, facts: &Facts<'_>, style: Style) {
    let _ = writeln!(out, "{}", style.paint_pub("1", "Partner API log"));
    let served = facts.partner.log.served();
    if served.is_empty() {
        let _ = writeln!(out, "  served nothing");
    }
    let mut served: Vec<_> = served.into_iter().collect();
    served.sort();
    for (ip, pages) in served {
        let _ = writeln!(
            out,
            "  served {pages} page{} to {ip} (client certificate `{}` from the demo CA)",
            if pages == 1 { "" } else { "s" },
            pki::IDENTITY
        );
    }
    let refused: Vec<_> =
        facts.partner.log.entries().into_iter().filter_map(|e| Some((e.peer, e.refused?))).collect();
    if refused.is_empty() {
        let _ = writeln!(
            out,
            "  refused: nobody (nothing else reached it: the gateway and the serverless proxy stopped it first)"
        );
    }
    for (peer, reason) in refused.iter().take(10) {
        let _ = writeln!(out, "  refused {peer}: {reason}");
    }
    if refused.len() > 10 {
        let _ = writeln!(out, "  … and {} more refusals", refused.len() - 10);
    }
    out.push('\n');
}

fn tables(out: &mut String, facts: &Facts<'_>, style: Style) {
    let _ = writeln!(out, "{}", style.paint_pub("1", "Lake (Delta tables)"));
    let width = facts.tables.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in facts.tables {
        let rows = t.rows.map_or_else(|| "not written".to_owned(), |r| format!("{r} rows"));
        let _ = writeln!(out, "  {:<width$}  {rows:>11}  {}", t.name, t.path);
    }
    out.push('\n');
}
