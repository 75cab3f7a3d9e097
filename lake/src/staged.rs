//! Writes too large to hold: batches are encoded into Parquet files under the table as they come
//! (multipart uploads on an object store) and become visible only in the one commit that also
//! carries the writer's positions and note. A writer that dies before the commit leaves only
//! unreferenced files, which `VACUUM` removes; the table never shows part of a result.
//!
//! Unlike [`crate::TableWriter`], which commits many times as a source advances, a staged write
//! commits once, and an overwrite replaces exactly the files of the version it commits against:
//! when another writer commits first, the commit is rebuilt on the new version from the files
//! already written, without writing them again.

use std::num::NonZeroU64;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::new_null_array;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafile::writer::WriterConfig;
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::{Action, Add};
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStoreExt as _;
use switchyard_config::value::TableName;

use crate::commit::{already_committed, commit_properties, is_conflict};
use crate::encoders::Encoders;
use crate::schema::describe_arrow;
use crate::{Committed, Error, Lake, Position, WriteMode};

/// Files roll over at this size: large enough for efficient scans, small enough that one file
/// is not a worker's whole output.
const TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// The encoder holds a row group until it is full; parquet's default (a million rows, whatever
/// their width) is hundreds of MiB for wide rows, more than a small worker has to spare.
pub const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

fn writer_properties(row_group_bytes: usize) -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_created_by(format!("switchyard {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_bytes(Some(row_group_bytes.max(1)))
        .build()
}

/// A write of one result into one table; see the module docs.
pub struct StagedWrite {
    target: Target,
    writer: Encoders,
}

/// Where a staged write commits, and what it wrote.
struct Target {
    lake: Lake,
    name: TableName,
    mode: WriteMode,
    /// The schema batches are written in: the table's, or the incoming one for a new table.
    schema: SchemaRef,
    /// Whether the table must be created (from `schema`) before the commit.
    create: bool,
    rows: u64,
}

impl std::fmt::Debug for StagedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedWrite")
            .field("table", &self.target.name)
            .field("mode", &self.target.mode)
            .field("rows", &self.target.rows)
            .finish()
    }
}

impl Lake {
    /// Starts a staged write of batches with `schema` into `table`. An existing table whose
    /// schema lacks some of the incoming columns gets them (nullable) in a commit of its own
    /// now, as an append would; an incompatible schema fails here, before anything is written.
    /// `row_group_bytes` bounds what the encoder holds before it flushes a row group to the
    /// store ([`ROW_GROUP_BYTES`] when `None`).
    pub async fn stage(
        &self,
        table: &TableName,
        schema: SchemaRef,
        mode: WriteMode,
        row_group_bytes: Option<usize>,
    ) -> Result<StagedWrite, Error> {
        let mut t = self.open(table).await?;
        let create = t.version().is_none();
        if !create && !covers(&table_schema(&t, table)?, &schema) {
            let empty = RecordBatch::new_empty(schema.clone());
            self.commit(table, vec![empty], WriteMode::Append, &[]).await?;
            t = self.open(table).await?;
        }
        let (table_schema, partitions, stats) = if create {
            (schema.clone(), Vec::new(), None)
        } else {
            let state = t.snapshot().map_err(|cause| delta(table, cause))?;
            let stats = WriterStatsConfig::from_config(state.snapshot().table_configuration());
            (table_schema(&t, table)?, state.metadata().partition_columns().to_vec(), Some(stats))
        };
        let store = t.log_store().object_store(None);
        let (indexed, stats_columns) = match stats {
            Some(s) => (s.num_indexed_cols, s.stats_columns),
            None => (Default::default(), None),
        };
        let config = WriterConfig::new(
            table_schema.clone(),
            partitions,
            Some(writer_properties(row_group_bytes.unwrap_or(ROW_GROUP_BYTES))),
            NonZeroU64::new(TARGET_FILE_SIZE),
            None,
            indexed,
            stats_columns,
        );
        Ok(StagedWrite {
            target: Target {
                lake: self.clone(),
                name: table.clone(),
                mode,
                schema: table_schema,
                create,
                rows: 0,
            },
            writer: Encoders::new(store, config),
        })
    }
}

