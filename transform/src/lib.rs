//! Serverless transforms: a task's SQL over Delta tables, run by DataFusion, written back to the
//! lake.
//!
//! - The inputs are the lake tables the query names, read at the versions the scheduler passes
//!   (or the latest), so a run is reproducible from its record.
//! - Idempotent: the output commit carries a `txn` whose app id is the task plus a fingerprint of
//!   its query, expectations and sink, and whose version is the sum of the input versions — which
//!   grows whenever any input gains a version. Re-running on the same inputs commits nothing.
//! - Expectations (`warn`, `drop`, `fail`, `quarantine`) are evaluated on the output rows as they
//!   stream to the writers, before anything is committed; see [`expectations`].
//! - Output is written as it is produced, and visible only in the commit at the end (see
//!   the `write` module), so a result larger than the worker's memory is fine.
//! - Incremental refresh when inputs only had appends and the query allows it; see [`refresh`].
//!
//! Depends on `switchyard-config` and `switchyard-lake`, and never on `switchyard-gateway`: a
//! serverless worker has no egress except the lake. A query that names a URL or a file path is
//! refused before anything is read ([`Error::OutsideLake`]).

#![forbid(unsafe_code)]

mod budget;
pub mod distributed;
mod error;
pub mod expectations;
mod inputs;
mod profile;
mod refresh;
mod shape;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use switchyard_config::manifest::{Expectation, SinkSpec};
use switchyard_config::value::TableName;
use switchyard_lake::arrow::datatypes::SchemaRef;
use switchyard_lake::{Lake, Position, deltalake};

pub use budget::{Budget, MemoryUse};
pub use error::Error;
pub use expectations::Counted;
pub use profile::{OperatorTime, Profile};

/// One transform run.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub job: &'a str,
    pub task: &'a str,
    pub sql: &'a str,
    pub sink: &'a SinkSpec,
    pub expectations: &'a [Expectation],
    /// Recompute from all input rows even if an incremental run is possible.
    pub full_refresh: bool,
    /// Input versions to read, by table name; tables not named are read at their latest version.
    pub input_versions: &'a BTreeMap<String, i64>,
    /// `engine: distributed`: the Ballista scheduler (`df://HOST:PORT`) the query runs on. `None`
    /// runs it in this process. Either way this process writes and commits the output.
    pub distributed: Option<&'a str>,
}

/// What a run did, recorded with the attempt (`details.transform`).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub refresh: Refresh,
    pub input_versions: BTreeMap<String, u64>,
    pub output: Option<Written>,
    pub expectations: Vec<Counted>,
    pub quarantined: u64,
    /// Against a [`Budget`]: what the query's operators held at most and spilled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryUse>,
    /// Where the time went (absent when the run was skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// `engine: distributed`: the cluster's stages and executors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributed: Option<distributed::Distributed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refresh {
    pub mode: RefreshMode,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshMode {
    Full,
    Incremental,
    /// The output already holds this query's result for these input versions.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    pub table: String,
    /// The output table's version after the commit.
    pub version: u64,
    /// Rows the commit wrote.
    pub rows: u64,
}

impl Outcome {
    /// The attempt's `details` JSON.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({ "transform": self })
    }
}

/// Runs one transform against `lake`, with no memory limit.
pub async fn run(lake: &Lake, request: &Request<'_>) -> Result<Outcome, Error> {
    run_within(lake, request, None).await
}

