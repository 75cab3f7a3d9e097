//! Table locations and idempotent commits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use switchyard_config::value::TableName;
use url::Url;

use crate::Error;
use crate::commit::{already_committed, commit_properties, is_conflict};
use crate::schema::{describe_arrow, describe_table, is_schema_error};

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
    /// The position was already committed, or there was nothing to write: nothing was written.
    pub skipped: bool,
    /// Rows the commit added.
    pub rows: u64,
}

/// The lake root, and the object-store options every table under it is opened with.
#[derive(Clone)]
pub struct Lake {
    root: Url,
    /// Credentials and endpoints (`[lake.storage_options]`, resolved): secrets, never printed.
    options: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self.options.keys().collect();
        keys.sort();
        f.debug_struct("Lake").field("root", &self.root.as_str()).field("storage_options", &keys).finish()
    }
}

impl Lake {
    /// `root` is a directory (created if missing) or an object store URL, with credentials from
    /// the environment object_store reads (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`).
    pub fn new(root: &str) -> Result<Lake, Error> {
        Lake::with_options(root, HashMap::new(), false)
    }

    /// The lake the settings name: `[lake] root`, `storage_options` (references read now) and
    /// `allow_unsafe_rename`.
    pub fn from_settings(settings: &switchyard_config::settings::Lake) -> Result<Lake, Error> {
        let options = settings.storage_options.resolve().map_err(|e| Error::Root {
            root: settings.root.clone(),
            cause: format!("[lake.storage_options]: {e}"),
        })?;
        Lake::with_options(&settings.root, options.expose().clone(), settings.allow_unsafe_rename)
    }

    /// `root` with explicit object-store `options` (they override the environment). On S3 a
    /// configuration that would commit by copy-then-delete is refused unless
    /// `allow_unsafe_rename`: two writers could both win one version and a commit would be lost.
    pub fn with_options(
        root: &str,
        options: HashMap<String, String>,
        allow_unsafe_rename: bool,
    ) -> Result<Lake, Error> {
        crate::store::register_handlers();
        let bad = |cause: String| Error::Root { root: crate::store::redact_url(root), cause };
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
        let options = crate::store::effective_options(&url, options, allow_unsafe_rename)?;
        Ok(Lake { root: url, options: Arc::new(options) })
    }

    /// The lake root as a URL (`file:///…/` for a directory), always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Whether the lake is a local directory (no object store).
    pub fn is_local(&self) -> bool {
        self.root.scheme() == "file"
    }

    /// Where a table lives: `bronze.claims` → `<root>/bronze/claims/`.
    pub fn location(&self, table: &TableName) -> Url {
        let path = table.as_str().split('.').collect::<Vec<_>>().join("/");
        self.root.join(&format!("{path}/")).unwrap_or_else(|_| self.root.clone())
    }

    /// A builder for the table at `url` with the lake's storage options.
    pub(crate) fn builder(
        &self,
        url: Url,
    ) -> Result<deltalake::DeltaTableBuilder, deltalake::DeltaTableError> {
        Ok(deltalake::DeltaTableBuilder::from_url(url)?.with_storage_options((*self.options).clone()))
    }

    /// The object store under the lake root (for `lake check` and maintenance), with its path.
    pub fn object_store(&self) -> Result<deltalake::logstore::ObjectStoreRef, Error> {
        let built = self
            .builder(self.root.clone())
            .and_then(|b| b.build_storage())
            .map_err(|cause| Error::Delta { table: "(lake root)".into(), cause })?;
        Ok(built.object_store(None))
    }

    /// The object store that holds the lake root, addressed from the store's own root
    /// (`s3://bucket/…` paths as they are), for query engines that resolve file URLs themselves.
    pub fn root_object_store(&self) -> Result<deltalake::logstore::ObjectStoreRef, Error> {
        let built = self
            .builder(self.root.clone())
            .and_then(|b| b.build_storage())
            .map_err(|cause| Error::Delta { table: "(lake root)".into(), cause })?;
        Ok(built.root_object_store(None))
    }

