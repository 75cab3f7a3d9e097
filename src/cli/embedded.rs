//! `switchyard run`: the embedded default. One command starts the control plane (SQLite under
//! `.switchyard/`), one node per configured pool bound to its first egress IP (loopback addresses
//! such as 127.0.0.2 locally) and the serverless launcher; submits the jobs through the API; shows
//! progress; prints a summary; and exits 0 only if everything succeeded.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_config::Inputs;
use switchyard_scheduler::Plan;
use switchyard_scheduler::api::PlanningInputs;
use switchyard_scheduler::api::types::SubmitRequest;
use switchyard_scheduler::client::Client;
use switchyard_scheduler::control_plane::{ControlPlaneOptions, run_control_plane};
use switchyard_scheduler::engine::{NodeInfo, NodeKind, RunOptions, RunState, TaskState};
use switchyard_scheduler::launcher::{LocalProcessLauncher, ScalePolicy};
use switchyard_scheduler::store::now_ms;
use switchyard_scheduler::views::RunView;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::control::{WORKER_SLOTS, open_engine, worker_command};
use super::ops::read_manifests;
use super::render::{Style, render_errors};
use super::shutdown::shutdown_signal;
use super::summary::render_runs;
use super::url_for;
use crate::agent::{self, AgentConfig};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Settings file. Default: ./switchyard.toml if it exists, else built-in defaults.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Egress policy. Default: ./egress.yaml if it exists, else deny all.
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Rebuild transform outputs from scratch instead of processing only new input versions.
    #[arg(long)]
    full_refresh: bool,
    /// Run only the tasks that write TABLE (e.g. silver.claims); repeat for several tables.
    #[arg(long, value_name = "TABLE")]
    select: Vec<String>,
    /// Manifest files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let options = switchyard_config::LoadOptions {
        paths: args.paths.clone(),
        settings: args.settings.clone(),
        egress: args.egress.clone(),
        env: None,
        inline: vec![],
    };
    let inputs = switchyard_config::load(&options)?;
    let planned = switchyard_scheduler::plan(&inputs);
    if !planned.is_ok() {
        eprint!("{}", render_errors(&planned.errors, Style::detect(std::io::stderr().is_terminal())));
        eprintln!(
            "nothing was run: {} error(s); `switchyard plan` shows where every task would run",
            planned.errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    let specs = switchyard_scheduler::spec::job_specs(&inputs, &planned).map_err(|_| {
        anyhow::anyhow!("the plan has errors although it reported none; run `switchyard plan`")
    })?;
    // Checked here too, before anything starts, so a typo costs nothing.
    let selected = if args.select.is_empty() {
        None
    } else {
        match switchyard_scheduler::spec::select_tasks(&specs, &args.select) {
            Ok(selected) => Some(selected),
            Err(e) => {
                eprintln!(
                    "error: {e}\n  hint: select tables by the name in a task's `sink: {{ table: … }}`\nnothing was run"
                );
                return Ok(ExitCode::from(2));
            }
        }
    };
    let downstream = triggered_by_upstream(&specs);
    let settings = inputs.settings.settings.clone();
    let embedded = start(&inputs, &planned, Nodes::InProcess).await?;
    let client = embedded.client.clone();

    let started = Instant::now();
    let since_ms = now_ms();
    // Everything is registered; runs start only for jobs that data from this submission will not
    // start by itself: an `on_update` job downstream of another runs once that one commits.
    client
        .submit(&SubmitRequest {
            manifests: read_manifests(&args.paths)?,
            run: false,
            full_refresh: args.full_refresh,
            select: vec![],
        })
        .await
        .context("submitting the jobs")?;
    let options = RunOptions { full_refresh: args.full_refresh, ..RunOptions::default() };
    let mut run_ids = Vec::new();
    for job in &specs {
        if downstream.contains(&job.job) {
            continue;
        }
        let only = selected.as_ref().map(|s| s.get(&job.job).cloned().unwrap_or_default());
        if only.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let run = embedded
            .engine
            .trigger_with(&job.job, &options, only.as_deref())
            .await
            .with_context(|| format!("starting a run of {}", job.job))?;
        run_ids.push(run);
    }
    let watch = (!downstream.is_empty() || specs.iter().flat_map(|j| &j.tasks).any(|t| t.trigger.is_some()))
        .then_some(Triggered { engine: &embedded.engine, since_ms });
    let (interrupted, run_ids) = follow_triggered(&client, run_ids, started, watch).await?;
    let runs = fetch(&client, &run_ids).await?;
    embedded.stop().await;

    print!("{}", render_runs(&runs, Style::detect(std::io::stdout().is_terminal())));
    let tasks: Vec<_> = runs.iter().flat_map(|r| &r.tasks).collect();
    let ok = tasks.iter().filter(|t| t.state == TaskState::Succeeded).count();
    let all_ok = !interrupted && runs.iter().all(|r| r.state == RunState::Succeeded);
    println!(
        "{} {} job{}, {ok}/{} tasks succeeded in {:.1}s (state {}, lake {})",
        if all_ok { "ok:" } else { "FAILED:" },
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        tasks.len(),
        started.elapsed().as_secs_f64(),
        settings.control_plane.state,
        settings.lake.root
    );
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Jobs that another job of the same submission starts through data: every task is
/// `trigger: on_update` and reads a table some other job writes. `switchyard run` does not start
/// them itself, so they run once, after their upstream committed, on what it committed.
fn triggered_by_upstream(specs: &[switchyard_scheduler::spec::JobSpec]) -> HashSet<String> {
    specs
        .iter()
        .filter(|job| {
            !job.tasks.is_empty()
                && job.tasks.iter().all(|t| {
                    t.trigger.is_some()
                        && t.reads.iter().any(|table| {
                            specs.iter().any(|other| {
                                other.job != job.job && other.tasks.iter().any(|w| w.writes.contains(table))
                            })
                        })
                })
        })
        .map(|job| job.job.clone())
        .collect()
}

/// The embedded default's moving parts, all in this process except the serverless workers (which
/// the launcher starts as child processes): `switchyard run` and `switchyard demo` share them.
pub(crate) struct Embedded {
    pub(crate) client: Client,
    /// The control plane's URL (an ephemeral port on 127.0.0.1).
    pub(crate) url: String,
    /// The admin token's file, for commands pointed at this control plane.
    pub(crate) token_file: PathBuf,
    launcher: Arc<LocalProcessLauncher>,
    stop: watch::Sender<bool>,
    agents_stop: watch::Sender<bool>,
    agents: Vec<JoinHandle<anyhow::Result<agent::AgentSummary>>>,
    gateways: Vec<super::gateway::Running>,
    control_plane: JoinHandle<Result<(), switchyard_scheduler::Error>>,
    /// The event log exporter; it exports what is left when the control plane stops.
    events: JoinHandle<()>,
    /// The control plane's engine, for what the API does not say: starting runs of registered
    /// jobs and whether data-triggered runs are still pending.
    pub(crate) engine: switchyard_scheduler::engine::Engine,
}

impl std::fmt::Debug for Embedded {
    // Not derived: the client holds the admin token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").field("url", &self.url).field("nodes", &self.agents.len()).finish()
    }
}

/// Where the embedded default's dedicated nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nodes {
    /// One per pool, in this process, bound to the pool's first egress IP.
    InProcess,
    /// None here: the caller starts them (`demo --netns` runs its node inside the pool's
    /// network namespace, where the egress IP exists).
    External,
}

