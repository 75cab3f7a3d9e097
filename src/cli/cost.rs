//! `switchyard cost [--since 7d] [--json]`: the control plane's cost report (the model is in
//! `switchyard_scheduler::views::cost`), as text with its arithmetic, or as the API's JSON.

use std::fmt::Write;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use switchyard_scheduler::views::cost::{DEFAULT_SINCE, fmt_money};
use switchyard_scheduler::views::{CostReport, Scenario};

use super::ClientArgs;
use super::control::client_for;
use super::render::Style;

#[derive(Debug, Args)]
pub(crate) struct CostArgs {
    /// How far back to look: a duration with a unit (7d, 24h, 90m).
    #[arg(long, default_value = DEFAULT_SINCE, value_name = "DURATION")]
    since: String,
    /// Print the report as JSON (what GET /api/v1/cost returns).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn run(args: CostArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = switchyard_scheduler::views::cost::parse_since(&args.since) {
        if let switchyard_scheduler::Error::BadRequest { hint, .. } = &e {
            eprintln!("error: {e}\n  hint: {hint}");
        } else {
            eprintln!("error: {e}");
        }
        return Ok(ExitCode::from(2));
    }
    let (client, _) = client_for(&args.client)?;
    let report = client.cost(&args.since).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, Style::detect(std::io::stdout().is_terminal())));
    }
    Ok(ExitCode::SUCCESS)
}

fn time(ms: i64) -> String {
    chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

pub(crate) fn render(r: &CostReport, style: Style) -> String {
    let mut out = String::new();
    let bold = |t: &str| style.paint_pub("1", t);
    let dim = |t: &str| style.paint_pub("2", t);
    let _ = writeln!(
        out,
        "{} over the last {} ({} → {}, {} h)",
        bold("cost"),
        r.since,
        time(r.from),
        time(r.until),
        r.window_hours
    );
    let i = &r.inputs;
    let _ = writeln!(
        out,
        "{}",
        dim(&format!(
            "prices: {} per dedicated node-hour, {} per serverless vCPU-second, {} vCPU per worker; cold start {} (median of {})",
            i.dedicated_node_hour,
            i.serverless_vcpu_second,
            i.vcpus_per_worker,
            i.cold_start_seconds.map_or_else(|| "not measured".to_owned(), |c| format!("{c} s")),
            i.cold_starts_measured
        ))
    );
    let _ = writeln!(out);
    for (name, s) in
        [("what ran", &r.actual), ("all dedicated", &r.all_dedicated), ("all serverless", &r.all_serverless)]
    {
        scenario(&mut out, name, s, style);
    }
    let savings = [("all dedicated", r.all_dedicated.total), ("all serverless", r.all_serverless.total)];
    for (name, total) in savings {
        let diff = total - r.actual.total;
        let verdict = if diff > 0.0 {
            format!("hybrid saves {} against {name}", fmt_money(diff))
        } else if diff < 0.0 {
            format!("{name} would cost {} less", fmt_money(-diff))
        } else {
            format!("{name} would cost the same")
        };
        let _ = writeln!(out, "{verdict}");
    }

    if !r.nodes.is_empty() {
        let _ = writeln!(out, "\n{}", bold("nodes and workers (alive time in the window, idle included)"));
        for n in &r.nodes {
            let what = match (&n.pool, n.kind.as_str()) {
                (Some(pool), _) => format!("{} node, pool {pool}", n.kind),
                (None, kind) => format!("{kind} worker"),
            };
            let busy = if n.seconds > 0.0 {
                n.busy_seconds / (n.seconds * n.slots.max(1) as f64) * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "  {}  {}  {} → {}  busy {:.0}% of {} slot(s)  {}",
                n.id,
                dim(&what),
                time(n.counted_from),
                time(n.counted_until),
                busy,
                n.slots,
                n.arithmetic
            );
        }
    }
    if !r.tasks.is_empty() {
        let _ = writeln!(out, "\n{}", bold("tasks (estimates on either compute)"));
        for t in &r.tasks {
            let _ = writeln!(
                out,
                "  {}.{}  {}{}  {} attempt(s), busy {} s ({:.1}% of the window)",
                t.job,
                t.task,
                t.compute,
                if t.continuous { ", continuous" } else { "" },
                t.attempts,
                t.busy_seconds,
                t.busy_share * 100.0
            );
            let _ = writeln!(out, "      serverless: {}", t.serverless_arithmetic);
            let _ = writeln!(out, "      dedicated:  {}", t.dedicated_arithmetic);
            if let Some(why) = &t.why_not_serverless {
                let _ = writeln!(out, "      {}", dim(&format!("not serverless: {why}")));
            }
        }
    }
    let _ = writeln!(out, "\n{}", bold("recommendations"));
    if r.recommendations.is_empty() {
        let _ = writeln!(out, "  none: every task runs on the cheaper compute it may use");
    }
    for rec in &r.recommendations {
        let tag = if rec.allowed { "→" } else { "✗" };
        let _ = writeln!(out, "  {tag} {}", rec.message);
        if let Some(change) = &rec.change {
            let _ = writeln!(out, "      change: {change}");
        }
    }
    let _ = writeln!(out, "\n{}", dim("assumptions:"));
    for a in &r.assumptions {
        let _ = writeln!(out, "{}", dim(&format!("  - {a}")));
    }
    let _ = writeln!(
        out,
        "{}",
        dim(&format!(
            "inputs: the nodes above (`switchyard cost --json` lists their intervals) and the attempts in `switchyard runs --since {} --json`, clipped to the window",
            r.since
        ))
    );
    out
}

fn scenario(out: &mut String, name: &str, s: &Scenario, style: Style) {
    let _ = writeln!(
        out,
        "{}  {}",
        style.paint_pub("1", &format!("{name:<15}")),
        style.paint_pub("1", &fmt_money(s.total))
    );
    let _ = writeln!(out, "  dedicated:  {}", s.dedicated.arithmetic);
    let _ = writeln!(out, "  serverless: {}", s.serverless.arithmetic);
    let _ = writeln!(out, "  total:      {}", s.arithmetic);
    if !s.allowed {
        let _ = writeln!(out, "  {}", style.paint_pub("33", "hypothetical: not every task may run this way"));
        for b in &s.blocked {
            let _ = writeln!(out, "    {}.{}: {}", b.job, b.task, b.reason);
        }
    }
    for n in &s.notes {
        let _ = writeln!(out, "  {}", style.paint_pub("2", &format!("note: {n}")));
    }
    let _ = writeln!(out);
}
