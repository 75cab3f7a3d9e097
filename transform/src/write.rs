//! Writing a run's rows as the query yields them: quarantined rows and the output each stream
//! into a staged write (Parquet files, not yet visible), and commit at the end, quarantine first,
//! each commit carrying the run's position, so a retry after a crash between the two commits
//! neither loses nor repeats rows, and a crash before them leaves nothing visible.
//!
//! Two outputs are combined with the table's rows rather than written as they come, so they are
//! held until the query ends: an upsert on keys (deltalake's MERGE takes its source whole) and an
//! incremental aggregate (its groups are merged with the previous ones). Both are usually far
//! smaller than their inputs; see the README.

use std::sync::Arc;

use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use futures_util::StreamExt;
use switchyard_config::manifest::WriteMode as SinkMode;
use switchyard_config::value::TableName;
use switchyard_lake::arrow::compute::cast;
use switchyard_lake::arrow::datatypes::SchemaRef;
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Lake, Position, StagedWrite, WriteMode, deltalake};

use crate::expectations::Split;
use crate::refresh::Plan;
use crate::shape::{Combine, Shape};
use crate::{Budget, Error, Request, Written};

/// Where a run's rows go while the query runs.
pub(crate) struct Sink {
    lake: Lake,
    sink: TableName,
    output: SchemaRef,
    quarantine_schema: SchemaRef,
    /// How the quarantine changes: replaced when the output is, appended otherwise.
    quarantine_mode: WriteMode,
    /// Opened on the first quarantined row: a run with none leaves the quarantine table alone.
    quarantine: Option<StagedWrite>,
    row_group_bytes: Option<usize>,
    rows: Rows,
}

enum Rows {
    Staged(Box<StagedWrite>),
    /// Rows combined with the table's at commit (merge, incremental aggregate).
    Held {
        batches: Vec<RecordBatch>,
        combine: Option<Vec<Combine>>,
    },
}

impl Sink {
    pub(crate) async fn open(
        lake: &Lake,
        request: &Request<'_>,
        plan: &Plan,
        output: SchemaRef,
        quarantine_schema: SchemaRef,
        budget: Option<&Budget>,
    ) -> Result<Sink, Error> {
        // Within a budget, the output's encoders (one per core at most) together may hold an
        // eighth of it before flushing row groups, and the quarantine's another eighth.
        let lanes = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let row_group_bytes = budget.map(|b| {
            usize::try_from(b.memory_bytes / (8 * lanes))
                .unwrap_or(usize::MAX)
                .clamp(1 << 20, switchyard_lake::ROW_GROUP_BYTES)
        });
        let sink = request.sink.table.clone();
        let sink_mode = request.sink.mode.unwrap_or_default();
        let full_overwrite = matches!(plan, Plan::Full { .. }) && sink_mode == SinkMode::Overwrite;
        let rows = match (plan, sink_mode) {
            (Plan::Incremental { shape: Shape::Aggregate { columns, .. }, .. }, _) => {
                Rows::Held { batches: Vec::new(), combine: Some(columns.clone()) }
            }
            (_, SinkMode::Merge) => Rows::Held { batches: Vec::new(), combine: None },
            _ => {
                let mode = if full_overwrite { WriteMode::Overwrite } else { WriteMode::Append };
                Rows::Staged(Box::new(lake.stage(&sink, output.clone(), mode, row_group_bytes).await?))
            }
        };
        Ok(Sink {
            lake: lake.clone(),
            sink,
            output,
            quarantine_schema,
            quarantine_mode: if full_overwrite { WriteMode::Overwrite } else { WriteMode::Append },
            quarantine: None,
            row_group_bytes,
            rows,
        })
    }

    pub(crate) async fn push(&mut self, split: Split) -> Result<(), Error> {
        if let Some(bad) = split.quarantined {
            if self.quarantine.is_none() {
                let table = quarantine_table(&self.sink)?;
                let schema = self.quarantine_schema.clone();
                let staged =
                    self.lake.stage(&table, schema, self.quarantine_mode, self.row_group_bytes).await?;
                self.quarantine = Some(staged);
            }
            if let Some(quarantine) = &mut self.quarantine {
                quarantine.write(&bad).await?;
            }
        }
        if let Some(kept) = split.kept {
            match &mut self.rows {
                Rows::Staged(staged) => staged.write(&kept).await?,
                Rows::Held { batches, .. } => batches.push(kept),
            }
        }
        Ok(())
    }

    /// Drops everything written (a failed query or a `fail` expectation): nothing is committed.
    pub(crate) async fn abort(self) {
        if let Some(q) = self.quarantine {
            q.abort().await;
        }
        if let Rows::Staged(staged) = self.rows {
            staged.abort().await;
        }
    }

    /// Commits the quarantine, then the output. An empty result still commits: it creates the
    /// table, empties an overwritten one, and records the position so the same inputs are not
    /// processed again.
    pub(crate) async fn commit(
        self,
        ctx: &SessionContext,
        request: &Request<'_>,
        position: &Position,
        note: serde_json::Value,
    ) -> Result<Option<Written>, Error> {
        let positions = std::slice::from_ref(position);
        let Sink { lake, sink, output, quarantine, rows, .. } = self;
        if let Some(q) = quarantine {
            q.commit(positions, None).await?;
        }
        let committed = match rows {
            Rows::Staged(staged) => staged.commit(positions, Some(note)).await?,
            Rows::Held { mut batches, combine } => {
                if batches.is_empty() {
                    batches.push(RecordBatch::new_empty(output.clone()));
                }
                match combine {
                    Some(columns) => {
                        let combined = combine_groups(&lake, ctx, &sink, &columns, batches, &output).await?;
                        lake.commit_noted(&sink, combined, WriteMode::Overwrite, positions, Some(note))
                            .await?
                    }
                    None => lake.merge(&sink, batches, &request.sink.keys, positions, Some(note)).await?,
                }
            }
        };
        if committed.skipped {
            return Ok(None);
        }
        Ok(Some(Written { table: sink.to_string(), version: committed.table_version, rows: committed.rows }))
    }
}

fn quarantine_table(sink: &TableName) -> Result<TableName, Error> {
    format!("{sink}__quarantine").parse().map_err(|e| Error::internal(format!("quarantine table name: {e}")))
}

/// The previous output's groups merged with the increment's: keys matched NULL-safely, sums and
/// counts added, minima and maxima compared; groups on one side only are kept as they are.
async fn combine_groups(
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