/// Starts the control plane, one node per pool that a task needs (or that can bind its egress
/// IP) unless `nodes` says the caller starts them, and the serverless launcher, for planned
/// inputs.
pub(crate) async fn start(inputs: &Inputs, planned: &Plan, nodes_at: Nodes) -> anyhow::Result<Embedded> {
    let settings = inputs.settings.settings.clone();
    let needed: HashSet<&str> =
        planned.jobs.iter().flat_map(|j| &j.tasks).filter_map(|t| t.pool.as_deref()).collect();
    let mut nodes = Vec::new();
    let pools = if nodes_at == Nodes::InProcess { settings.pools.as_slice() } else { &[] };
    for pool in pools {
        let Some(ip) = pool.egress_ips.first().copied() else { continue };
        if std::net::TcpListener::bind((ip, 0)).is_err() {
            if needed.contains(pool.name.as_str()) {
                bail!(
                    "pool {}'s egress IP {ip} is not an address of this machine; `switchyard run` starts one node per pool on its egress IP, so local runs use loopback IPs (127.0.0.2, 127.0.0.3, …) — see examples/local/",
                    pool.name
                );
            }
            continue;
        }
        nodes.push((pool.name.clone(), ip, pool.slots, pool.identities.clone()));
    }

    let engine = open_engine(&settings).await?;
    let token_file = std::path::absolute(&settings.control_plane.token_file)?;
    engine.ensure_admin_token(&token_file).await?;
    let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = url_for(listener.local_addr()?, false);
    let mut command = worker_command(&url, &token, &settings.serverless, None, &settings.lake)?;
    // Workers report through the control plane; their own logs would only clutter the summary.
    command.env.push(("RUST_LOG".into(), std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())));
    let launcher = Arc::new(LocalProcessLauncher::new(command));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (agents_stop_tx, agents_stop_rx) = watch::channel(false);
    let policy = ScalePolicy {
        max_workers: settings.serverless.max_workers as usize,
        slots_per_worker: WORKER_SLOTS as usize,
        interval: Duration::from_millis(50),
    };
    let planning = PlanningInputs {
        settings: inputs.settings.doc.as_ref().map(|d| d.file().to_path_buf()),
        egress: inputs.policy.doc.as_ref().map(|d| d.file().to_path_buf()),
    };
    let events = super::events::spawn_exporter(&engine, &settings, stop_rx.clone())?;
    let engine_handle = engine.clone();
    let control_plane = tokio::spawn(run_control_plane(
        engine,
        ControlPlaneOptions { listener, tls: None, planning, tick: Duration::from_millis(250) },
        Some((launcher.clone(), policy)),
        stop_rx.clone(),
    ));
    let client = Client::new(&url, token, None)?;
    let mut agents = Vec::new();
    let mut gateways = Vec::new();
    for (pool, ip, slots, identities) in nodes {
        let gateway = super::gateway::start(
            inputs.policy.policy.clone(),
            &settings,
            &identities,
            ip,
            "127.0.0.1:0".parse()?,
            switchyard_gateway::policy::Mode::Enforce,
            None,
            Some(client.clone()),
        )
        .await?;
        let proxy = Some(crate::agent::ProxyAccess {
            url: gateway.url.clone(),
            refusals: gateway.refusals.clone(),
            identities: gateway.identities.clone(),
        });
        let lake = switchyard_lake::Lake::from_settings(&settings.lake)
            .with_context(|| format!("opening the lake at {}", settings.lake.root))?;
        let ingest = Some(crate::agent::IngestSetup { dialer: gateway.dialer.clone(), lake: lake.clone() });
        gateways.push(gateway);
        let config = AgentConfig {
            info: NodeInfo {
                kind: NodeKind::Dedicated,
                pool: Some(pool),
                egress_ip: Some(ip),
                identities,
                version: env!("CARGO_PKG_VERSION").into(),
                slots,
                launched_at: None,
            },
            idle_timeout: None,
            drain_timeout: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            proxy,
            ingest,
            transform_lake: Some(lake),
            transform_budget: Some(super::control::transform_budget(&settings, &super::control::spill_dir())),
            // `switchyard run` read the manifests on this machine.
            run_dir: crate::agent::RunDir::Planned,
        };
        agents.push(tokio::spawn(agent::run(client.clone(), config, agents_stop_rx.clone())));
    }
    Ok(Embedded {
        client,
        url,
        token_file,
        launcher,
        stop: stop_tx,
        agents_stop: agents_stop_tx,
        agents,
        gateways,
        control_plane,
        events,
        engine: engine_handle,
    })
}

