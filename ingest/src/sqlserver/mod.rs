//! SQL Server (`kind: sqlserver`): tiberius over a socket from the gateway's dialer.
//!
//! A load first asks SQL Server to describe the query's columns (`sp_describe_first_result_set`),
//! so every column's Arrow type — a decimal's precision and scale included — is fixed before a
//! row is read, and a column of a type that is not loaded fails at once, naming it. The rows then
//! stream into Arrow batches; they are never all in memory.
//!
//! - With `watermark`, a load reads only rows past the last committed watermark, in watermark
//!   order, and commits whenever the flush limits are reached — at a change of watermark, never
//!   between rows that share one (see `cut.rs`). Each commit records its last watermark in the
//!   table's `txn` under `<app id>/wm`: integers as they are, date/time columns as microseconds
//!   since the Unix epoch (UTC for `datetimeoffset`).
//! - Without, the whole result is one commit at the end, under `<app id>/run-<run>`: a retry of
//!   the same run after that commit finds it and reads nothing; the next run loads afresh.
//!
//! Type mapping: tinyint/smallint → Int16, int → Int32, bigint → Int64, bit → Boolean,
//! decimal/numeric(p,s) → Decimal128(p,s), money/smallmoney → Decimal128(19|10,4), float →
//! Float64, real → Float32, (n)char/(n)varchar/(n)text → Utf8, uniqueidentifier → Utf8 (lowercase
//! canonical text), (var)binary/image/rowversion → Binary, date → Date32,
//! datetime/datetime2/smalldatetime → Timestamp(µs), datetimeoffset → Timestamp(µs, UTC). Anything
//! else (xml, sql_variant, time, CLR types) is a `data` error asking for a CAST in the query.

mod classify;
mod cut;
mod describe;
mod ident;
mod query;
mod session;
mod types;
mod wire;

use std::any::Any;

use switchyard_config::FailureClass;
use switchyard_config::manifest::DatabaseSource as Spec;
use switchyard_gateway::dial::Target;
use switchyard_lake::{TableWriter, WriteMode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::session::{Load, Session};
use crate::chunk::{Chunk, Source};
use crate::{Context, Error, Limits};

const DEFAULT_PORT: u16 = 1433;

/// A query's rows, read on a task of their own (see `session.rs`).
#[derive(Debug)]
pub struct SqlServerSource {
    name: String,
    chunks: mpsc::Receiver<Chunk>,
    /// The reading task; its result says how the rows ended.
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl SqlServerSource {
    pub async fn open(
        spec: &Spec,
        ctx: &Context,
        writer: &TableWriter,
        mode: WriteMode,
        limits: Limits,
    ) -> Result<Self, Error> {
        let port = spec.port.map_or(DEFAULT_PORT, |p| p.0);
        let name = format!("sqlserver {}:{port}/{}", spec.host, spec.database);
        let load = match &spec.watermark {
            Some(_) if mode == WriteMode::Overwrite => {
                return Err(Error::config(
                    format!(
                        "{name}: `watermark` loads only new rows, and `mode: overwrite` would replace the table with just those"
                    ),
                    "use `mode: append` with a watermark, or drop `watermark` to reload everything each run",
                ));
            }
            Some(column) => {
                let app_id = format!("{}/wm", ctx.app_id());
                let last = writer.position(&app_id).await?;
                Load::Incremental { column: column.clone(), app_id, last }
            }
            None => {
                let app_id = format!("{}/run-{}", ctx.app_id(), ctx.run);
                if writer.position(&app_id).await?.is_some() {
                    tracing::info!(source = %name, "This run's load is already committed; nothing to read.");
                    return Ok(SqlServerSource { name, chunks: mpsc::channel(1).1, task: None });
                }
                Load::Full { app_id }
            }
        };
        let password = crate::secret::password(spec.password_env.as_deref(), spec.password_file.as_deref())?;
        let mut target = Target::parse(&spec.host, port)?;
        target.task = Some(format!("{}/{}", ctx.job, ctx.task));
        let session = Session {
            name: name.clone(),
            dialer: ctx.dialer.clone(),
            target,
            host: spec.host.clone(),
            database: spec.database.clone(),
            user: spec.user.clone(),
            password,
            query: spec.query.clone(),
            load,
            limits,
        };
        let (tx, chunks) = mpsc::channel(1);
        let task = tokio::spawn(session.run(tx));
        Ok(SqlServerSource { name, chunks, task: Some(task) })
    }
}

impl Source for SqlServerSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        if let Some(chunk) = self.chunks.recv().await {
            return Ok(Some(chunk));
        }
        // No more chunks: the task ended, and its result says whether the rows did.
        let Some(task) = self.task.take() else { return Ok(None) };
        match task.await {
            Ok(result) => result.map(|()| None),
            Err(e) => Err(Error::source(
                &self.name,
                FailureClass::Internal,
                format!("the SQL Server reader stopped: {}", stopped(e)),
                "a fault in the driver or this source; report it with the task's log",
            )),
        }
    }
}

impl Drop for SqlServerSource {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn stopped(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    let panic: Box<dyn Any + Send> = e.into_panic();
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}
