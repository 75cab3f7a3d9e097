//! `switchyard ballista-scheduler` and `switchyard executor`: the Apache DataFusion Ballista
//! cluster that `engine: distributed` transforms run on. They are Ballista's own scheduler and
//! executor, started from this binary so that they open the lake the settings name (`[lake]`,
//! with its storage options and the same credential chain as workers). Executors are serverless
//! compute: they reach the lake and the scheduler, nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use switchyard_lake::Lake;
use switchyard_transform::distributed::cluster;

use super::inputs::load_inputs;

#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    /// Address for executors and clients (gRPC).
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Seconds without a heartbeat before an executor is declared lost and its tasks run
    /// elsewhere.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    executor_timeout: u64,
    /// Settings file, for `[lake]`. Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler. Default: the settings' `[transform.ballista] scheduler`.
    #[arg(long, value_name = "df://HOST:PORT", value_parser = scheduler_address)]
    scheduler: Option<String>,
    /// Address other executors and clients fetch results from (Arrow Flight); it is advertised
    /// to the scheduler as is, so it must be reachable from them.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// The executor's gRPC port for task launches, on the same host. Default: the Flight port + 1.
    #[arg(long, value_name = "PORT")]
    grpc_port: Option<u16>,
    /// Concurrent tasks. Default: the cores.
    #[arg(long, value_name = "N")]
    slots: Option<usize>,
    /// Where shuffle files and spills go. Default: a directory under the system's temporary one.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    heartbeat: u64,
    /// Settings file, for `[lake]` and the scheduler. Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

/// `--scheduler`: refused at the command line unless it is `df://HOST[:PORT]`, what the settings'
/// `[transform.ballista] scheduler` takes too.
fn scheduler_address(value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "df" && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(value.to_owned()),
        _ => Err(format!(
            "`{value}` is not a Ballista scheduler address: write df://HOST:PORT, e.g. df://10.0.0.5:50050"
        )),
    }
}

fn lake(settings: Option<PathBuf>) -> anyhow::Result<(Lake, switchyard_config::settings::Settings)> {
    let inputs = load_inputs(settings, None, vec![])?;
    let settings = inputs.settings.settings;
    let lake = Lake::from_settings(&settings.lake).context("opening the lake the settings name")?;
    Ok((lake, settings))
}

pub(crate) async fn scheduler(args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    let (lake, _) = lake(args.settings)?;
    tracing::info!(listen = %args.listen, lake = %switchyard_lake::redact_url(lake.root().as_str()), "Ballista scheduler starting.");
    cluster::serve_scheduler(&lake, args.listen, args.executor_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; hint: {}", e.hint()))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    let (lake, settings) = lake(args.settings)?;
    let scheduler = match args.scheduler.or_else(|| settings.transform.ballista.map(|b| b.scheduler)) {
        Some(s) => s,
        None => anyhow::bail!(
            "no scheduler to serve: pass --scheduler df://HOST:PORT or set [transform.ballista] scheduler in the settings"
        ),
    };
    let grpc_port = match args.grpc_port {
        Some(p) => p,
        None => {
            args.listen.port().checked_add(1).context("--listen's port is the last one; pass --grpc-port")?
        }
    };
    tracing::info!(listen = %args.listen, grpc_port, scheduler = %scheduler, "Ballista executor starting.");
    let options = cluster::ExecutorOptions {
        scheduler,
        flight: args.listen,
        grpc_port,
        slots: args.slots,
        work_dir: args.work_dir,
        heartbeat_s: args.heartbeat.max(1),
    };
    cluster::serve_executor(&lake, options).await.map_err(|e| anyhow::anyhow!("{e}; hint: {}", e.hint()))?;
    Ok(ExitCode::SUCCESS)
}
