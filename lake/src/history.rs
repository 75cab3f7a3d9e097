//! What happened to a table between two versions, read from its Delta log: whether writers only
//! added files (so a transform may read just those and merge the result), and what a writer
//! recorded about itself in its commit (a transform records the input versions it read, which is
//! where its next incremental run starts).

use deltalake::DeltaTable;
use switchyard_config::value::TableName;

use crate::{Error, Lake};

/// The key under which Switchyard's own facts about a commit are stored in its `commitInfo`.
pub const COMMIT_INFO_KEY: &str = "switchyard";

/// The changes to a table from one version (exclusive) to another (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Data files added, as their `add` actions name them (relative to the table root).
    pub added: Vec<String>,
    /// Why the changes are not pure appends (files removed, schema changed, log entry gone);
    /// `None` when they are.
    pub not_appends: Option<String>,
}

impl Lake {
    /// The table's handle at `version` (the latest when `None`), or `None` if it does not exist.
    pub async fn table(&self, table: &TableName, version: Option<u64>) -> Result<Option<DeltaTable>, Error> {
        let mut t = self.open(table).await?;
        if t.version().is_none() {
            return Ok(None);
        }
        if let Some(v) = version {
            if t.version().is_some_and(|latest| latest < v) {
                return Err(Error::MissingVersion { table: table.to_string(), version: v });
            }
            if t.version() != Some(v) {
                t.load_version(v).await.map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
            }
        }
        Ok(Some(t))
    }

    /// The table's latest version, or `None` if it does not exist.
    pub async fn version(&self, table: &TableName) -> Result<Option<u64>, Error> {
        Ok(self.open(table).await?.version())
    }

    /// What changed after `after` up to and including `upto`.
    pub async fn changes(&self, table: &TableName, after: u64, upto: u64) -> Result<Changes, Error> {
        let t = self.open(table).await?;
        let mut changes = Changes { added: Vec::new(), not_appends: None };
        for version in after + 1..=upto {
            let entry = t
                .log_store()
                .read_commit_entry(version)
                .await
                .map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
            let Some(bytes) = entry else {
                changes.not_appends =
                    Some(format!("the log entry of version {version} is gone (log cleanup)"));
                return Ok(changes);
            };
            let mut operation = String::from("a commit");
            let mut problem = None;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| Error::Log {
                    table: table.to_string(),
                    version,
                    cause: e.to_string(),
                })?;
                if let Some(add) = action.get("add") {
                    if let Some(path) = add.get("path").and_then(|p| p.as_str()) {
                        changes.added.push(path.to_owned());
                    }
                } else if let Some(remove) = action.get("remove") {
                    if remove.get("dataChange").and_then(|d| d.as_bool()).unwrap_or(true) {
                        problem.get_or_insert("removed files");
                    }
                } else if action.get("metaData").is_some() && version > 0 {
                    problem.get_or_insert("changed the schema or table properties");
                } else if action.get("protocol").is_some() && version > 0 {
                    problem.get_or_insert("changed the protocol");
                } else if let Some(info) = action.get("commitInfo") {
                    if let Some(op) = info.get("operation").and_then(|o| o.as_str()) {
                        operation = op.to_owned();
                    }
                }
            }
            if let Some(problem) = problem {
                changes.not_appends = Some(format!("version {version} ({operation}) {problem}"));
                return Ok(changes);
            }
        }
        Ok(changes)
    }

    /// The newest commit (looking back at most `depth` versions) whose Switchyard commit info has
    /// `app_id`: its version and that info.
    pub async fn last_commit_by(
        &self,
        table: &TableName,
        app_id: &str,
        depth: u64,
    ) -> Result<Option<(u64, serde_json::Value)>, Error> {
        let t = self.open(table).await?;
        let Some(latest) = t.version() else { return Ok(None) };
        for version in (latest.saturating_sub(depth)..=latest).rev() {
            let entry = t
                .log_store()
                .read_commit_entry(version)
                .await
                .map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
            let Some(bytes) = entry else { return Ok(None) };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
                let Some(info) = action.get("commitInfo").and_then(|i| i.get(COMMIT_INFO_KEY)) else {
                    continue;
                };
                if info.get("app_id").and_then(|a| a.as_str()) == Some(app_id) {
                    return Ok(Some((version, info.clone())));
                }
            }
        }
        Ok(None)
    }
}
