//! The Ballista scheduler and executors as Switchyard runs them (`switchyard ballista-scheduler`,
//! `switchyard executor`): Ballista's own processes, started from this binary so that they reach
//! the lake's object store with the same settings and credential chain as serverless workers.
//! Ballista's stock binaries know only the local disk and, through their own S3 options, one
//! store configured per query; ours register the lake the settings name before any query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::prelude::SessionConfig;
use switchyard_config::FailureClass;
use switchyard_lake::{Lake, deltalake};

use crate::Error;

/// Runs a Ballista scheduler on `address` until the process is stopped.
///
/// Executors that miss heartbeats for `executor_timeout` are declared lost and their tasks run
/// again elsewhere, up to Ballista's `task_max_failures`.
pub async fn serve_scheduler(lake: &Lake, address: SocketAddr, executor_timeout_s: u64) -> Result<(), Error> {
    let runtime = super::runtime(lake, None)?;
    let mut config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        external_host: address.ip().to_string(),
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: executor_timeout_s,
        expire_dead_executor_interval_seconds: executor_timeout_s.clamp(1, 15),
        ..SchedulerConfig::default()
    };
    config.override_session_builder =
        Some(Arc::new(move |config: SessionConfig| Ok(session_state(config, runtime.clone()))));
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(cluster_error)?;
    ballista_scheduler::scheduler_process::start_server(cluster, address, Arc::new(config))
        .await
        .map_err(cluster_error)
}

/// Where an executor listens and whom it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `df://HOST:PORT`.
    pub scheduler: String,
    /// The address executors and the client fetch shuffle and result partitions from (Arrow
    /// Flight); also what the executor advertises, so it must be reachable from them.
    pub flight: SocketAddr,
    /// The executor's own gRPC port (task launches in push scheduling), on the same host.
    pub grpc_port: u16,
    /// Task slots; defaults to the cores.
    pub slots: Option<usize>,
    /// Where shuffle files and spills go; a temporary directory when not given.
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_s: u64,
}

/// Runs a Ballista executor until the process is stopped (SIGTERM or Ctrl-C drain it first).
pub async fn serve_executor(lake: &Lake, options: ExecutorOptions) -> Result<(), Error> {
    let scheduler = url::Url::parse(&super::grpc_url(&options.scheduler)?)
        .map_err(|e| Error::internal(format!("the scheduler address: {e}")))?;
    let work_dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("switchyard-executor-{}", options.flight.port())),
    };
    std::fs::create_dir_all(&work_dir).map_err(|e| Error::Distributed {
        message: format!("cannot create the executor's work directory {}: {e}", work_dir.display()),
        class: FailureClass::Internal,
    })?;
    let runtime = super::runtime(lake, Some(&work_dir))?;
    let mut config = ballista_executor::executor_process::ExecutorProcessConfig {
        bind_host: options.flight.ip().to_string(),
        external_host: Some(options.flight.ip().to_string()),
        port: options.flight.port(),
        grpc_port: options.grpc_port,
        scheduler_host: scheduler.host_str().unwrap_or("localhost").to_owned(),
        scheduler_port: scheduler.port().unwrap_or(50050),
        scheduler_connect_timeout_seconds: 30,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: options.heartbeat_s,
        ..Default::default()
    };
    if let Some(slots) = options.slots {
        config.vcores = slots.max(1);
    }
    config.override_runtime_producer = Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone())));
    ballista_executor::executor_process::start_executor_process(Arc::new(config)).await.map_err(cluster_error)
}

/// The scheduler's session for planning a submitted query: Ballista's default, with the lake's
/// object store so the Parquet scans of inputs can be listed.
fn session_state(
    config: SessionConfig,
    runtime: Arc<deltalake::datafusion::execution::runtime_env::RuntimeEnv>,
) -> deltalake::datafusion::execution::SessionState {
    use ballista_core::extension::{
        ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions,
    };
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .build()
}

fn cluster_error(e: ballista_core::error::BallistaError) -> Error {
    let message = e.to_string();
    let class = if matches!(e, ballista_core::error::BallistaError::Configuration(_)) {
        FailureClass::Internal
    } else {
        FailureClass::Connectivity
    };
    Error::Distributed { message, class }
}
