//! Writing a run's rows: quarantined rows first, then the output, each commit carrying the run's
//! position so a retry after a crash between the two commits neither loses nor repeats rows.

use std::sync::Arc;

use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use futures_util::StreamExt;
use switchyard_config::manifest::WriteMode as SinkMode;
use switchyard_config::value::TableName;
use switchyard_lake::arrow::compute::cast;
use switchyard_lake::arrow::datatypes::SchemaRef;
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Lake, Position, WriteMode, deltalake};

use crate::expectations::Checker;
use crate::refresh::Plan;
use crate::shape::{Combine, Shape};
use crate::{Error, Request, Written};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    lake: &Lake,
    ctx: &SessionContext,
    request: &Request<'_>,
    plan: &Plan,
    position: &Position,
    note: serde_json::Value,
    output: SchemaRef,
    checker: Checker,
) -> Result<Option<Written>, Error> {
    let sink = &request.sink.table;
    let sink_mode = request.sink.mode.unwrap_or_default();
    let full_overwrite = matches!(plan, Plan::Full { .. }) && sink_mode == SinkMode::Overwrite;
    let positions = std::slice::from_ref(position);
    if !checker.quarantined.is_empty() {
        let table: TableName = format!("{sink}__quarantine")
            .parse()
            .map_err(|e| Error::internal(format!("quarantine table name: {e}")))?;
        // The quarantine mirrors the output: replaced when the output is, appended otherwise.
        let mode = if full_overwrite { WriteMode::Overwrite } else { WriteMode::Append };
        lake.commit(&table, checker.quarantined.clone(), mode, positions).await?;
    }
    let mut batches = checker.kept;
    if batches.is_empty() {
        // An empty result still commits: it creates the table, empties an overwritten one, and
        // records the position so the same inputs are not processed again.
        batches.push(RecordBatch::new_empty(output.clone()));
    }
    let committed = match plan {
        Plan::Incremental { shape: Shape::Aggregate { columns, .. }, .. } => {
            let combined = combine(lake, ctx, sink, columns, batches, &output).await?;
            lake.commit_noted(sink, combined, WriteMode::Overwrite, positions, Some(note)).await?
        }
        Plan::Incremental { .. } | Plan::Full { .. } => match sink_mode {
            SinkMode::Merge => lake.merge(sink, batches, &request.sink.keys, positions, Some(note)).await?,
            SinkMode::Overwrite if full_overwrite => {
                lake.commit_noted(sink, batches, WriteMode::Overwrite, positions, Some(note)).await?
            }
            SinkMode::Overwrite | SinkMode::Append => {
                lake.commit_noted(sink, batches, WriteMode::Append, positions, Some(note)).await?
            }
        },
    };
    if committed.skipped {
        return Ok(None);
    }
    Ok(Some(Written { table: sink.to_string(), version: committed.table_version, rows: committed.rows }))
}

/// The previous output's groups merged with the increment's: keys matched NULL-safely, sums and
/// counts added, minima and maxima compared; groups on one side only are kept as they are.
async fn combine(
    lake: &Lake,
    ctx: &SessionContext,
    sink: &TableName,
    columns: &[Combine],
    increment: Vec<RecordBatch>,
    output: &SchemaRef,
) -> Result<Vec<RecordBatch>, Error> {
    let previous = lake.read(sink, None).await?;
    let mem = |batches: Vec<RecordBatch>| {
        MemTable::try_new(output.clone(), vec![batches]).map_err(|e| Error::internal(e.to_string()))
    };
    let previous = previous.iter().map(|b| conform(b, output)).collect::<Result<Vec<_>, _>>()?;
    ctx.register_table("__switchyard_previous", Arc::new(mem(previous)?)).map_err(Error::query)?;
    ctx.register_table("__switchyard_increment", Arc::new(mem(increment)?)).map_err(Error::query)?;
    let q = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let mut select = Vec::new();
    let mut on = Vec::new();
    for c in columns {
        let (p, i) = (format!("p.{}", q(c.name())), format!("i.{}", q(c.name())));
        let both = |f: &str| format!("CASE WHEN {p} IS NULL THEN {i} WHEN {i} IS NULL THEN {p} ELSE {f} END");
        let expr = match c {
            Combine::Key(_) => {
                on.push(format!("{p} IS NOT DISTINCT FROM {i}"));
                format!("COALESCE({p}, {i})")
            }
            Combine::Add(_) => both(&format!("{p} + {i}")),
            Combine::Least(_) => both(&format!("least({p}, {i})")),
            Combine::Greatest(_) => both(&format!("greatest({p}, {i})")),
        };
        select.push(format!("{expr} AS {}", q(c.name())));
    }
    let sql = format!(
        "SELECT {} FROM __switchyard_previous p FULL OUTER JOIN __switchyard_increment i ON {}",
        select.join(", "),
        on.join(" AND ")
    );
    let mut stream =
        ctx.sql(&sql).await.map_err(Error::query)?.execute_stream().await.map_err(Error::query)?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        out.push(conform(&batch.map_err(Error::query)?, output)?);
    }
    Ok(out)
}

/// `batch` with `schema`'s column types (same columns, in order).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Error> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(e.to_string()))?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::internal(e.to_string()))
}
