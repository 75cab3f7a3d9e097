//! `_switchyard/event_log`: the control plane's event log as a plain Delta table under the lake
//! root, readable by any Delta reader (Spark, Python's `deltalake`, DataFusion, DuckDB).
//!
//! Columns: `id` (long), `sequence` (long: 1, 2, 3, … without gaps, the log's order), `origin`
//! (string: what emitted the event), `timestamp` (timestamp, UTC), `level` (`info`, `warn`,
//! `error`), `event_type` (string), `message` (string), `details` (string holding a JSON object).
//! Every commit carries a Delta `txn` action whose version is the last sequence it holds, so the
//! table itself says how far it goes and an append that was already committed writes nothing.

use std::sync::Arc;

use deltalake::arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::datafusion::prelude::{SessionContext, ident, lit};
use deltalake::datafusion::scalar::ScalarValue;
use switchyard_config::value::TableName;

use crate::{Committed, Error, Lake, Position};

/// The event log's table name: at `<lake root>/_switchyard/event_log/`.
pub const EVENT_LOG_TABLE: &str = "_switchyard.event_log";

/// One row of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub sequence: i64,
    pub origin: String,
    /// Epoch milliseconds (stored as a microsecond UTC timestamp).
    pub timestamp_ms: i64,
    pub level: String,
    pub event_type: String,
    pub message: String,
    /// A JSON object, as text.
    pub details: String,
}

/// Which events [`Lake::read_events`] returns, in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with a greater sequence.
    pub after_sequence: Option<i64>,
    /// Only events at or after this time (epoch milliseconds).
    pub since_ms: Option<i64>,
    /// Only the last `n` of those.
    pub last: Option<usize>,
}

fn event_log_name() -> TableName {
    EVENT_LOG_TABLE.parse().unwrap_or_else(|e| unreachable!("{EVENT_LOG_TABLE} is a valid table name: {e:?}"))
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("sequence", DataType::Int64, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("level", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("details", DataType::Utf8, false),
    ]))
}

impl Lake {
    /// Where the event log lives.
    pub fn event_log_location(&self) -> url::Url {
        self.location(&event_log_name())
    }

    /// The last sequence the event log holds as committed by `app_id` (0 when none).
    pub async fn event_log_position(&self, app_id: &str) -> Result<i64, Error> {
        Ok(self.position(&event_log_name(), app_id).await?.unwrap_or(0))
    }

    /// Appends the `events` the table does not hold yet in one commit that records `upto` as
    /// `app_id`'s position. The position is read from the same snapshot the commit is made
    /// against, so a writer that committed part of these events meanwhile (even in batches of
    /// another size) is either seen here or makes this commit fail Delta's conflict check on the
    /// app id: an event is never written twice. Skipped when the table already holds `upto`.
    pub async fn append_events(
        &self,
        events: &[EventRecord],
        app_id: &str,
        upto: i64,
    ) -> Result<Committed, Error> {
        let table = event_log_name();
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        self.ensure_event_log(&table).await?;
        let t = self.open(&table).await?;
        let snapshot = t.snapshot().map_err(delta)?;
        let held =
            snapshot.transaction_version(t.log_store().as_ref(), app_id).await.map_err(delta)?.unwrap_or(0);
        let version = t.version().unwrap_or(0);
        let fresh: Vec<EventRecord> = events.iter().filter(|e| e.sequence > held).cloned().collect();
        if held >= upto || fresh.is_empty() {
            return Ok(Committed { table_version: version, skipped: true, rows: 0 });
        }
        let rows = fresh.len() as u64;
        let batch = to_batch(&fresh).map_err(|e| delta(e.into()))?;
        let properties =
            crate::commit::commit_properties(&[Position { app_id: app_id.to_owned(), version: upto }], None);
        let written = t
            .write(vec![batch])
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .with_commit_properties(properties)
            .await
            .map_err(delta)?;
        Ok(Committed { table_version: written.version().unwrap_or(version), skipped: false, rows })
    }

