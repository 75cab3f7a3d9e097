//! Upserts on key columns (a transform's `mode: merge`): rows whose keys match are updated,
//! the others inserted, in one Delta version that also carries the writer's positions.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use switchyard_config::value::TableName;

use crate::commit::commit_properties;
use crate::schema::{describe_arrow, describe_table, is_schema_error};
use crate::{Committed, Error, Lake, Position, WriteMode};

impl Lake {
    /// Merges `batches` into `table` on `keys`. A table that does not exist yet is created by an
    /// append. Skipped when every position is already committed, like [`Lake::commit`].
    pub async fn merge(
        &self,
        table: &TableName,
        batches: Vec<RecordBatch>,
        keys: &[String],
        positions: &[Position],
        note: Option<serde_json::Value>,
    ) -> Result<Committed, Error> {
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        let t = self.open(table).await?;
        let Some(version) = t.version() else {
            return self.commit_noted(table, batches, WriteMode::Append, positions, note).await;
        };
        if !positions.is_empty() {
            let state = t.snapshot().map_err(delta)?;
            let mut done = 0;
            for p in positions {
                let committed =
                    state.transaction_version(t.log_store().as_ref(), &p.app_id).await.map_err(delta)?;
                if committed.is_some_and(|c| c >= p.version) {
                    done += 1;
                }
            }
            if done == positions.len() {
                return Ok(Committed { table_version: version, skipped: true, rows: 0 });
            }
        }
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            // Nothing to merge; record the positions so the same inputs are not merged again.
            return self.commit_noted(table, batches, WriteMode::Append, positions, note).await;
        };
        let existing = describe_table(&t);
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let source = SessionContext::new().read_batches(batches).map_err(|e| delta(e.into()))?;
        let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        let predicate = keys
            .iter()
            .map(|k| format!("target.{k} = source.{k}", k = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let merge = t
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            .with_commit_properties(commit_properties(positions, note))
            .when_matched_update(|mut u| {
                for c in &columns {
                    u = u.update(c.as_str(), format!("source.{}", quote(c)));
                }
                u
            })
            .and_then(|m| {
                m.when_not_matched_insert(|mut i| {
                    for c in &columns {
                        i = i.set(c.as_str(), format!("source.{}", quote(c)));
                    }
                    i
                })
            })
            .map_err(delta)?;
        match merge.await {
            Ok((t, _metrics)) => {
                Ok(Committed { table_version: t.version().unwrap_or(0), skipped: false, rows })
            }
            Err(cause) if is_schema_error(&cause) => Err(Error::IncompatibleSchema {
                table: table.to_string(),
                existing,
                incoming: describe_arrow(&schema),
            }),
            Err(cause) => Err(delta(cause)),
        }
    }
}
