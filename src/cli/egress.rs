//! Operator tools for the egress policy: `list` (rules, the pools and IPs they map to, the tasks
//! that use them) and `diff` (what a new policy would change — before anything is applied).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use switchyard_config::egress::{EgressPolicy, RuleIndex};
use switchyard_config::settings::Settings;
use switchyard_config::value::Endpoint;
use switchyard_config::{Inputs, LoadOptions};
use switchyard_scheduler::api::types::PolicyMode;
use switchyard_scheduler::{Plan, TaskPlan};

use super::render::{Style, render_errors};

#[derive(Debug, Subcommand)]
pub(crate) enum EgressCommand {
    /// Rules, the pools and static IPs each maps to, and the tasks that use it.
    List(EgressArgs),
    /// Which tasks would change placement or become unplaceable under NEW.yaml. Exit 1 if any
    /// task would be stranded.
    Diff {
        /// The proposed policy.
        new: PathBuf,
        #[command(flatten)]
        args: EgressArgs,
    },
    /// Egress decisions recorded by the nodes, newest first.
    Audit {
        /// Only denials (and dry-run would-be denials).
        #[arg(long)]
        denied: bool,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        client: super::ClientArgs,
    },
    /// Store NEW.yaml as the next policy version in the control plane; nodes switch to it within
    /// seconds. `--dry-run` logs and audits would-be denials without blocking.
    Apply {
        new: PathBuf,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: super::ClientArgs,
    },
    /// On a node: probe every rule's host and port from this egress IP — policy, DNS, TCP, TLS
    /// with the identity, certificate expiry — and classify what fails. Exit 1 if anything does.
    Check {
        /// The node's static egress IP.
        #[arg(long, value_name = "IP")]
        egress_ip: std::net::IpAddr,
        /// Local address to connect from when a NAT gives this machine's traffic the egress IP
        /// (as `switchyard node --source-ip`). Default: the egress IP itself.
        #[arg(long, value_name = "IP")]
        source_ip: Option<std::net::IpAddr>,
        /// Ports probed with a TLS handshake (besides rules that name an identity).
        #[arg(long, value_delimiter = ',', default_value = "443,8443,9093")]
        tls_ports: Vec<u16>,
        #[command(flatten)]
        args: EgressArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct EgressArgs {
    /// Settings file. Default: ./switchyard.toml.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// The current policy. Default: ./egress.yaml.
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Manifests whose tasks to relate to the rules.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn load(args: &EgressArgs, egress: Option<PathBuf>) -> anyhow::Result<Inputs> {
    let options = LoadOptions {
        paths: args.paths.clone(),
        settings: args.settings.clone(),
        egress,
        env: None,
        inline: vec![],
    };
    let inputs = switchyard_config::load(&options)?;
    let file_errors: Vec<_> = inputs
        .diagnostics
        .iter()
        .filter(|d| matches!(d.code, switchyard_config::Code::Syntax | switchyard_config::Code::Schema))
        .map(switchyard_scheduler::PlanError::from)
        .collect();
    if !file_errors.is_empty() {
        eprint!("{}", render_errors(&file_errors, Style::detect(std::io::stderr().is_terminal())));
        anyhow::bail!("fix the errors above first");
    }
    Ok(inputs)
}

pub(crate) fn run(command: EgressCommand) -> anyhow::Result<ExitCode> {
    match command {
        EgressCommand::List(args) => list(&args),
        EgressCommand::Diff { new, args } => diff(&args, new),
        EgressCommand::Audit { denied, limit, client } => runtime()?.block_on(audit(&client, denied, limit)),
        EgressCommand::Apply { new, dry_run, client } => runtime()?.block_on(apply(&client, &new, dry_run)),
        EgressCommand::Check { egress_ip, source_ip, tls_ports, args } => {
            runtime()?.block_on(check(&args, egress_ip, source_ip, &tls_ports))
        }
    }
}

async fn check(
    args: &EgressArgs,
    egress_ip: std::net::IpAddr,
    source_ip: Option<std::net::IpAddr>,
    tls_ports: &[u16],
) -> anyhow::Result<ExitCode> {
    use switchyard_config::value::{Host, HostPattern};
    use switchyard_gateway::audit::AuditSink;
    use switchyard_gateway::dial::{Dialer, DialerConfig, Target};
    use switchyard_gateway::identity::Identities;
    use switchyard_gateway::policy::{Enforcer, Mode};

    let inputs = load(args, args.egress.clone())?;
    let settings = &inputs.settings.settings;
    let policy = &inputs.policy.policy;
    let wanted: Vec<String> = policy
        .destinations
        .iter()
        .filter_map(|d| d.identity.clone())
        .filter(|i| settings.identities.contains_key(i))
        .collect();
    let identities = Identities::load_all(&settings.identities, &wanted)?;
    let (audit, _events) = AuditSink::channel();
    let dialer = Dialer::new(
        Enforcer::new(policy.clone(), egress_ip, Mode::Enforce),
        identities.clone(),
        audit,
        DialerConfig { connect_timeout: std::time::Duration::from_secs(5), source_ip, ..Default::default() },
    );
    let style = Style::detect(std::io::stdout().is_terminal());
    let mut failures = 0;
    for rule in &policy.destinations {
        let host = match &rule.host {
            HostPattern::Exact(name) => Host::Name(name.clone()),
            HostPattern::Cidr(net) if net.prefix_len() == net.max_prefix_len() => Host::Ip(net.addr()),
            other => {
                println!("skip  {}  {other}: no single host to probe", rule.name);
                continue;
            }
        };
        for port in &rule.ports {
            let target = Target::new(host.clone(), port.0);
            let tls = rule.identity.is_some() || tls_ports.contains(&port.0);
            let result = switchyard_gateway::check::check(&dialer, &identities, &target, tls).await;
            match result.code {
                None => println!(
                    "{}    {}  {}  {}",
                    style.paint_pub("32", "ok"),
                    rule.name,
                    result.target,
                    result.detail
                ),
                Some(code) => {
                    failures += 1;
                    println!(
                        "{}  {}  {}  {code} ({}): {}",
                        style.paint_pub("1;31", "FAIL"),
                        rule.name,
                        result.target,
                        switchyard_gateway::check::class_of(code),
                        result.detail
                    );
                    println!("      hint: {}", result.hint);
                }
            }
        }
    }
    println!("{failures} failing destination(s) from {egress_ip}");
    Ok(if failures > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// rule name → tasks (job/task) whose destinations it governs.
fn tasks_by_rule(policy: &EgressPolicy, plan: &Plan) -> BTreeMap<String, Vec<String>> {
    let index = RuleIndex::new(policy);
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in &plan.jobs {
        for task in &job.tasks {
            for dest in &task.destinations {
                if let Some((_, rule)) = dest.parse::<Endpoint>().ok().and_then(|e| index.lookup(policy, &e))
                {
                    let name = format!("{}/{}", job.job, task.task);
                    let entry = map.entry(rule.name.clone()).or_default();
                    if !entry.contains(&name) {
                        entry.push(name);
                    }
                }
            }
        }
    }
    map
}

fn list(args: &EgressArgs) -> anyhow::Result<ExitCode> {
    let inputs = load(args, args.egress.clone())?;
    let plan = switchyard_scheduler::plan(&inputs);
    let policy = &inputs.policy.policy;
    let settings: &Settings = &inputs.settings.settings;
    let users = tasks_by_rule(policy, &plan);
    if policy.destinations.is_empty() {
        println!("no egress rules: every destination is denied");
    }
    for rule in &policy.destinations {
        let ports: Vec<String> = rule.ports.iter().map(ToString::to_string).collect();
        println!(
            "{}  {}:{}{}",
            rule.name,
            rule.host,
            ports.join(","),
            rule.identity.as_ref().map(|i| format!("  identity {i}")).unwrap_or_default()
        );
        let mut mapped = Vec::new();
        for pool in &settings.pools {
            let ips: Vec<String> = pool
                .egress_ips
                .iter()
                .filter(|ip| rule.egress_ips.contains(ip))
                .map(ToString::to_string)
                .collect();
            if !ips.is_empty() {
                mapped.push(format!("{} ({})", pool.name, ips.join(", ")));
            }
        }
        let unowned: Vec<String> = rule
            .egress_ips
            .iter()
            .filter(|ip| !settings.pools.iter().any(|p| p.egress_ips.contains(ip)))
            .map(ToString::to_string)
            .collect();
        println!("    pools:  {}", if mapped.is_empty() { "none".to_owned() } else { mapped.join(", ") });
        if !unowned.is_empty() {
            println!("    IPs no pool has: {}", unowned.join(", "));
        }
        match users.get(&rule.name) {
            Some(tasks) => println!("    tasks:  {}", tasks.join(", ")),
            None => println!("    tasks:  none of the manifests given"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn placement(t: &TaskPlan) -> String {
    match &t.pool {
        Some(pool) => format!(
            "{pool} ({})",
            t.egress_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
        None => t.compute.as_str().to_owned(),
    }
}

fn diff(args: &EgressArgs, new: PathBuf) -> anyhow::Result<ExitCode> {
    let before = load(args, args.egress.clone())?;
    let after = load(args, Some(new.clone()))?;
    let (old_plan, new_plan) = (switchyard_scheduler::plan(&before), switchyard_scheduler::plan(&after));
    let failing = |plan: &Plan| -> BTreeMap<(String, String), String> {
        plan.errors
            .iter()
            .filter(|e| {
                matches!(e.code, switchyard_config::Code::Unplaceable | switchyard_config::Code::NoEgressRule)
            })
            .filter_map(|e| {
                Some(((e.job.clone()?, e.task.clone()?), format!("{}: {}", e.code.as_str(), e.message)))
            })
            .collect()
    };
    let (old_fail, new_fail) = (failing(&old_plan), failing(&new_plan));
    let mut stranded = 0;
    let mut changed = 0;
    for (job_old, job_new) in old_plan.jobs.iter().zip(&new_plan.jobs) {
        for (t_old, t_new) in job_old.tasks.iter().zip(&job_new.tasks) {
            let key = (job_old.job.clone(), t_old.task.clone());
            match (old_fail.get(&key), new_fail.get(&key)) {
                (None, Some(why)) => {
                    stranded += 1;
                    println!("STRANDED  {}/{}  was {}; {why}", key.0, key.1, placement(t_old));
                }
                (Some(_), None) => {
                    changed += 1;
                    println!("PLACEABLE {}/{}  now {}", key.0, key.1, placement(t_new));
                }
                (None, None) if placement(t_old) != placement(t_new) => {
                    changed += 1;
                    println!("MOVES     {}/{}  {} → {}", key.0, key.1, placement(t_old), placement(t_new));
                }
                _ => {}
            }
        }
    }
    println!("{} task(s) stranded, {changed} other change(s) under {}", stranded, new.display());
    Ok(if stranded > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn audit(client: &super::ClientArgs, denied: bool, limit: i64) -> anyhow::Result<ExitCode> {
    let (client, _) = super::control::client_for(client)?;
    let records = client.audit(denied, limit).await?;
    if records.is_empty() {
        println!("no egress decisions recorded{}", if denied { " (denials)" } else { "" });
    }
    for r in records {
        let when = chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, r.at)
            .single()
            .map_or(r.at.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        let what = match (r.verdict.as_str(), &r.rule, &r.code) {
            ("allowed", Some(rule), _) if r.bytes > 0 => {
                format!(
                    "allowed by {rule} ×{}, {} bytes in {:.1}s",
                    r.count,
                    r.bytes,
                    r.duration_ms as f64 / 1000.0
                )
            }
            ("allowed", Some(rule), _) => format!("allowed by {rule} ×{}", r.count),
            (verdict, _, Some(code)) => {
                format!("{verdict} ({code}): {}", r.reason.clone().unwrap_or_default())
            }
            (verdict, _, None) => verdict.to_owned(),
        };
        println!("{when}  {}  {}  {}  {what}", r.egress_ip, r.destination, r.task.as_deref().unwrap_or("-"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply(client: &super::ClientArgs, new: &std::path::Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let yaml =
        std::fs::read_to_string(new).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", new.display()))?;
    let (client, _) = super::control::client_for(client)?;
    let mode = if dry_run { PolicyMode::DryRun } else { PolicyMode::Enforce };
    match client.apply_policy(yaml, mode).await {
        Ok(version) => {
            println!("applied {} as egress policy version {version} ({})", new.display(), mode.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(switchyard_scheduler::Error::Rejected { errors }) => {
            let errors: Vec<_> = errors
                .into_iter()
                .map(|mut e| {
                    e.file = new.display().to_string();
                    e
                })
                .collect();
            eprint!("{}", render_errors(&errors, Style::detect(std::io::stderr().is_terminal())));
            eprintln!(
                "the control plane rejected the policy: {} error(s); nothing was applied",
                errors.len()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