    /// Creates the (empty) table if it does not exist. Not left to the first append: Delta's
    /// conflict check between two commits that set the same `txn` app id applies to commits on an
    /// existing table, while two writers that both create the table with their first append can
    /// both succeed (seen here: two exporters racing on a fresh lake committed the first batch
    /// twice). Two concurrent creations of the empty table are harmless: one of them fails.
    async fn ensure_event_log(&self, table: &TableName) -> Result<(), Error> {
        use deltalake::kernel::{DataType as D, StructField};
        let t = self.open(table).await?;
        if t.version().is_some() {
            return Ok(());
        }
        let columns = [
            ("id", D::LONG),
            ("sequence", D::LONG),
            ("origin", D::STRING),
            ("timestamp", D::TIMESTAMP),
            ("level", D::STRING),
            ("event_type", D::STRING),
            ("message", D::STRING),
            ("details", D::STRING),
        ]
        .map(|(name, ty)| StructField::new(name, ty, false));
        let created = t
            .create()
            .with_columns(columns)
            .with_save_mode(deltalake::protocol::SaveMode::Ignore)
            .with_comment("Switchyard's event log: one row per event, in `sequence` order")
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another exporter created it at the same moment.
            Err(_) if self.open(table).await?.version().is_some() => Ok(()),
            Err(cause) => Err(Error::Delta { table: table.to_string(), cause }),
        }
    }

    /// Events matching `filter`, in sequence order; empty when the table does not exist yet.
    /// Files whose statistics rule them out are not read, so following the log stays cheap.
    pub async fn read_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, Error> {
        let table = event_log_name();
        let delta = |cause| Error::Delta { table: table.to_string(), cause };
        let df_error = |e: deltalake::datafusion::error::DataFusionError| delta(e.into());
        let Some(t) = self.table(&table, None).await? else { return Ok(vec![]) };
        let ctx = SessionContext::new();
        let state = ctx.state();
        t.update_datafusion_session(&state).map_err(delta)?;
        let provider = t.table_provider().with_session(Arc::new(state)).await.map_err(df_error)?;
        let mut df = ctx.read_table(provider).map_err(df_error)?;
        if let Some(after) = filter.after_sequence {
            df = df.filter(ident("sequence").gt(lit(after))).map_err(df_error)?;
        }
        if let Some(since) = filter.since_ms {
            let at = ScalarValue::TimestampMicrosecond(Some(since.saturating_mul(1000)), Some("UTC".into()));
            df = df.filter(ident("timestamp").gt_eq(lit(at))).map_err(df_error)?;
        }
        let ascending = filter.last.is_none();
        df = df.sort(vec![ident("sequence").sort(ascending, false)]).map_err(df_error)?;
        if let Some(n) = filter.last {
            df = df.limit(0, Some(n)).map_err(df_error)?;
        }
        let batches = df.collect().await.map_err(df_error)?;
        let mut events = Vec::new();
        for batch in &batches {
            let batch = crate::plain_types(batch).map_err(|e| delta(e.into()))?;
            events.extend(from_batch(&batch).map_err(|cause| Error::Log {
                table: table.to_string(),
                version: t.version().unwrap_or(0),
                cause,
            })?);
        }
        if !ascending {
            events.reverse();
        }
        Ok(events)
    }
}

fn to_batch(events: &[EventRecord]) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let strings = |f: fn(&EventRecord) -> &str| Arc::new(StringArray::from_iter_values(events.iter().map(f)));
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.id))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.sequence))),
            strings(|e| &e.origin),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    events.iter().map(|e| e.timestamp_ms.saturating_mul(1000)),
                )
                .with_timezone("UTC"),
            ),
            strings(|e| &e.level),
            strings(|e| &e.event_type),
            strings(|e| &e.message),
            strings(|e| &e.details),
        ],
    )
}

fn from_batch(batch: &RecordBatch) -> Result<Vec<EventRecord>, String> {
    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("the event log has no column `{name}`"))?
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| format!("the event log's column `{name}` has an unexpected type"))
    }
    let id = column::<Int64Array>(batch, "id")?;
    let sequence = column::<Int64Array>(batch, "sequence")?;
    let origin = column::<StringArray>(batch, "origin")?;
    let timestamp = column::<TimestampMicrosecondArray>(batch, "timestamp")?;
    let level = column::<StringArray>(batch, "level")?;
    let event_type = column::<StringArray>(batch, "event_type")?;
    let message = column::<StringArray>(batch, "message")?;
    let details = column::<StringArray>(batch, "details")?;
    Ok((0..batch.num_rows())
        .map(|i| EventRecord {
            id: id.value(i),
            sequence: sequence.value(i),
            origin: origin.value(i).to_owned(),
            timestamp_ms: timestamp.value(i) / 1000,
            level: level.value(i).to_owned(),
            event_type: event_type.value(i).to_owned(),
            message: message.value(i).to_owned(),
            details: details.value(i).to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: i64) -> EventRecord {
        EventRecord {
            id: sequence + 100,
            sequence,
            origin: "task_run/1".into(),
            timestamp_ms: 1_700_000_000_000 + sequence * 1000,
            level: "info".into(),
            event_type: "task_state".into(),
            message: format!("event {sequence}"),
            details: format!("{{\"n\":{sequence}}}"),
        }
    }

    #[tokio::test]
    async fn appends_once_per_position_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(lake.event_log_position("app").await.unwrap(), 0);
        assert!(lake.read_events(&EventFilter::default()).await.unwrap().is_empty());
        let first: Vec<_> = (1..=3).map(event).collect();
        assert!(!lake.append_events(&first, "app", 3).await.unwrap().skipped);
        assert!(
            lake.append_events(&first, "app", 3).await.unwrap().skipped,
            "a retried batch writes nothing"
        );
        // A writer with bigger batches that had not seen 1..=3 committed: only 4 and 5 are new.
        let second: Vec<_> = (1..=5).map(event).collect();
        assert_eq!(lake.append_events(&second, "app", 5).await.unwrap().rows, 2);
        assert_eq!(lake.event_log_position("app").await.unwrap(), 5);
        let all = lake.read_events(&EventFilter::default()).await.unwrap();
        assert_eq!(all, (1..=5).map(event).collect::<Vec<_>>());
        let after =
            lake.read_events(&EventFilter { after_sequence: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(after.iter().map(|e| e.sequence).collect::<Vec<_>>(), [4, 5]);
        let last = lake.read_events(&EventFilter { last: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!(last.iter().map(|e| e.sequence).collect::<Vec<_>>(), [4, 5]);
        let since = lake
            .read_events(&EventFilter { since_ms: Some(1_700_000_002_000), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(since.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert!(lake.event_log_location().path().ends_with("/_switchyard/event_log/"));
    }
}
