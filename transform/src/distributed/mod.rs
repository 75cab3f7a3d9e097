//! `engine: distributed`: a transform's query on an Apache DataFusion Ballista cluster.
//!
//! Only the query moves. The worker still resolves and pins the inputs, decides full or
//! incremental refresh, checks expectations on the rows as they stream back, and makes the one
//! commit to the output table; executors never write to the lake's tables.
//!
//! Inputs are shipped as plain Parquet scans of the pinned snapshot's files, not as Delta
//! scans: delta-rs 1.1 has no codec for its `DeltaScanExec`, so a Delta provider cannot be
//! encoded into Ballista's stages, while DataFusion's own protobuf encodes a `ListingTable`
//! and the `DataSourceExec` it plans. Reading the exact files of the pinned version is what
//! the Delta provider does too; tables whose files do not hold the rows as they are (deletion
//! vectors, column mapping, partition values kept in paths) are refused (see [`check_readable`]).

pub mod cluster;

use std::sync::Arc;

use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;
use switchyard_config::FailureClass;
use switchyard_config::value::TableName;
use switchyard_lake::{Lake, deltalake};

use crate::Error;

/// What the cluster did for one run, recorded with the attempt (`details.transform.distributed`)
/// and shown in the dashboard's run detail.
#[derive(Debug, Clone, Serialize)]
pub struct Distributed {
    /// The Ballista scheduler the query ran on (`df://HOST:PORT`).
    pub scheduler: String,
    /// Ballista's job id, to find the job in the scheduler's and executors' logs.
    pub job: Option<String>,
    /// The query's stages as the scheduler ran them, in order.
    pub stages: Vec<Stage>,
    /// The executors that served the final stage's output (`ID at HOST:PORT`).
    pub executors: Vec<String>,
    /// From submission to the scheduler starting the job, as the scheduler timed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<u64>,
    /// From the job's start to its last stage finishing on the executors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub id: u32,
    pub partitions: u32,
    /// The stage's operators, top first, indented by depth.
    pub operators: Vec<String>,
}

/// A session whose queries run on the Ballista scheduler at `scheduler` (`df://HOST:PORT`).
pub(crate) fn session(lake: &Lake, scheduler: &str) -> Result<SessionContext, Error> {
    use ballista_core::extension::{SessionConfigExt, SessionStateExt};
    let url = grpc_url(scheduler)?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(SessionConfig::new_with_ballista())
        .with_runtime_env(runtime(lake, None)?)
        .build()
        .upgrade_for_ballista(url)
        .map_err(|e| Error::internal(format!("the Ballista session: {e}")))?;
    Ok(SessionContext::new_with_state(state))
}

/// `df://HOST:PORT` as the gRPC address Ballista's client takes.
pub(crate) fn grpc_url(scheduler: &str) -> Result<String, Error> {
    let url = url::Url::parse(scheduler).map_err(|e| Error::Distributed {
        message: format!("`{scheduler}` is not a Ballista scheduler address: {e}"),
        class: FailureClass::Internal,
    })?;
    match (url.scheme(), url.host_str()) {
        ("df", Some(host)) => Ok(format!("http://{host}:{}", url.port().unwrap_or(50050))),
        _ => Err(Error::Distributed {
            message: format!("`{scheduler}` is not a Ballista scheduler address (df://HOST:PORT)"),
            class: FailureClass::Internal,
        }),
    }
}

/// A runtime that reaches the lake's object store, for the client, the scheduler (which lists
/// files when it plans) and executors (which read them). `spill` is where executors spill.
pub fn runtime(lake: &Lake, spill: Option<&std::path::Path>) -> Result<Arc<RuntimeEnv>, Error> {
    let registry = DefaultObjectStoreRegistry::new();
    if !lake.is_local() {
        let store = lake.root_object_store()?;
        registry.register_store(lake.root(), store);
    }
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(registry));
    if let Some(dir) = spill {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc().map_err(|e| Error::internal(format!("the query runtime: {e}")))
}

