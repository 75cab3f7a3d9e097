//! Table maintenance: small files are what streaming ingest and frequent commits leave behind,
//! and on an object store every file is a request on each scan. `optimize` compacts them (or
//! Z-orders by columns), `vacuum` deletes files no version within the retention still needs.
//! Neither touches `txn` actions, so exactly-once positions read back the same afterwards.

use switchyard_config::value::TableName;

use crate::{Error, Lake};

/// What an optimize did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Optimized {
    pub files_added: u64,
    pub files_removed: u64,
    /// The table version after (unchanged when there was nothing to compact).
    pub table_version: u64,
}

/// What a vacuum deleted (or, on a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuumed {
    pub dry_run: bool,
    pub files: Vec<String>,
}

impl Lake {
    /// Compacts `table`'s small files; with `zorder` columns, rewrites them Z-ordered by those.
    pub async fn optimize(&self, table: &TableName, zorder: &[String]) -> Result<Optimized, Error> {
        use deltalake::operations::optimize::OptimizeType;
        let t = self.open(table).await?;
        let Some(_) = t.version() else {
            return Err(Error::NoTable {
                table: table.to_string(),
                location: self.location(table).to_string(),
            });
        };
        let kind =
            if zorder.is_empty() { OptimizeType::Compact } else { OptimizeType::ZOrder(zorder.to_vec()) };
        let (t, metrics) = t
            .optimize()
            .with_type(kind)
            .await
            .map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
        Ok(Optimized {
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
            table_version: t.version().unwrap_or(0),
        })
    }

    /// Deletes files no longer referenced by any version newer than `retain` ago.
    pub async fn vacuum(
        &self,
        table: &TableName,
        retain: std::time::Duration,
        dry_run: bool,
    ) -> Result<Vacuumed, Error> {
        let t = self.open(table).await?;
        let Some(_) = t.version() else {
            return Err(Error::NoTable {
                table: table.to_string(),
                location: self.location(table).to_string(),
            });
        };
        let retention = chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = t
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(dry_run)
            // Full, not Lite: files no commit ever referenced (a killed writer's parts) go too.
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .await
            .map_err(|cause| Error::Delta { table: table.to_string(), cause })?;
        Ok(Vacuumed { dry_run: metrics.dry_run, files: metrics.files_deleted })
    }
}
