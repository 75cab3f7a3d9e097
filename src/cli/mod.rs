//! Command definitions (clap) and dispatch. Exit codes (DESIGN §4.6): 0 success, 1 the thing
//! checked or run failed, 2 usage or I/O error.

mod ballista;
mod check;
mod control;
mod cost;
mod demo;
mod egress;
mod embedded;
mod events;
mod fetch;
mod gateway;
mod inputs;
mod lake;
pub(crate) mod logging;
mod maintenance;
mod ops;
mod render;
mod schema;
mod shutdown;
mod summary;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where a worker started by the local launcher finds the control plane's CA certificate (PEM).
pub(crate) const CA_PEM_ENV: &str = "SWITCHYARD_CONTROL_PLANE_CA";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Hybrid compute scheduler and connectivity gateway for data platforms"
)]
pub(crate) struct Cli {
    /// Log format of long-running commands.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests, egress policy and settings; report every problem with FILE:LINE:COL.
    ///
    /// Exit 0 when valid, 1 when not, 2 on usage or I/O errors. Reads only the files given: no
    /// network, no key files, no state store.
    Validate(InputArgs),
    /// Show where every task will run and why: class, compute, pool, egress IPs, dependencies.
    ///
    /// Exit 0 when every task is placeable, 1 otherwise, 2 on usage or I/O errors.
    Plan {
        #[command(flatten)]
        inputs: InputArgs,
        /// Print the plan as JSON (the documented `plan --json` contract).
        #[arg(long)]
        json: bool,
    },
    /// Run the jobs once on this machine: control plane (SQLite), one node per pool on its
    /// loopback egress IP, serverless workers on demand; print a summary.
    ///
    /// Exit 0 only if every task succeeded.
    Run(embedded::RunArgs),
    /// The healthcare case on this machine, nothing to install: a partner API that wants a client
    /// certificate and allowlists one static IP, a pipeline that ingests it on a dedicated node and
    /// refines it serverless, and a serverless program whose call to the partner is denied.
    ///
    /// Exit 0 when all of that happened as intended, 1 otherwise.
    Demo(demo::DemoArgs),
    /// Connect to URL's host and port, through HTTPS_PROXY when set (a CONNECT tunnel): what a
    /// program on a worker would do. Used by the demo.
    #[command(hide = true)]
    Fetch(fetch::FetchArgs),
    /// Run the control plane: API, engine (leases, retries, cron) and the serverless launcher.
    Serve(control::ServeArgs),
    /// Run a dedicated node agent for a pool, with one of the pool's static egress IPs.
    Node(control::NodeArgs),
    /// Run a serverless worker (normally started by the control plane's launcher).
    Worker(control::WorkerArgs),
    /// Run the egress gateway standalone: a CONNECT/HTTP proxy under the egress policy, with
    /// connections leaving from a static egress IP.
    Gateway(gateway::GatewayArgs),
    /// Submit manifests to a running control plane and start their runs.
    Submit(ops::SubmitArgs),
    /// Show recent runs: tasks, where they ran, attempts, outcomes, and why queued tasks wait.
    Runs(ops::RunsArgs),
    /// Cancel a run (or, with --task, one task run and what waits for it).
    Cancel(ops::CancelArgs),
    /// Print the event log (task transitions, finished runs, nodes registered and lost, egress
    /// denials) from the lake's `_switchyard/event_log` Delta table; --follow for new ones.
    Events(events::EventsArgs),
    /// What the recorded runs cost (dedicated node-hours with idle time, serverless vCPU-seconds
    /// with cold starts) against the same history all-dedicated and all-serverless, with the
    /// arithmetic and per-task recommendations.
    Cost(cost::CostArgs),
    /// Operator tools for the egress policy: list rules and their users, diff a proposed policy.
    Egress {
        #[command(subcommand)]
        command: egress::EgressCommand,
    },
    /// The lake from this machine: probe the root (`check`), compact a table (`optimize`),
    /// delete unreferenced files (`vacuum`).
    Lake {
        #[command(subcommand)]
        command: lake::LakeCommand,
    },
    /// Run the Apache DataFusion Ballista scheduler that `engine: distributed` transforms use.
    BallistaScheduler(ballista::SchedulerArgs),
    /// Run a Ballista executor for `engine: distributed` transforms: reads the lake, serves the
    /// scheduler, no egress.
    Executor(ballista::ExecutorArgs),
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: ops::TokenCommand,
    },
    /// Print the JSON Schema of a file format, for editor validation and completion.
    Schema {
        #[arg(value_enum)]
        kind: SchemaArg,
    },
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Settings file (TOML). Default: ./switchyard.toml if it exists, else built-in defaults.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Egress policy (YAML). Default: ./egress.yaml if it exists, else an empty policy (deny all).
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
    /// Manifest files or directories (searched for *.yaml and *.yml).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// How a command reaches the control plane. Defaults come from the settings.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// Control plane URL. Default: http://LISTEN from the settings (https when TLS is configured).
    #[arg(long, value_name = "URL")]
    control_plane: Option<String>,
    /// File holding the API token. Default: the settings' control_plane.token_file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed an https control plane's certificate.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// The CA certificate as PEM text, when --ca-file is not given: how the local launcher hands
    /// it to the workers it starts, which read no file of the control plane's machine.
    #[arg(long, hide = true, env = CA_PEM_ENV, value_name = "PEM")]
    ca_pem: Option<String>,
    /// With `--token-file -`: the line after the token is a JSON object of lake storage options
    /// (what `_file` references held on the launcher's machine).
    #[arg(long, hide = true, requires = "token_file")]
    lake_options_on_stdin: bool,
    /// Settings file for the defaults above. Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaArg {
    Manifest,
    Egress,
    Settings,
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = matches!(
        cli.command,
        Command::Validate(_) | Command::Plan { .. } | Command::Schema { .. } | Command::Fetch(_)
    );
    if !quiet {
        logging::init(
            cli.log_format,
            matches!(
                cli.command,
                Command::Serve(_)
                    | Command::Node(_)
                    | Command::Worker(_)
                    | Command::Gateway(_)
                    | Command::BallistaScheduler(_)
                    | Command::Executor(_)
            ),
        );
    }
    match cli.command {
        Command::Validate(inputs) => check::validate(&inputs),
        Command::Plan { inputs, json } => check::plan_cmd(&inputs, json),
        Command::Schema { kind } => schema::print(kind),
        Command::Egress { command } => egress::run(command),
        Command::Run(args) => runtime()?.block_on(embedded::run(args)),
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Fetch(args) => runtime()?.block_on(fetch::run(args)),
        Command::Serve(args) => runtime()?.block_on(control::serve(args)),
        Command::Node(args) => runtime()?.block_on(control::node(args)),
        Command::Worker(args) => runtime()?.block_on(control::worker(args)),
        Command::Gateway(args) => runtime()?.block_on(gateway::run(args)),
        Command::Submit(args) => runtime()?.block_on(ops::submit(args)),
        Command::Runs(args) => runtime()?.block_on(ops::runs(args)),
        Command::Cancel(args) => runtime()?.block_on(ops::cancel(args)),
        Command::Events(args) => runtime()?.block_on(events::run(args)),
        Command::Cost(args) => runtime()?.block_on(cost::run(args)),
        Command::BallistaScheduler(args) => runtime()?.block_on(ballista::scheduler(args)),
        Command::Executor(args) => runtime()?.block_on(ballista::executor(args)),
        Command::Token { command } => runtime()?.block_on(ops::token(command)),
        Command::Lake { command } => runtime()?.block_on(lake::run(command)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// `127.0.0.1:7070` → `http://127.0.0.1:7070`; an unspecified address is reached on loopback.
pub(crate) fn url_for(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!("{}://{}", if tls { "https" } else { "http" }, SocketAddr::new(ip, listen.port()))
}