/// Refuses an input whose Parquet files alone do not give its rows at the pinned version.
fn check_readable(table: &TableName, delta: &deltalake::DeltaTable) -> Result<(), Error> {
    let snapshot = delta.snapshot().map_err(|cause| lake_error(table, cause))?;
    let refuse = |why: &str| Err(Error::NotDistributable { table: table.to_string(), why: why.to_owned() });
    if !snapshot.metadata().partition_columns().is_empty() {
        return refuse("it is partitioned (partition values live in file paths, not in the files)");
    }
    let config = snapshot.metadata().configuration();
    if config.get("delta.enableDeletionVectors").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return refuse("it has deletion vectors enabled (rows of its files may be deleted)");
    }
    if config.get("delta.columnMapping.mode").is_some_and(|m| !m.eq_ignore_ascii_case("none")) {
        return refuse("it uses column mapping (its files name columns differently)");
    }
    Ok(())
}

/// Registers `delta`'s files at the version the run reads (only `files`, relative to the table,
/// when given) as a Parquet scan under its `schema.table` name.
pub(crate) async fn register(
    ctx: &SessionContext,
    table: &TableName,
    delta: &deltalake::DeltaTable,
    files: Option<&[String]>,
) -> Result<(), Error> {
    check_readable(table, delta)?;
    let log_store = delta.log_store();
    let uris: Vec<String> = match files {
        Some(files) => files.iter().map(|f| log_store.to_uri(&deltalake::Path::from(f.as_str()))).collect(),
        None => delta.get_file_uris().map_err(|cause| lake_error(table, cause))?.collect(),
    };
    let schema = delta.snapshot().map_err(|cause| lake_error(table, cause))?.snapshot().arrow_schema();
    let format = ParquetFormat::default();
    let (paths, options) = if uris.is_empty() {
        // A version with no files: list the log directory for a suffix no file has, so the scan
        // is empty yet still a plain listing scan the cluster can plan.
        let log = format!("{}/_delta_log/", log_store.root_url().as_str().trim_end_matches('/'));
        (
            vec![listing_url(&log)?],
            ListingOptions::new(Arc::new(format)).with_file_extension(".switchyard-none"),
        )
    } else {
        let paths = uris.iter().map(|u| listing_url(u)).collect::<Result<Vec<_>, _>>()?;
        (paths, ListingOptions::new(Arc::new(format)).with_file_extension(".parquet"))
    };
    let config =
        ListingTableConfig::new_with_multi_paths(paths).with_listing_options(options).with_schema(schema);
    let provider = ListingTable::try_new(config).map_err(Error::query)?;
    crate::inputs::register_as(ctx, table, Arc::new(provider))
}

fn listing_url(uri: &str) -> Result<ListingTableUrl, Error> {
    ListingTableUrl::parse(uri).map_err(|e| Error::internal(format!("the file `{uri}`: {e}")))
}

/// A failure of the query on the cluster, classified: the cluster itself failing (an executor
/// lost, the scheduler unreachable) is `connectivity` and retried; anything else is about the
/// query (its SQL, types or data) and is `data`, as it would be on one worker. Ballista reports
/// both as DataFusion execution errors whose only structure is their text.
pub(crate) fn query_error<E: std::error::Error + 'static>(e: E) -> Error {
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    const CLUSTER: &[&str] = &[
        "transport error",
        "tcp connect error",
        "connection refused",
        "connection reset",
        "broken pipe",
        "executor lost",
        "executor is lost",
        "executor has been lost",
        "dead executor",
        "executor terminated",
        "no executors",
        "failed to connect",
        "error trying to connect",
        "unavailable",
        "fetchfailed",
        "fetch failed",
        "timed out",
    ];
    if CLUSTER.iter().any(|c| lower.contains(c)) {
        return Error::Distributed { message, class: FailureClass::Connectivity };
    }
    match Error::query(e) {
        Error::Query { message } => Error::Query { message },
        other => other,
    }
}