/// Runs one transform against `lake`, within `budget` when one is given.
pub async fn run_within(
    lake: &Lake,
    request: &Request<'_>,
    budget: Option<&Budget>,
) -> Result<Outcome, Error> {
    let mut clock = std::time::Instant::now();
    let mut lap = move || {
        let now = std::time::Instant::now();
        profile::ms(now - std::mem::replace(&mut clock, now))
    };
    let mut spent = Profile::default();
    let (ctx, peak) = budget::session(budget)?;
    // The query's own context: this process's, or one that ships it to the Ballista cluster.
    // Commits (and an upsert's merge) always run on this process's.
    let remote = request.distributed.map(|scheduler| distributed::session(lake, scheduler)).transpose()?;
    let qctx = remote.as_ref().unwrap_or(&ctx);
    let query_error = |e: deltalake::datafusion::error::DataFusionError| match remote {
        Some(_) => distributed::query_error(e),
        None => Error::query(e),
    };
    let inputs = inputs::referenced(&ctx, request.sql)?;
    // Each input's log is replayed once: the handle that tells its version is the one scanned.
    let mut versions: BTreeMap<TableName, u64> = BTreeMap::new();
    let mut handles = BTreeMap::new();
    for table in &inputs {
        let pinned = match request.input_versions.get(table.as_str()) {
            Some(&v) => {
                Some(u64::try_from(v).map_err(|_| Error::internal(format!("negative version for {table}")))?)
            }
            None => None,
        };
        let handle = lake.table(table, pinned).await?.ok_or_else(|| Error::MissingInput {
            table: table.to_string(),
            location: lake.location(table).to_string(),
        })?;
        versions.insert(table.clone(), handle.version().unwrap_or(0));
        handles.insert(table.clone(), handle);
    }
    let input_versions: BTreeMap<String, u64> = versions.iter().map(|(t, v)| (t.to_string(), *v)).collect();
    let app_id = format!("switchyard/{}/{}/{}", request.job, request.task, fingerprint(request));
    let position = Position { app_id: app_id.clone(), version: versions.values().sum::<u64>() as i64 };
    let sink = &request.sink.table;
    if let Some(done) = lake.position(sink, &app_id).await? {
        if done >= position.version {
            return Ok(Outcome {
                refresh: Refresh {
                    mode: RefreshMode::Skipped,
                    reason: format!(
                        "{sink} already holds this query's result for these input versions (txn {app_id} at {done})"
                    ),
                },
                input_versions,
                output: None,
                expectations: vec![],
                quarantined: 0,
                memory: None,
                profile: None,
                distributed: None,
            });
        }
    }
    for (table, handle) in &handles {
        register(qctx, remote.is_some(), table, handle, None).await?;
    }
    spent.inputs_ms = lap();
    let df = qctx.sql(request.sql).await.map_err(query_error)?;
    spent.plan_ms = lap();
    let plan = refresh::decide(lake, request, &app_id, &versions, shape::shape(df.logical_plan())).await?;
    spent.refresh_ms = lap();
    let df = match &plan {
        refresh::Plan::Full { .. } => df,
        refresh::Plan::Incremental { table, files, .. } => {
            let handle =
                handles.get(table).ok_or_else(|| Error::internal(format!("{table} is not an input")))?;
            register(qctx, remote.is_some(), table, handle, Some(files)).await?;
            qctx.sql(request.sql).await.map_err(query_error)?
        }
    };
    let output = plain(Arc::new(df.schema().as_arrow().clone()));
    let mut checker = expectations::Checker::new(request.expectations, output.clone());
    let mut selected: Vec<deltalake::datafusion::logical_expr::Expr> =
        df.schema().columns().into_iter().map(deltalake::datafusion::logical_expr::Expr::Column).collect();
    for (i, e) in request.expectations.iter().enumerate() {
        let check = df.parse_sql_expr(&e.check).map_err(|err| Error::Expectation {
            name: e.name.clone(),
            check: e.check.clone(),
            message: format!("the check does not fit the query's output: {err}"),
        })?;
        selected.push(check.alias(format!("{}{i}", expectations::CHECK_PREFIX)));
    }
    let df = df.select(selected).map_err(Error::query)?;
    let physical = df.create_physical_plan().await.map_err(query_error)?;
    spent.plan_ms += lap();
    let mut sink =
        write::Sink::open(lake, request, &plan, output, checker.quarantine_schema(), budget).await?;
    spent.inputs_ms += lap();
    // Rows go to the writers as the query yields them; nothing becomes visible before the
    // commits below, and whatever was written is deleted if the run fails first.
    let mut writing = std::time::Duration::ZERO;
    let streamed = async {
        let mut stream =
            deltalake::datafusion::physical_plan::execute_stream(physical.clone(), qctx.task_ctx())
                .map_err(query_error)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_error)?;
            let started = std::time::Instant::now();
            let batch = switchyard_lake::plain_types(&batch).map_err(|e| Error::internal(e.to_string()))?;
            sink.push(checker.push(batch)?).await?;
            writing += started.elapsed();
        }
        checker.finish()
    }
    .await;
    let streaming = lap();
    spent.write_ms = profile::ms(writing);
    spent.query_ms = (streaming - spent.write_ms).max(0.0);
    let counts = match streamed {
        Ok(counts) => counts,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    let memory = budget.map(|b| MemoryUse {
        budget_bytes: b.memory_bytes,
        peak_pool_bytes: peak.as_ref().map_or(0, |p| p.peak()),
        spilled_bytes: budget::spilled_bytes(physical.as_ref()),
    });
    let cluster = match request.distributed {
        Some(scheduler) => distributed::report(&physical, scheduler).await,
        None => None,
    };
    let quarantined = checker.quarantined_rows();
    let (mode, reason) = match &plan {
        refresh::Plan::Full { reason } => (RefreshMode::Full, reason.clone()),
        refresh::Plan::Incremental { reason, .. } => (RefreshMode::Incremental, reason.clone()),
    };
    let note = serde_json::json!({
        "app_id": app_id,
        "inputs": input_versions,
        "mode": mode,
        "job": request.job,
        "task": request.task,
    });
    let written = sink.commit(&ctx, request, &position, note).await?;
    spent.commit_ms = lap();
    spent.operators = profile::operators(physical.as_ref());
    Ok(Outcome {
        refresh: Refresh { mode: if written.is_some() { mode } else { RefreshMode::Skipped }, reason },
        input_versions,
        output: written,
        expectations: counts,
        quarantined,
        memory,
        profile: Some(spent),
        distributed: cluster,
    })
}

/// Registers an input for the engine that runs the query: the Delta reader here, or a Parquet
/// scan of the pinned files that Ballista can ship.
async fn register(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    remote: bool,
    table: &TableName,
    handle: &deltalake::DeltaTable,
    files: Option<&[String]>,
) -> Result<(), Error> {
    if remote {
        distributed::register(ctx, table, handle, files).await
    } else {
        inputs::register(ctx, table, handle, files).await
    }
}

/// The schema with string and binary views as their plain types (what Delta tables declare).
fn plain(schema: SchemaRef) -> SchemaRef {
    use switchyard_lake::arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                t => t.clone(),
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A stable short hash of what determines the output: a changed query is a new writer, whose
/// first run recomputes fully.
fn fingerprint(request: &Request<'_>) -> String {
    // FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain([0xffu8].iter()) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(request.sql.as_bytes());
    for e in request.expectations {
        feed(e.name.as_bytes());
        feed(e.check.as_bytes());
        feed(expectations::action(e.on_violation.unwrap_or_default()).as_bytes());
    }
    feed(format!("{:?}", request.sink.mode.unwrap_or_default()).as_bytes());
    for k in &request.sink.keys {
        feed(k.as_bytes());
    }
    format!("{:012x}", hash >> 16)
}
