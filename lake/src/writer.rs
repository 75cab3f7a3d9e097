//! Streaming appends: batches are encoded to Parquet files as they arrive, and become visible only
//! when [`TableWriter::commit`] writes one Delta version holding the files *and* the source
//! positions they cover. A writer killed before that leaves only unreferenced files (removed by
//! `VACUUM`), never rows in the table — which is what makes ingestion exactly-once.

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode as MergeMode};
use switchyard_config::value::TableName;

use crate::commit::already_committed;
use crate::schema::{describe_arrow, describe_table, is_schema_error};
use crate::{Committed, Error, Lake, Position, StagedWrite, WriteMode};

/// Appends to one table in commits that carry source positions.
pub struct TableWriter {
    lake: Lake,
    name: TableName,
    table: DeltaTable,
    /// In a mutex only so that `&TableWriter` can be shared (the Parquet encoder is not `Sync`);
    /// it is only ever reached through `&mut self`, so never actually locked.
    writer: std::sync::Mutex<Option<RecordBatchWriter>>,
    /// The first commit of an `Overwrite` writer replaces the table; later ones append.
    overwrite: bool,
    /// An overwrite's rows until its first commit, streamed into files as they come (in a
    /// mutex for the same reason as `writer`).
    pending_overwrite: std::sync::Mutex<Option<StagedWrite>>,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter").field("table", &self.name).field("rows", &self.rows).finish()
    }
}

impl TableWriter {
    pub(crate) async fn open(lake: &Lake, name: &TableName, mode: WriteMode) -> Result<Self, Error> {
        let table = lake.open(name).await?;
        Ok(TableWriter {
            lake: lake.clone(),
            name: name.clone(),
            table,
            writer: std::sync::Mutex::new(None),
            overwrite: mode == WriteMode::Overwrite,
            pending_overwrite: std::sync::Mutex::new(None),
            rows: 0,
        })
    }

    /// The last position committed under `app_id`, as of this writer's view of the table.
    pub async fn position(&self, app_id: &str) -> Result<Option<i64>, Error> {
        if self.table.version().is_none() {
            return Ok(None);
        }
        let state = self.table.snapshot().map_err(|cause| self.delta(cause))?;
        state.transaction_version(self.table.log_store().as_ref(), app_id).await.map_err(|c| self.delta(c))
    }

    /// The table's schema as Arrow, if the table exists.
    pub fn schema(&self) -> Option<deltalake::arrow::datatypes::SchemaRef> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
        let snapshot = self.table.snapshot().ok()?;
        let schema: deltalake::arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow().ok()?;
        Some(std::sync::Arc::new(schema))
    }

    /// Like [`TableWriter::commit`], for a table that may already hold some of `positions` (a
    /// dead-letter table, committed just before its main table): those are left out.
    pub async fn commit_past(&mut self, positions: &[Position]) -> Result<Committed, Error> {
        if self.table.version().is_some() {
            self.table.update_state().await.map_err(|c| self.delta(c))?;
        }
        let mut ahead = Vec::with_capacity(positions.len());
        for p in positions {
            if self.position(&p.app_id).await?.is_none_or(|v| v < p.version) {
                ahead.push(p.clone());
            }
        }
        if ahead.is_empty() {
            let rows = self.rows;
            if rows > 0 {
                return Err(Error::PositionConflict {
                    table: self.name.to_string(),
                    detail: format!("{rows} rows are pending but every position is already committed"),
                });
            }
            return Ok(Committed {
                table_version: self.table.version().unwrap_or(0),
                skipped: true,
                rows: 0,
            });
        }
        self.commit(&ahead).await
    }

    /// Rows written since the last commit.
    pub fn pending_rows(&self) -> u64 {
        self.rows
    }

    /// Encodes `batch` into the table's files (not yet visible). Creates the table from the
    /// batch's schema on first use; new nullable columns are merged into the schema.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        if self.overwrite {
            let pending = self.pending_overwrite.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            if pending.is_none() {
                *pending =
                    Some(self.lake.stage(&self.name, batch.schema(), WriteMode::Overwrite, None).await?);
            }
            if let Some(staged) = pending {
                staged.write(&batch).await?;
            }
            return Ok(());
        }
        if self.table.version().is_none() {
            // An empty write creates the table with the batch's schema (version 0, no files).
            let empty = RecordBatch::new_empty(batch.schema());
            self.lake.commit(&self.name, vec![empty], WriteMode::Append, &[]).await?;
            self.table = self.lake.open(&self.name).await?;
        }
        let incoming = describe_arrow(&batch.schema());
        let slot = self.writer.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let created = RecordBatchWriter::for_table(&self.table)
                .map_err(|cause| Error::Delta { table: self.name.to_string(), cause })?;
            *slot = Some(created);
        }
        let writer = slot.as_mut().expect("writer created above");
        match writer.write_with_mode(batch, MergeMode::MergeSchema).await {
            Ok(()) => Ok(()),
            Err(cause) if is_schema_error(&cause) => Err(Error::IncompatibleSchema {
                table: self.name.to_string(),
                existing: describe_table(&self.table),
                incoming,
            }),
            Err(cause) => Err(Error::Delta { table: self.name.to_string(), cause }),
        }
    }

    /// Makes everything written since the last commit visible, with `positions`, in one Delta
    /// version. Skipped (and the written files dropped) when every position is already committed —
    /// a retry after a commit whose reply was lost. A mix of committed and new positions means two
    /// writers raced for the same source, and fails rather than guess.
    pub async fn commit(&mut self, positions: &[Position]) -> Result<Committed, Error> {
        let rows = std::mem::take(&mut self.rows);
        if self.table.version().is_some() {
            // Another writer may have committed since we opened: decide on the latest state.
            self.table.update_state().await.map_err(|c| self.delta(c))?;
        }
        if already_committed(&self.table, &self.name, positions).await? {
            *self.writer.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            let pending = self.pending_overwrite.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(staged) = pending.take() {
                staged.abort().await;
            }
            return Ok(Committed {
                table_version: self.table.version().unwrap_or(0),
                skipped: true,
                rows: 0,
            });
        }
        if self.overwrite {
            let pending = self.pending_overwrite.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut committed = match pending.take() {
                Some(staged) => staged.commit(positions, None).await?,
                None => self.lake.commit(&self.name, Vec::new(), WriteMode::Overwrite, positions).await?,
            };
            self.overwrite = false;
            self.table = self.lake.open(&self.name).await?;
            committed.rows = rows;
            return Ok(committed);
        }
        let Some(writer) = self.writer.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        else {
            // Nothing written (no new rows): there is nothing to make exactly-once.
            return Ok(Committed {
                table_version: self.table.version().unwrap_or(0),
                skipped: true,
                rows: 0,
            });
        };
        let properties = CommitProperties::default().with_application_transactions(
            positions.iter().map(|p| Transaction::new(&p.app_id, p.version)).collect(),
        );
        let mut writer = writer.with_commit_properties(properties);
        let version = writer.flush_and_commit(&mut self.table).await.map_err(|c| self.delta(c))?;
        *self.writer.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(writer.with_commit_properties(CommitProperties::default()));
        Ok(Committed { table_version: version as u64, skipped: false, rows })
    }

    fn delta(&self, cause: deltalake::DeltaTableError) -> Error {
        Error::Delta { table: self.name.to_string(), cause }
    }
}

impl Lake {
    /// A streaming writer for `table`: files as batches arrive, one commit per source position.
    pub async fn writer(&self, table: &TableName, mode: WriteMode) -> Result<TableWriter, Error> {
        TableWriter::open(self, table, mode).await
    }
}
