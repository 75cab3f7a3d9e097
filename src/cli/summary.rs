//! Runs as a person reads them: one block per run, one row per task with where it ran, attempts,
//! duration and outcome, then why anything failed or is still waiting.

use std::fmt::Write;

use chrono::{TimeZone, Utc};
use switchyard_scheduler::engine::TaskState;
use switchyard_scheduler::views::RunView;

use super::render::Style;

fn when(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn secs(ms: i64) -> String {
    if ms < 10_000 { format!("{:.2}s", ms as f64 / 1000.0) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

pub(crate) fn render_runs(runs: &[RunView], style: Style) -> String {
    let mut out = String::new();
    for run in runs {
        let took = run.finished_at.map(|f| format!(", {}", secs(f - run.created_at))).unwrap_or_default();
        let _ = writeln!(
            out,
            "run {}  job {}  {}  ({}, {}{took})",
            run.id,
            style_bold(style, &run.job),
            state_word(run.state.as_str(), style),
            run.trigger,
            when(run.created_at)
        );
        if run.options.full_refresh || !run.options.input_versions.is_empty() {
            let mut parts = Vec::new();
            if run.options.full_refresh {
                parts.push("full refresh".to_owned());
            }
            if !run.options.input_versions.is_empty() {
                let pinned: Vec<String> =
                    run.options.input_versions.iter().map(|(t, v)| format!("{t}@{v}")).collect();
                parts.push(format!("reads {}", pinned.join(", ")));
            }
            let _ = writeln!(out, "  {}", style_dim(style, &parts.join("; ")));
        }
        let rows: Vec<[String; 6]> = run
            .tasks
            .iter()
            .map(|t| {
                let last = t.attempts.last();
                let node = last.map_or_else(
                    || "-".to_owned(),
                    |a| match &a.egress_ip {
                        Some(ip) => format!("{} ({ip})", a.node_id),
                        None => a.node_id.clone(),
                    },
                );
                let duration = match (t.started_at, t.finished_at) {
                    (Some(s), Some(f)) => secs(f - s),
                    _ => "-".into(),
                };
                [
                    t.task.clone(),
                    t.compute.clone(),
                    node,
                    t.attempts.len().to_string(),
                    duration,
                    t.state.as_str().to_owned(),
                ]
            })
            .collect();
        let heads = ["TASK", "COMPUTE", "NODE (EGRESS IP)", "ATTEMPTS", "DURATION", "OUTCOME"];
        let mut widths: Vec<usize> = heads.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(
                    |(i, c)| if i + 1 == cells.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) },
                )
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(out, "  {}", style_dim(style, &line(&heads.map(str::to_owned))));
        for (task, row) in run.tasks.iter().zip(&rows) {
            let mut text = line(row);
            let state = task.state.as_str();
            text.truncate(text.len() - state.len());
            let _ = writeln!(out, "  {text}{}", state_word(state, style));
            if let Some(w) = &task.waiting {
                if matches!(task.state, TaskState::Queued | TaskState::Retrying) {
                    let _ = writeln!(out, "    · waiting: {w}");
                }
            }
            if let Some(details) = task.attempts.last().and_then(|a| a.details.as_ref()) {
                for l in transform_lines(details) {
                    let _ = writeln!(out, "    · {l}");
                }
            }
            if task.attempts.len() > 1 {
                let history: Vec<String> = task
                    .attempts
                    .iter()
                    .map(|a| {
                        let class = a.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
                        format!("{} on {}{class}", a.state.as_str(), a.node_id)
                    })
                    .collect();
                let _ = writeln!(out, "    · attempts: {}", history.join(", "));
            }
            if matches!(task.state, TaskState::Failed | TaskState::TimedOut | TaskState::UpstreamFailed) {
                let class = task.error_class.map(|c| format!(" ({c})")).unwrap_or_default();
                let message = task.message.clone().unwrap_or_default();
                let _ = writeln!(out, "    · {}{class}: {message}", task.state.as_str());
                if let Some(retry) = task.attempts.last().and_then(|a| a.retry.as_deref()) {
                    let _ = writeln!(out, "    · {retry}");
                }
                if let Some(tail) =
                    task.attempts.last().and_then(|a| a.log_tail.as_deref()).filter(|t| !t.trim().is_empty())
                {
                    for l in tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                        let _ = writeln!(out, "      | {l}");
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

/// What a transform attempt reported (`details.transform`): refresh mode and why, versions read
/// and written, one line per expectation. Nothing for other details, so an agent may report
/// more without breaking this.
fn transform_lines(details: &serde_json::Value) -> Vec<String> {
    let Some(t) = details.get("transform") else { return vec![] };
    let mut lines = Vec::new();
    if let Some(refresh) = t.get("refresh") {
        let mode = refresh.get("mode").and_then(|m| m.as_str()).unwrap_or("?");
        match refresh.get("reason").and_then(|r| r.as_str()).filter(|r| !r.is_empty()) {
            Some(reason) => lines.push(format!("refresh: {mode} ({reason})")),
            None => lines.push(format!("refresh: {mode}")),
        }
    }
    let inputs: Vec<String> = t
        .get("input_versions")
        .and_then(|v| v.as_object())
        .map(|m| m.iter().map(|(table, v)| format!("{table}@{v}")).collect())
        .unwrap_or_default();
    let output = t.get("output").and_then(|o| {
        let table = o.get("table")?.as_str()?;
        let version = o.get("version").and_then(|v| v.as_i64()).map(|v| format!("@{v}")).unwrap_or_default();
        let rows = o.get("rows").and_then(|r| r.as_i64()).map(|r| format!(" ({r} rows)")).unwrap_or_default();
        Some(format!("{table}{version}{rows}"))
    });
    match (inputs.is_empty(), output) {
        (false, Some(out)) => lines.push(format!("read {} → wrote {out}", inputs.join(", "))),
        (false, None) => lines.push(format!("read {}", inputs.join(", "))),
        (true, Some(out)) => lines.push(format!("wrote {out}")),
        (true, None) => {}
    }
    for e in t.get("expectations").and_then(|e| e.as_array()).into_iter().flatten() {
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let action = e.get("action").and_then(|a| a.as_str()).map(|a| format!(" ({a})")).unwrap_or_default();
        let n = e.get("violations").and_then(|v| v.as_i64()).unwrap_or(0);
        lines.push(format!("expectation {name}{action}: {n} violation{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(q) = t.get("quarantined").and_then(|q| q.as_i64()).filter(|q| *q > 0) {
        lines.push(format!("quarantined: {q} row{}", if q == 1 { "" } else { "s" }));
    }
    if let Some(m) = t.get("memory") {
        let field = |k: &str| m.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        lines.push(format!(
            "memory: query peak {} of a {} budget, {} spilled",
            mib(field("peak_pool_bytes")),
            mib(field("budget_bytes")),
            mib(field("spilled_bytes"))
        ));
    }
    lines
}

fn state_word(state: &str, style: Style) -> String {
    let code = match state {
        "succeeded" => "32",
        "failed" | "timed_out" | "upstream_failed" => "1;31",
        "cancelled" => "33",
        _ => "36",
    };
    style.paint_pub(code, state)
}

fn style_bold(style: Style, t: &str) -> String {
    style.paint_pub("1", t)
}

fn style_dim(style: Style, t: &str) -> String {
    style.paint_pub("2", t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_details_read_as_lines() {
        let details = serde_json::json!({"transform": {
            "refresh": {"mode": "incremental", "reason": "2 new versions of bronze.x"},
            "input_versions": {"bronze.x": 3},
            "output": {"table": "silver.x", "version": 4, "rows": 100},
            "expectations": [
                {"name": "positive_amount", "action": "drop", "violations": 3},
                {"name": "has_id", "action": "warn", "violations": 1}
            ],
            "quarantined": 2
        }});
        assert_eq!(
            transform_lines(&details),
            [
                "refresh: incremental (2 new versions of bronze.x)",
                "read bronze.x@3 → wrote silver.x@4 (100 rows)",
                "expectation positive_amount (drop): 3 violations",
                "expectation has_id (warn): 1 violation",
                "quarantined: 2 rows",
            ]
        );
        assert!(transform_lines(&serde_json::json!({"other": 1})).is_empty());
    }
}