impl Embedded {
    /// Nodes drain and deregister while the control plane still answers; then workers, then it.
    pub(crate) async fn stop(self) {
        let _ = self.agents_stop.send(true);
        for a in self.agents {
            match a.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("warning: a node stopped with an error: {e:#}"),
                Err(e) => eprintln!("warning: a node task failed: {e}"),
            }
        }
        self.launcher.stop_all();
        drop(self.gateways);
        let _ = self.stop.send(true);
        if let Ok(Err(e)) = self.control_plane.await {
            eprintln!("warning: the control plane stopped with an error: {e}");
        }
        let _ = self.events.await;
    }
}

pub(crate) async fn fetch(client: &Client, ids: &[i64]) -> anyhow::Result<Vec<RunView>> {
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        runs.push(client.run(*id).await?);
    }
    Ok(runs)
}

/// Waits for the runs to finish, with a live progress line on a terminal. On Ctrl-C the runs are
/// cancelled; returns whether that happened.
pub(crate) async fn follow(client: &Client, ids: &[i64], started: Instant) -> anyhow::Result<bool> {
    Ok(follow_triggered(client, ids.to_vec(), started, None).await?.0)
}

/// What `follow_triggered` watches besides the runs it started: runs that commits start.
pub(crate) struct Triggered<'a> {
    engine: &'a switchyard_scheduler::engine::Engine,
    /// Runs created from this time (epoch ms) on belong to this invocation.
    since_ms: i64,
}