    pub(crate) async fn open(&self, table: &TableName) -> Result<DeltaTable, Error> {
        let url = self.location(table);
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                let _ = std::fs::create_dir_all(&path);
            }
        }
        let unloaded = self.builder(url).and_then(|b| b.build()).map_err(delta)?;
        // A table not written yet: an unloaded handle (loading one logs a kernel error). One
        // LIST of `_delta_log/` tells, on a directory and an object store alike.
        if !crate::store::has_log(&unloaded).await.map_err(delta)? {
            return Ok(unloaded);
        }
        let mut t = unloaded;
        t.load().await.map_err(delta)?;
        Ok(t)
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
        let batches =
            deltalake::operations::collect_sendable_stream(stream).await.map_err(|e| delta(e.into()))?;
        batches.iter().map(plain_types).collect::<Result<_, _>>().map_err(|e| delta(e.into()))
    }

    /// Commits `batches` (creating the table on first write) in one version. The `positions` are
    /// recorded in the same Delta commit as the data; the commit is skipped if they (or later
    /// ones) are already committed.
    pub async fn commit(
        &self,
        table: &TableName,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        positions: &[Position],
    ) -> Result<Committed, Error> {
        self.commit_noted(table, batches, mode, positions, None).await
    }

    /// [`Lake::commit`], with `note` stored in the commit's `commitInfo` under
    /// [`crate::COMMIT_INFO_KEY`] (see [`Lake::last_commit_by`]).
    pub async fn commit_noted(
        &self,
        table: &TableName,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Committed, Error> {
        // Another writer committing first (on an object store: winning the conditional PUT of
        // the same version) is not a failure of this one: start over from the new state, where
        // the position check makes a retry of our own earlier commit a no-op.
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            let read_version = self.version(table).await?;
            match self.commit_once(table, batches.clone(), mode, positions, note.clone()).await {
                Err(Error::Delta { cause, .. }) if is_conflict(&cause) => {
                    let now = self.version(table).await?;
                    if attempt == ATTEMPTS {
                        return Err(Error::Conflict {
                            table: table.to_string(),
                            attempts: ATTEMPTS,
                            read_version,
                            current_version: now,
                            cause: cause.to_string(),
                        });
                    }
                    tracing::warn!(table = %table, attempt, read_version = ?read_version, current_version = ?now, error = %cause, "Commit lost a race to another writer; retrying on the new version.");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn commit_once(
        &self,
        table: &TableName,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Committed, Error> {
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        let t = self.open(table).await?;
        if already_committed(&t, table, positions).await? {
            return Ok(Committed { table_version: t.version().unwrap_or(0), skipped: true, rows: 0 });
        }
        let t = match (mode, t.version(), batches.first()) {
            // Overwriting a table that does not exist yet: create it empty first, so that the
            // overwrite commits against a snapshot. Without one deltalake checks no conflicts,
            // and two racing first overwrites both land (seen on S3: one table holding both
            // outputs).
            (WriteMode::Overwrite, None, Some(first)) => {
                let empty = RecordBatch::new_empty(first.schema());
                match t.write(vec![empty]).with_save_mode(SaveMode::Append).await {
                    Ok(_) => {}
                    Err(cause) if is_conflict(&cause) => {} // another writer created it
                    Err(cause) => return Err(delta(cause)),
                }
                self.open(table).await?
            }
            _ => t,
        };
        let existing = t.version().is_some().then(|| describe_table(&t));
        let incoming = batches.first().map(|b| describe_arrow(&b.schema())).unwrap_or_default();
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut properties = commit_properties(positions, note);
        if mode == WriteMode::Overwrite {
            // deltalake would rebase a losing overwrite onto the winner's commit without removing
            // the winner's files (an overwrite does not count as reading the table), leaving both
            // outputs in the table. Fail instead, and start over from the new state (above).
            properties = properties.with_max_retries(0);
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
            Ok(t) => Ok(Committed { table_version: t.version().unwrap_or(0), skipped: false, rows }),
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

/// The scan hands out string and binary *views*; callers get the plain types the table declares.
pub fn plain_types(batch: &RecordBatch) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let plain = |t: &DataType| match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView)) {
        return Ok(batch.clone());
    }
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(plain(f.data_type()))).collect();
    let columns = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}
