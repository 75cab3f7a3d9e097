//! Table locations and idempotent commits.

use std::path::PathBuf;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use switchyard_config::value::TableName;
use url::Url;

use crate::Error;

/// How a commit changes the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Overwrite,
}

/// The source position a commit covers: `app_id` names the writer (job/task/partition), `version`
/// is where its data ends (a Kafka offset, a watermark, a page number…), strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub app_id: String,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The table version after the commit (or the current one, when skipped).
    pub table_version: u64,
    /// The position was already committed: nothing was written.
    pub skipped: bool,
}

/// The lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
}

impl Lake {
    /// `root` is a directory (created if missing) or an object store URL.
    pub fn new(root: &str) -> Result<Lake, Error> {
        let bad = |cause: String| Error::Root { root: root.to_owned(), cause };
        let url = if root.contains("://") {
            Url::parse(root).map_err(|e| bad(e.to_string()))?
        } else {
            std::fs::create_dir_all(root).map_err(|e| bad(e.to_string()))?;
            let path = std::path::absolute(PathBuf::from(root)).map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&path).map_err(|()| bad("not an absolute path".into()))?
        };
        let url = if url.path().ends_with('/') {
            url
        } else {
            Url::parse(&format!("{url}/")).map_err(|e| bad(e.to_string()))?
        };
        Ok(Lake { root: url })
    }

    /// Where a table lives: `bronze.claims` → `<root>/bronze/claims/`.
    pub fn location(&self, table: &TableName) -> Url {
        let path = table.as_str().split('.').collect::<Vec<_>>().join("/");
        self.root.join(&format!("{path}/")).unwrap_or_else(|_| self.root.clone())
    }

    async fn open(&self, table: &TableName) -> Result<DeltaTable, Error> {
        let url = self.location(table);
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                let _ = std::fs::create_dir_all(path);
            }
        }
        DeltaTable::try_from_url(url).await.map_err(|cause| Error::Delta { table: table.to_string(), cause })
    }

    /// The last position committed by `app_id`, if any.
    pub async fn position(&self, table: &TableName, app_id: &str) -> Result<Option<i64>, Error> {
        let t = self.open(table).await?;
        if t.version().is_none() {
            return Ok(None);
        }
        let state = t.snapshot().map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
        state
            .transaction_version(t.log_store().as_ref(), app_id)
            .await
            .map_err(|cause| Error::Delta { table: table.to_string(), cause })
    }

    /// The table's rows at `version` (the latest when `None`); empty if the table does not exist.
    pub async fn read(&self, table: &TableName, version: Option<u64>) -> Result<Vec<RecordBatch>, Error> {
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        let mut t = self.open(table).await?;
        if t.version().is_none() {
            return Ok(vec![]);
        }
        if let Some(v) = version {
            t.load_version(v).await.map_err(delta)?;
        }
        let (_, stream) = t.scan_table().await.map_err(delta)?;
        deltalake::operations::collect_sendable_stream(stream).await.map_err(|e| delta(e.into()))
    }

    /// Commits `batches` (creating the table on first write). With a `position`, the commit
    /// records it in the same Delta commit as the data, and is skipped if that position (or a
    /// later one) is already committed.
    pub async fn commit(
        &self,
        table: &TableName,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        position: Option<Position>,
    ) -> Result<Committed, Error> {
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        let t = self.open(table).await?;
        if let (Some(p), Some(version)) = (&position, t.version()) {
            let state = t.snapshot().map_err(delta)?;
            if let Some(done) =
                state.transaction_version(t.log_store().as_ref(), &p.app_id).await.map_err(delta)?
            {
                if done >= p.version {
                    tracing::info!(table = %table, app_id = %p.app_id, position = p.version, committed = done, "Position already committed; skipping.");
                    return Ok(Committed { table_version: version, skipped: true });
                }
            }
        }
        let existing = t.snapshot().ok().map(|s| {
            describe(
                s.schema()
                    .fields()
                    .map(|f| (f.name().to_string(), f.data_type().to_string(), f.is_nullable())),
            )
        });
        let incoming = batches
            .first()
            .map(|b| {
                describe(
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable())),
                )
            })
            .unwrap_or_default();
        let mut properties = CommitProperties::default();
        if let Some(p) = &position {
            properties = properties.with_application_transaction(Transaction::new(&p.app_id, p.version));
        }
        let save = match mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        };
        let mut write = t.write(batches).with_save_mode(save).with_commit_properties(properties);
        if mode == WriteMode::Append {
            write = write.with_schema_mode(SchemaMode::Merge);
        }
        match write.await {
            Ok(t) => Ok(Committed { table_version: t.version().unwrap_or(0), skipped: false }),
            Err(cause) if is_schema_error(&cause) => {
                tracing::warn!(table = %table, error = %cause, "Incompatible schema.");
                Err(Error::IncompatibleSchema {
                    table: table.to_string(),
                    existing: existing.unwrap_or_default(),
                    incoming,
                })
            }
            Err(cause) => Err(delta(cause)),
        }
    }
}

/// Whether a write failed because the data does not fit the table's schema.
fn is_schema_error(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::arrow::error::ArrowError;
    match e {
        deltalake::DeltaTableError::SchemaMismatch { .. } => true,
        deltalake::DeltaTableError::Arrow { source } => {
            matches!(source, ArrowError::SchemaError(_) | ArrowError::CastError(_))
        }
        _ => false,
    }
}

/// `(id long not null, name string)`: a schema as a person reads it in an error.
fn describe(fields: impl Iterator<Item = (String, String, bool)>) -> String {
    let fields: Vec<String> = fields
        .map(|(name, ty, nullable)| format!("{name} {ty}{}", if nullable { "" } else { " not null" }))
        .collect();
    format!("({})", fields.join(", "))
}