/// How long everything must stay finished, with no trigger pending, before a pipeline with
/// `on_update` tasks is over: a node reports a commit within about this long after it is made.
const SETTLE: Duration = Duration::from_millis(1_500);

/// Follows `ids` until they are finished and, with `triggered`, also every run that data from
/// them starts (`on_update`), until nothing is running or pending. Returns whether it was
/// interrupted, and every run it followed.
pub(crate) async fn follow_triggered(
    client: &Client,
    mut ids: Vec<i64>,
    started: Instant,
    triggered: Option<Triggered<'_>>,
) -> anyhow::Result<(bool, Vec<i64>)> {
    let live = std::io::stderr().is_terminal();
    let mut signal = shutdown_signal();
    let mut quiet_since: Option<Instant> = None;
    loop {
        if let Some(t) = &triggered {
            for run in client.runs(None, 200).await.context("listing runs")? {
                if run.created_at >= t.since_ms && run.trigger == "on_update" && !ids.contains(&run.id) {
                    ids.push(run.id);
                }
            }
        }
        let runs = fetch(client, &ids).await?;
        let tasks: Vec<_> = runs.iter().flat_map(|r| &r.tasks).collect();
        let count = |f: &dyn Fn(TaskState) -> bool| tasks.iter().filter(|t| f(t.state)).count();
        if live {
            eprint!(
                "\r\x1b[2K{:>5.1}s  {} done, {} running, {} waiting, {} failed",
                started.elapsed().as_secs_f64(),
                count(&|s| s == TaskState::Succeeded),
                count(&|s| s == TaskState::Running),
                count(&|s| matches!(s, TaskState::Pending | TaskState::Queued | TaskState::Retrying)),
                count(&|s| matches!(s, TaskState::Failed | TaskState::TimedOut | TaskState::UpstreamFailed)),
            );
            let _ = std::io::stderr().flush();
        }
        let finished = runs.iter().all(|r| r.state != RunState::Running);
        let settled = match (&triggered, finished) {
            (_, false) => {
                quiet_since = None;
                false
            }
            (None, true) => true,
            (Some(t), true) => {
                if t.engine.pending_trigger_count().await? > 0 {
                    quiet_since = None;
                    false
                } else {
                    quiet_since.get_or_insert_with(Instant::now).elapsed() >= SETTLE
                }
            }
        };
        if settled {
            if live {
                eprintln!();
            }
            ids.sort_unstable();
            return Ok((false, ids));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = signal.changed() => {
                eprintln!("\ninterrupted: cancelling the runs");
                for id in &ids {
                    let _ = client.cancel_run(*id).await;
                }
                return Ok((true, ids));
            }
        }
    }
}
