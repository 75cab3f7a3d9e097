//! Delta versions committed by ingestion attempts: what the scheduler knows of the lake, for the
//! transforms that run when their inputs change and for the dashboard.

use sqlx::Row;

use super::Engine;
use crate::Error;
use crate::api::types::{CommitRecord, TableVersion};
use crate::store::now_ms;

impl Engine {
    /// Records commits a node reports for its own attempts. A version already recorded (a
    /// heartbeat retried after a lost reply) is kept once; commits of attempts that are not the
    /// node's are ignored. Each new commit schedules the `on_update` tasks that read its table, in
    /// the same transaction, so a recorded commit never loses its trigger.
    pub async fn record_commits(&self, node_id: &str, commits: &[CommitRecord]) -> Result<(), Error> {
        let now = now_ms();
        let debounce = self.config.settings.scheduler.trigger_debounce.as_std().as_millis() as i64;
        let mut tx = self.store.begin().await?;
        for c in commits {
            let table = c.table.to_ascii_lowercase();
            let recorded: Option<i64> = sqlx::query_scalar(
                "INSERT INTO lake_commits (attempt_id, table_name, version, rows_added, at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM attempts WHERE id = $1 AND node_id = $6)
                 ON CONFLICT (table_name, version) DO NOTHING RETURNING id",
            )
            .bind(c.attempt)
            .bind(&table)
            .bind(c.version)
            .bind(c.rows)
            .bind(now)
            .bind(node_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?;
            if recorded.is_some() {
                super::triggers::schedule_readers(&mut tx, c.attempt, &table, now + debounce, now).await?;
            }
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }

    /// Every table's latest reported version, by table name.
    pub async fn table_versions(&self) -> Result<Vec<TableVersion>, Error> {
        let rows = sqlx::query(
            "SELECT c.table_name, c.version, c.at, c.rows_added, r.job, t.task
             FROM lake_commits c
             JOIN (SELECT table_name, MAX(version) AS version FROM lake_commits GROUP BY table_name) m
               ON m.table_name = c.table_name AND m.version = c.version
             JOIN attempts a ON a.id = c.attempt_id
             JOIN task_runs t ON t.id = a.task_run_id
             JOIN job_runs r ON r.id = t.run_id
             ORDER BY c.table_name",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|r| {
                Ok(TableVersion {
                    table: r.try_get("table_name")?,
                    version: r.try_get("version")?,
                    at: r.try_get("at")?,
                    rows: r.try_get("rows_added")?,
                    job: r.try_get("job")?,
                    task: r.try_get("task")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::store)
    }
}