/// Asks the scheduler what the job did: its stages and the executors holding its output.
/// `None` when the plan did not run on the cluster; a scheduler that no longer answers leaves
/// the stages empty rather than failing a run whose rows are already written.
pub(crate) async fn report(physical: &Arc<dyn ExecutionPlan>, scheduler: &str) -> Option<Distributed> {
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use ballista_core::serde::protobuf::{GetJobMetricsParams, GetJobStatusParams, job_status};
    let job = find_job(physical.as_ref());
    let mut out = Distributed {
        scheduler: scheduler.to_owned(),
        job: job.clone(),
        stages: vec![],
        executors: vec![],
        queued_ms: None,
        ran_ms: None,
    };
    let (Some(job), Ok(url)) = (job, grpc_url(scheduler)) else {
        return Some(out);
    };
    let Ok(mut client) = SchedulerGrpcClient::connect(url).await else {
        return Some(out);
    };
    if let Ok(metrics) = client.get_job_metrics(GetJobMetricsParams { job_id: job.clone() }).await {
        out.stages = metrics
            .into_inner()
            .stages
            .into_iter()
            .map(|s| Stage {
                id: s.stage_id,
                partitions: s.partitions,
                operators: s
                    .operators
                    .iter()
                    .map(|o| format!("{}{}", "  ".repeat(o.depth as usize), o.operator_desc))
                    .collect(),
            })
            .collect();
    }
    if let Ok(status) = client.get_job_status(GetJobStatusParams { job_id: job }).await {
        if let Some(job_status::Status::Successful(done)) = status.into_inner().status.and_then(|s| s.status)
        {
            let mut executors: Vec<String> = done
                .partition_location
                .iter()
                .filter_map(|p| p.executor_meta.as_ref())
                .map(|e| format!("{} at {}:{}", e.id, e.host, e.port))
                .collect();
            executors.sort();
            executors.dedup();
            out.executors = executors;
            out.queued_ms = done.started_at.checked_sub(done.queued_at);
            out.ran_ms = done.ended_at.checked_sub(done.started_at);
        }
    }
    Some(out)
}

/// The Ballista job id of the distributed query in `plan`, once it has run.
fn find_job(plan: &dyn ExecutionPlan) -> Option<String> {
    use ballista_core::execution_plans::DistributedQueryExec;
    use datafusion_proto::protobuf::LogicalPlanNode;
    if let Some(exec) = plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() {
        return exec.job_id().map(|j| j.to_string());
    }
    plan.children().into_iter().find_map(|c| find_job(c.as_ref()))
}

fn lake_error(table: &TableName, cause: deltalake::DeltaTableError) -> Error {
    Error::Lake(Box::new(switchyard_lake::Error::Delta { table: table.to_string(), cause }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_become_grpc_urls() {
        assert_eq!(grpc_url("df://10.0.0.5:50050").unwrap(), "http://10.0.0.5:50050");
        assert_eq!(grpc_url("df://scheduler").unwrap(), "http://scheduler:50050");
        assert!(grpc_url("http://scheduler:50050").is_err());
        assert!(grpc_url("scheduler:50050").is_err());
    }

    #[test]
    fn cluster_failures_are_connectivity_and_query_failures_are_data() {
        use deltalake::datafusion::error::DataFusionError;
        let lost = DataFusionError::Execution(
            "Job abc failed: Task failed due to runtime execution error: FetchFailed(\"exec-1\", 1, 0, \"transport error\")".into(),
        );
        assert_eq!(query_error(lost).class(), FailureClass::Connectivity);
        let unreachable = DataFusionError::Execution(
            "Status { code: Unavailable, message: \"tcp connect error: Connection refused (os error 111)\" }"
                .into(),
        );
        assert_eq!(query_error(unreachable).class(), FailureClass::Connectivity);
        let bad = DataFusionError::Execution(
            "Job abc failed: Arrow error: Cast error: Cannot cast string 'x' to Int64".into(),
        );
        assert_eq!(query_error(bad).class(), FailureClass::Data);
    }
}