impl StagedWrite {
    /// Encodes `batch` into the table's files (not yet visible).
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.target.conform(batch)?;
        self.target.rows += batch.num_rows() as u64;
        self.writer.write(batch).await.map_err(|cause| delta(&self.target.name, cause))?;
        Ok(())
    }

    /// Makes the written rows visible with `positions` and `note`, in one version: added to the
    /// table, or replacing all of its rows for an overwrite. Skipped (and the files deleted)
    /// when every position is already committed.
    pub async fn commit(
        self,
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Committed, Error> {
        let StagedWrite { target, writer } = self;
        let adds = writer.close().await.map_err(|cause| delta(&target.name, cause))?;
        if target.create {
            // The table is created by the commit that carries the rows: one version, not two.
            match target.create_with(&adds, positions, note.clone()).await {
                Ok(committed) => return Ok(committed),
                // Another writer created it first: commit onto theirs (below).
                Err(_) if target.lake.version(&target.name).await?.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        // Another writer committing first is not a failure of this one: rebuild the commit on
        // the new version (where the position check makes a retry of our own commit a no-op).
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            let t = target.lake.open(&target.name).await?;
            let read_version = t.version();
            match target.commit_on(&t, &adds, positions, note.clone()).await {
                Ok(Some(committed)) => return Ok(committed),
                Ok(None) => {
                    target.delete(&t, &adds).await;
                    return Ok(Committed {
                        table_version: read_version.unwrap_or(0),
                        skipped: true,
                        rows: 0,
                    });
                }
                Err(Error::Delta { cause, .. }) if is_conflict(&cause) => {
                    if attempt == ATTEMPTS {
                        let now = target.lake.version(&target.name).await?;
                        return Err(Error::Conflict {
                            table: target.name.to_string(),
                            attempts: ATTEMPTS,
                            read_version,
                            current_version: now,
                            cause: cause.to_string(),
                        });
                    }
                    tracing::warn!(table = %target.name, attempt, read_version = ?read_version, error = %cause, "Commit lost a race to another writer; retrying on the new version.");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops what was written: the files are deleted, nothing is committed.
    pub async fn abort(self) {
        let StagedWrite { target, writer } = self;
        match writer.close().await {
            Ok(adds) => {
                if let Ok(t) = target.lake.open(&target.name).await {
                    target.delete(&t, &adds).await;
                }
            }
            Err(e) => {
                tracing::warn!(table = %target.name, error = %e, "Could not close an aborted write; VACUUM removes its files.")
            }
        }
    }
}

impl Target {
    /// Creates the table with the files and positions in its first version (fails if another
    /// writer created it in the meantime).
    async fn create_with(
        &self,
        adds: &[Add],
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Committed, Error> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
        let t = self.lake.open(&self.name).await?;
        let schema: deltalake::kernel::StructType = self
            .schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e: deltalake::arrow::error::ArrowError| delta(&self.name, e.into()))?;
        let created = t
            .create()
            .with_columns(schema.fields().cloned())
            .with_actions(adds.iter().cloned().map(Action::Add))
            // No retries: with no snapshot to check against, deltalake would land a losing
            // create as the next version, beside the winner's rows.
            .with_commit_properties(commit_properties(positions, note).with_max_retries(0))
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .map_err(|cause| delta(&self.name, cause))?;
        Ok(Committed { table_version: created.version().unwrap_or(0), skipped: false, rows: self.rows })
    }

    /// One commit attempt against `t`'s version; `None` when the positions are already there.
    async fn commit_on(
        &self,
        t: &DeltaTable,
        adds: &[Add],
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Option<Committed>, Error> {
        if already_committed(t, &self.name, positions).await? {
            return Ok(None);
        }
        let state = t.snapshot().map_err(|cause| delta(&self.name, cause))?;
        let mut actions: Vec<Action> = Vec::with_capacity(adds.len());
        if self.mode == WriteMode::Overwrite {
            actions.extend(state.log_data().iter().map(|f| Action::Remove(f.remove_action(true))));
        }
        actions.extend(adds.iter().cloned().map(Action::Add));
        let save = match self.mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        };
        let operation = DeltaOperation::Write { mode: save, partition_by: None, predicate: None };
        // No retries inside deltalake: it would rebase an overwrite onto a winner's commit
        // without removing the winner's files. The loop in `commit` rebuilds instead.
        let commit = CommitBuilder::from(commit_properties(positions, note))
            .with_actions(actions)
            .with_max_retries(0)
            .build(Some(state as &dyn TableReference), t.log_store(), operation)
            .await
            .map_err(|cause| delta(&self.name, cause))?;
        Ok(Some(Committed { table_version: commit.version(), skipped: false, rows: self.rows }))
    }

    /// Deletes files a skipped or aborted write left (best effort: `VACUUM` removes the rest).
    async fn delete(&self, t: &DeltaTable, adds: &[Add]) {
        let store = t.log_store().object_store(None);
        for add in adds {
            let path = deltalake::Path::from(add.path.as_str());
            if let Err(e) = store.delete(&path).await {
                tracing::warn!(table = %self.name, file = %add.path, error = %e, "Could not delete an uncommitted file; VACUUM removes it.");
            }
        }
    }

    /// `batch` in the table's schema: columns by name, cast where the table's type differs,
    /// NULL where the table has a column the result lacks.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let incompatible = || Error::IncompatibleSchema {
            table: self.name.to_string(),
            existing: describe_arrow(&self.schema),
            incoming: describe_arrow(&batch.schema()),
        };
        if batch.schema().fields() == self.schema.fields() {
            return Ok(batch.clone());
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column = match batch.column_by_name(field.name()) {
                Some(c) if c.data_type() == field.data_type() => c.clone(),
                Some(c) => cast(c, field.data_type()).map_err(|_| incompatible())?,
                None => new_null_array(field.data_type(), batch.num_rows()),
            };
            columns.push(column);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|_| incompatible())
    }
}

/// Whether every incoming column is in the table with a type it casts to losslessly (the same
/// type, or the plain type of a view).
fn covers(table: &SchemaRef, incoming: &SchemaRef) -> bool {
    incoming
        .fields()
        .iter()
        .all(|f| table.field_with_name(f.name()).is_ok_and(|t| t.data_type() == f.data_type()))
}

fn table_schema(t: &DeltaTable, name: &TableName) -> Result<SchemaRef, Error> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
    let snapshot = t.snapshot().map_err(|cause| delta(name, cause))?;
    let schema: deltalake::arrow::datatypes::Schema = snapshot
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e: deltalake::arrow::error::ArrowError| delta(name, e.into()))?;
    Ok(Arc::new(schema))
}

fn delta(table: &TableName, cause: deltalake::DeltaTableError) -> Error {
    Error::Delta { table: table.to_string(), cause }
}
