//! The long-running processes: `serve` (control plane), `node` (dedicated node agent) and
//! `worker` (serverless worker), and what they share: loading settings, opening the store, making
//! a control-plane client, turning SIGINT/SIGTERM into a shutdown signal.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use switchyard_config::settings::{LauncherKind, Settings};
use switchyard_config::value::Duration as HumanDuration;
use switchyard_scheduler::api::{PlanningInputs, load_server_tls};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::control_plane::{ControlPlaneOptions, run_control_plane};
use switchyard_scheduler::engine::{Engine, EngineConfig, NodeInfo, NodeKind};
use switchyard_scheduler::launcher::kubernetes::{self, JobTemplate, KubernetesLauncher};
use switchyard_scheduler::launcher::{Launcher, LocalProcessLauncher, ScalePolicy, WorkerCommand};
use switchyard_scheduler::store::Store;
use tokio::sync::watch;

use super::inputs::load_inputs;
use super::shutdown::shutdown_signal;
use super::{CA_PEM_ENV, ClientArgs, url_for};
use crate::agent::{self, AgentConfig, RunDir};

/// Tasks one local serverless worker runs at once.
pub(crate) const WORKER_SLOTS: u32 = 2;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Settings file. Default: ./switchyard.toml if it exists, else built-in defaults.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Egress policy that submissions are planned with. Default: ./egress.yaml.
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Listen address, overriding the settings' control_plane.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// The pool this node belongs to (a [[pools]] name in the control plane's settings).
    #[arg(long)]
    pool: String,
    /// This node's static egress IP; must be one of the pool's egress_ips.
    #[arg(long, value_name = "IP")]
    egress_ip: IpAddr,
    /// Local address outgoing connections leave from, when the egress IP is a NAT's address in
    /// front of this machine (a Kubernetes egress gateway, a cloud NAT gateway, an Elastic IP);
    /// this address, not the egress IP, must then be one of this machine's. Default: the egress
    /// IP itself.
    #[arg(long, value_name = "IP")]
    source_ip: Option<IpAddr>,
    /// Concurrent tasks. Default: the pool's `slots` in the settings, else 4.
    #[arg(long)]
    slots: Option<u32>,
    /// On SIGTERM, how long running tasks may finish before their leases are handed back.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    drain_timeout: HumanDuration,
    /// Egress policy the node's gateway enforces. Default: ./egress.yaml.
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Where `run` tasks start: a manifest's `run.workdir` is resolved under it (the manifest's
    /// folder is on the control plane's machine, not here). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Concurrent tasks.
    #[arg(long, default_value_t = WORKER_SLOTS)]
    slots: u32,
    /// Exit after this long without work. Default: the settings' serverless.idle_timeout.
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<HumanDuration>,
    /// Where `run` tasks start, as for `node --workdir`. Default: the current directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Start `run` tasks in the folder the control plane planned: set by the local launcher,
    /// whose workers run on the control plane's machine.
    #[arg(long, hide = true, conflicts_with = "workdir")]
    planned_workdir: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) async fn open_engine(settings: &switchyard_config::settings::Settings) -> anyhow::Result<Engine> {
    let store = Store::open(&settings.control_plane.state).await?;
    let config = EngineConfig {
        lease_ttl: settings.control_plane.lease_ttl.as_std(),
        max_losses: 5,
        settings: settings.clone(),
    };
    Ok(Engine::new(store, config))
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let inputs = load_inputs(args.settings.clone(), args.egress.clone(), vec![])?;
    let settings = inputs.settings.settings.clone();
    // With `launcher = "kubernetes"`, refuse incomplete settings (or a build without the
    // launcher) before anything starts.
    let k8s_template = kubernetes_template(&settings)?;
    let engine = open_engine(&settings).await?;
    let token_file = settings.control_plane.token_file.clone();
    engine.ensure_admin_token(&token_file).await?;
    let tls = match (&settings.control_plane.tls_cert, &settings.control_plane.tls_key) {
        (Some(cert), Some(key)) => Some(load_server_tls(cert, key)?),
        (None, None) => None,
        _ => bail!("set both control_plane.tls_cert and control_plane.tls_key, or neither"),
    };
    let listen = args.listen.unwrap_or(settings.control_plane.listen);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let url = url_for(listener.local_addr()?, tls.is_some());
    let admin_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the admin token from {}", token_file.display()))?;
    let launcher = Arc::new(LocalProcessLauncher::new(worker_command(
        &url,
        admin_token.trim(),
        &settings.serverless,
        tls.is_some().then_some(settings.control_plane.tls_cert.as_deref()).flatten(),
        &settings.lake,
    )?));
    let policy = ScalePolicy {
        max_workers: settings.serverless.max_workers as usize,
        slots_per_worker: WORKER_SLOTS as usize,
        interval: Duration::from_millis(100),
    };
    eprintln!(
        "switchyard control plane on {url} (state {}, admin token in {})",
        redact(&settings.control_plane.state),
        token_file.display()
    );
    let options = ControlPlaneOptions {
        listener,
        tls,
        planning: PlanningInputs {
            settings: inputs.settings.doc.as_ref().map(|d| d.file().to_path_buf()),
            egress: inputs.policy.doc.as_ref().map(|d| d.file().to_path_buf()),
        },
        tick: Duration::from_millis(500),
    };
    let shutdown = shutdown_signal();
    let events = super::events::spawn_exporter(&engine, &settings, shutdown.clone())?;
    let maintenance = super::maintenance::spawn(&engine, &settings.lake, shutdown.clone())?;
    let result: anyhow::Result<()> = match k8s_template {
        None => {
            let result = run_control_plane(engine, options, Some((launcher.clone(), policy)), shutdown).await;
            launcher.stop_all();
            result.map_err(Into::into)
        }
        Some(template) => serve_with_kubernetes(engine, options, policy, template, shutdown).await,
    };
    // A compaction under way is given up: its commit is atomic, so at most unreferenced files
    // stay behind, and its slot is recorded as started but not finished.
    if let Some(maintenance) = maintenance {
        maintenance.abort();
    }
    // After a shutdown signal the exporter writes what is left and gives up its lease.
    if result.is_ok() {
        let _ = events.await;
    } else {
        events.abort();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The worker Job template when the settings select the Kubernetes launcher.
fn kubernetes_template(settings: &Settings) -> anyhow::Result<Option<JobTemplate>> {
    if settings.serverless.launcher != LauncherKind::Kubernetes || settings.serverless.max_workers == 0 {
        return Ok(None);
    }
    if !kubernetes::CLIENT_BUILT {
        bail!(
            "serverless.launcher is \"kubernetes\", but this switchyard was built without the Kubernetes launcher; \
             build with `cargo build --release --features kube` (the deploy/Dockerfile image has it) or set serverless.launcher = \"local\""
        );
    }
    Ok(Some(JobTemplate::from_settings(settings, WORKER_SLOTS)?))
}

/// The control plane with serverless workers as Kubernetes Jobs, one per burst. Jobs are left
/// running on shutdown: their workers drain and exit when idle, and Kubernetes deletes them.
async fn serve_with_kubernetes(
    engine: Engine,
    options: ControlPlaneOptions,
    policy: ScalePolicy,
    template: JobTemplate,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (namespace, image) = (template.namespace.clone(), template.image.clone());
    let launcher = Arc::new(KubernetesLauncher::connect(template).await?);
    tracing::info!(%namespace, %image, live = launcher.live(), "Serverless workers run as Kubernetes Jobs.");
    Ok(run_control_plane(engine, options, Some((launcher, policy)), shutdown).await?)
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// How the launcher starts a worker: this same executable, pointed at the control plane, with
/// everything else it needs in its environment and its token on standard input — nothing on a
/// disk it would have to share with the control plane.
pub(crate) fn worker_command(
    url: &str,
    token: &str,
    serverless: &switchyard_config::settings::Serverless,
    ca: Option<&Path>,
    lake: &switchyard_config::settings::Lake,
) -> anyhow::Result<WorkerCommand> {
    let idle = serverless.idle_timeout;
    if let Some(ns) = &serverless.netns {
        // Found now rather than at the first launch, where it would only be a log line.
        if !Path::new("/run/netns").join(ns).exists() {
            bail!(
                "[serverless] netns = \"{ns}\": no such network namespace (`ip netns list` shows the ones \
                 that exist); create it, with routes to this control plane and the lake only, or remove the setting"
            );
        }
    }
    let exe = std::env::current_exe().context("locating the switchyard executable for workers")?;
    let mut args = vec![
        "worker".to_owned(),
        "--control-plane".to_owned(),
        url.to_owned(),
        "--token-file".to_owned(),
        "-".to_owned(),
        "--idle-timeout".to_owned(),
        idle.to_string(),
        // Local workers share the control plane's machine, and with it the manifests' folders.
        "--planned-workdir".to_owned(),
    ];
    let mut env = Vec::new();
    if let Some(ca) = ca {
        // The certificate itself, not its path: the worker reads no file of this machine.
        let pem = std::fs::read_to_string(ca)
            .with_context(|| format!("reading the control plane's CA certificate {}", ca.display()))?;
        env.push((CA_PEM_ENV.to_owned(), pem));
    }
    // Workers start in a directory of their own: a local lake root is made absolute (a local
    // lake is the one thing the local launcher's workers do share, as the demo's lake).
    let lake_root = if lake.root.contains("://") {
        lake.root.clone()
    } else {
        std::path::absolute(&lake.root)?.display().to_string()
    };
    env.push(("SWITCHYARD__LAKE__ROOT".to_owned(), lake_root));
    if lake.allow_unsafe_rename {
        env.push(("SWITCHYARD__LAKE__ALLOW_UNSAFE_RENAME".to_owned(), "true".to_owned()));
    }
    // Values and `_env` references as written (the worker reads its own environment); what a
    // `_file` reference holds is read here and sent after the token on standard input, as the
    // worker reads no file of this machine.
    let mut from_files = serde_json::Map::new();
    for (key, value) in lake.storage_options.as_written() {
        if let Some(option) = key.strip_suffix("_file") {
            let secret = switchyard_config::SecretRef::File(value.into())
                .resolve()
                .with_context(|| format!("reading [lake.storage_options] {key} for a worker"))?;
            from_files.insert(option.to_owned(), secret.expose().clone().into());
            continue;
        }
        env.push((
            format!("SWITCHYARD__LAKE__STORAGE_OPTIONS__{}", key.to_ascii_uppercase()),
            value.to_owned(),
        ));
    }
    // One line each (the launcher ends the last).
    let mut stdin = token.to_owned();
    if !from_files.is_empty() {
        stdin.push('\n');
        stdin.push_str(&serde_json::Value::Object(from_files).to_string());
        args.push("--lake-options-on-stdin".to_owned());
    }
    Ok(WorkerCommand {
        exe,
        args,
        env,
        stdin: Some(switchyard_config::Secret::new(stdin)),
        netns: serverless.netns.clone(),
    })
}

/// A client from explicit flags, falling back to the settings.
pub(crate) fn client_for(
    args: &ClientArgs,
) -> anyhow::Result<(Client, switchyard_config::settings::Settings)> {
    let settings = load_inputs(args.settings.clone(), None, vec![])?.settings.settings;
    let tls = settings.control_plane.tls_cert.is_some();
    let url = args.control_plane.clone().unwrap_or_else(|| url_for(settings.control_plane.listen, tls));
    let token_file = args.token_file.clone().unwrap_or_else(|| settings.control_plane.token_file.clone());
    let mut settings = settings;
    let token = if token_file.as_os_str() == "-" {
        // The local launcher hands workers their token this way, then the lake options it read
        // from files, as one JSON object (see `worker_command`).
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the API token from standard input")?;
        if args.lake_options_on_stdin {
            let mut rest = String::new();
            std::io::stdin().read_line(&mut rest).context("cannot read lake options from standard input")?;
            let options: std::collections::BTreeMap<String, String> = serde_json::from_str(rest.trim())
                .context("the line after the token on standard input is not a JSON object of lake options")?;
            for (option, value) in options {
                settings.lake.storage_options.set(&option, value);
            }
        }
        line
    } else {
        std::fs::read_to_string(&token_file).with_context(|| {
            format!("cannot read the API token from {} (pass --token-file)", token_file.display())
        })?
    }
    .trim()
    .to_owned();
    if token.is_empty() {
        bail!(
            "the API token from {} is empty (pass --token-file with a token from `switchyard token create`)",
            token_file.display()
        );
    }
    let client = match (&args.ca_file, &args.ca_pem) {
        (None, Some(pem)) => Client::with_ca_pem(&url, token, Some((pem.as_bytes(), CA_PEM_ENV)))?,
        (ca, _) => {
            let ca = ca.clone().or_else(|| tls.then(|| settings.control_plane.tls_cert.clone()).flatten());
            Client::new(&url, token, ca.as_deref())?
        }
    };
    Ok((client, settings))
}

pub(crate) async fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    // Connections are bound to the static egress IP (or, behind a NAT, to --source-ip): it must
    // be an address of this machine.
    match args.source_ip {
        None => {
            if let Err(e) = std::net::TcpListener::bind((args.egress_ip, 0)) {
                bail!(
                    "egress IP {} is not an address of this machine ({e}); start the node on the host that owns it, or pass --source-ip with this machine's address if a NAT gives its traffic that IP",
                    args.egress_ip
                );
            }
        }
        Some(source) => {
            if let Err(e) = std::net::TcpListener::bind((source, 0)) {
                bail!("source IP {source} is not an address of this machine ({e})");
            }
            tracing::info!(egress_ip = %args.egress_ip, source_ip = %source, "Connections leave from the source IP; a NAT must give them the egress IP.");
        }
    }
    let (client, settings) = client_for(&args.client)?;
    let slots = args.slots.or_else(|| settings.pool(&args.pool).map(|p| p.slots)).unwrap_or(4);
    let identities = settings.pool(&args.pool).map(|p| p.identities.clone()).unwrap_or_default();
    // Every connection a task of this node makes goes through its gateway.
    let policy = load_inputs(args.client.settings.clone(), args.egress.clone(), vec![])?.policy.policy;
    let gateway = super::gateway::start_bound(
        policy,
        &settings,
        &identities,
        args.egress_ip,
        args.source_ip,
        "127.0.0.1:0".parse()?,
        switchyard_gateway::policy::Mode::Enforce,
        None,
        Some(client.clone()),
    )
    .await?;
    let lake = switchyard_lake::Lake::from_settings(&settings.lake)
        .with_context(|| format!("opening the lake at {}", settings.lake.root))?;
    let spill_dir = spill_dir();
    let config = AgentConfig {
        info: NodeInfo {
            kind: NodeKind::Dedicated,
            pool: Some(args.pool.clone()),
            egress_ip: Some(args.egress_ip),
            identities,
            version: env!("CARGO_PKG_VERSION").into(),
            slots,
            launched_at: None,
        },
        idle_timeout: None,
        drain_timeout: args.drain_timeout.as_std(),
        poll: Duration::from_secs(2),
        proxy: Some(crate::agent::ProxyAccess {
            url: gateway.url.clone(),
            refusals: gateway.refusals.clone(),
            identities: gateway.identities.clone(),
        }),
        ingest: Some(crate::agent::IngestSetup { dialer: gateway.dialer.clone(), lake: lake.clone() }),
        transform_lake: Some(lake),
        transform_budget: Some(transform_budget(&settings, &spill_dir)),
        run_dir: own_run_dir(args.workdir.as_deref())?,
    };
    let summary = agent::run(client, config, shutdown_signal()).await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let summary = summary?;
    tracing::info!(node = %summary.node_id, leased = summary.leased, handed_back = summary.handed_back, "Node stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Where this agent's transform queries spill; removed when it exits.
pub(crate) fn spill_dir() -> PathBuf {
    std::env::temp_dir().join(format!("switchyard-spill-{}", std::process::id()))
}

/// A transform query's memory budget (`[serverless] memory_limit`, on workers and on nodes
/// running transforms pinned to dedicated compute) and where it spills beyond it.
pub(crate) fn transform_budget(settings: &Settings, spill_dir: &Path) -> switchyard_transform::Budget {
    switchyard_transform::Budget {
        memory_bytes: settings.serverless.memory_limit.0,
        spill_dir: spill_dir.to_path_buf(),
    }
}

/// `--workdir` made absolute (it must exist), else the current directory.
fn own_run_dir(dir: Option<&Path>) -> anyhow::Result<RunDir> {
    let dir = match dir {
        Some(dir) => std::path::absolute(dir)?,
        None => std::env::current_dir().context("reading the current directory")?,
    };
    if !dir.is_dir() {
        bail!("--workdir {} is not a directory of this machine; create it or pass another", dir.display());
    }
    Ok(RunDir::Own(dir))
}

pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (client, settings) = client_for(&args.client)?;
    let idle = args.idle_timeout.unwrap_or(settings.serverless.idle_timeout).as_std();
    let launched_at = std::env::var("SWITCHYARD_LAUNCHED_AT").ok().and_then(|v| v.parse().ok());
    let spill_dir = spill_dir();
    let config = AgentConfig {
        info: NodeInfo {
            kind: NodeKind::Serverless,
            pool: None,
            egress_ip: None,
            identities: vec![],
            version: env!("CARGO_PKG_VERSION").into(),
            slots: args.slots,
            launched_at,
        },
        idle_timeout: Some(idle),
        drain_timeout: Duration::from_secs(30),
        poll: Duration::from_millis(500).min(idle),
        proxy: None,
        ingest: None,
        transform_lake: Some(
            switchyard_lake::Lake::from_settings(&settings.lake)
                .with_context(|| format!("opening the lake at {}", settings.lake.root))?,
        ),
        transform_budget: Some(transform_budget(&settings, &spill_dir)),
        run_dir: if args.planned_workdir { RunDir::Planned } else { own_run_dir(args.workdir.as_deref())? },
    };
    let summary = agent::run(client, config, shutdown_signal()).await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let summary = summary?;
    tracing::info!(worker = %summary.node_id, leased = summary.leased, "Worker exiting.");
    Ok(ExitCode::SUCCESS)
}
