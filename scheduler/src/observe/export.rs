//! The event log: what happened, as rows any Delta reader can read (`_switchyard/event_log` in the
//! lake), exported exactly once even when several control-plane replicas share a store and any of
//! them is killed at any moment.
//!
//! **Recording.** The engine writes each event into the store's `event_log` table in the same
//! transaction as the change it describes (a task transition, a node registered, deregistered or
//! lost, a job run finished, an egress denial), so an event exists exactly when its change was
//! committed. Rows get an `id` there, unique but not in commit order on PostgreSQL (a transaction
//! that took id 5 may commit after the one that took id 6).
//!
//! **Sequencing.** The exporter holds a lease on the one `event_log_export` row (one exporting
//! replica at a time; another takes over when it expires) and gives visible rows without a
//! sequence the next ones, in id order, in one transaction that checks it still holds the lease:
//! `sequence` is gapless and strictly increasing, and a row committed late simply gets a later one.
//! A sequence, once given, never changes.
//!
//! **Exporting.** The Delta table keeps its own cursor: each commit carries the Delta `txn` action
//! with app id [`EXPORT_APP_ID`] and version = the last sequence it holds, in the same commit as
//! the rows. The exporter reads that position *from the table* and appends the rows after it, so a
//! crash between the Delta commit and the store's `exported` update re-exports nothing; two
//! exporters racing on the same rows (a lease that expired under a paused holder) cannot both
//! commit, because Delta's conflict checker refuses a commit whose app id a concurrent commit
//! also set, and the retry sees the position already past its rows.
//!
//! The scheduler does not know the lake (crates import only crates above them): the exporter
//! writes through an [`EventSink`], which the binary implements with the lake crate.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::watch;

use crate::Error;
use crate::store::Store;
pub use crate::store::event_log::{Level, replica};
use crate::store::now_ms;

/// The Delta `txn` app id of the event log's commits; its version is the last exported sequence.
pub const EXPORT_APP_ID: &str = "switchyard/event_log";

/// One event as it is exported: the columns of `_switchyard/event_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Given when the event was recorded; unique within the store.
    pub id: i64,
    /// Position in the log: 1, 2, 3, … without gaps.
    pub sequence: i64,
    /// What emitted it: `task_run/ID`, `job_run/ID`, `node/ID`, `gateway/EGRESS_IP` or
    /// `control_plane/REPLICA`.
    pub origin: String,
    /// When it happened, epoch milliseconds.
    pub at_ms: i64,
    pub level: Level,
    /// `task_state`, `run_finished`, `node_registered`, `node_deregistered`, `node_lost`,
    /// `egress_denied`.
    pub event_type: String,
    pub message: String,
    /// A JSON object with the event's facts (ids, states, reasons), as text.
    pub details: String,
}

/// Where exported events go: the binary writes them to the lake's `_switchyard/event_log`.
pub trait EventSink: Send + Sync {
    /// The last sequence the sink holds (its Delta `txn` version for [`EXPORT_APP_ID`]), 0 when
    /// it holds none.
    fn position(&self) -> impl Future<Output = Result<i64, Error>> + Send;
    /// Appends `events` (consecutive sequences, ascending) and records `upto` (the last one) as the
    /// position in the same commit. Appending a batch whose position is already held must write
    /// nothing.
    fn append(&self, events: &[LogEvent], upto: i64) -> impl Future<Output = Result<(), Error>> + Send;
    /// Where the events go, for messages.
    fn describe(&self) -> String;
}

/// How the exporter runs.
#[derive(Debug, Clone)]
pub struct ExportPolicy {
    /// How often to look for new events when the last batch was not full.
    pub interval: Duration,
    /// Events per Delta commit at most.
    pub batch: usize,
    /// How long the exporter's lease lasts without renewal (it renews every cycle).
    pub lease_ttl: Duration,
    /// Exported events older than this are deleted from the store (the Delta table keeps them).
    pub retention: Duration,
}

impl Default for ExportPolicy {
    fn default() -> Self {
        ExportPolicy {
            interval: Duration::from_secs(2),
            batch: 1000,
            lease_ttl: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one export cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStep {
    /// Another replica holds the lease.
    NotLeader,
    /// Nothing new to export.
    Idle,
    /// Exported events up to this sequence; `more` when others are already waiting.
    Exported { upto: i64, events: usize, more: bool },
}

const CURSOR: &str = "event_log";

/// The export's side of the store: the shared cursor, the lease that makes one replica the
/// exporter, and the events themselves.
#[derive(Debug, Clone)]
pub struct Exporter {
    store: Store,
}

impl Exporter {
    pub fn new(store: Store) -> Self {
        Exporter { store }
    }

    /// One export cycle as `owner` (see the module documentation).
    pub async fn export_events<S: EventSink>(
        &self,
        sink: &S,
        owner: &str,
        policy: &ExportPolicy,
    ) -> Result<ExportStep, Error> {
        if !self.claim_export_lease(owner, policy.lease_ttl).await? {
            return Ok(ExportStep::NotLeader);
        }
        let (assigned, exported) = self.export_cursor().await?;
        if assigned == exported && !self.unsequenced_events().await? {
            return Ok(ExportStep::Idle);
        }
        let held = sink.position().await?;
        if held < exported {
            tracing::warn!(
                sink = %sink.describe(), held, exported,
                "The event log table holds fewer events than the state store exported (was it deleted, or the lake root changed?); exporting what the store still has after sequence {held}."
            );
        }
        let mut assigned = assigned;
        if assigned <= held {
            // Nothing outstanding: sequence the next batch (after what the table holds, should the
            // store be newer than the table it exports to).
            assigned = self.assign_sequences(owner, held, policy.batch).await?;
        }
        let mut events = self.sequenced_events(held, assigned, policy.batch).await?;
        if events.is_empty() && assigned > held {
            // Rows the table lacks were already deleted from the store (after the table was
            // deleted): skip past them so export can go on.
            tracing::error!(
                sink = %sink.describe(), from = held + 1, to = assigned,
                "Events are missing from both the event log table and the state store; the table will have a gap."
            );
            assigned = self.assign_sequences(owner, assigned, policy.batch).await?;
            events = self.sequenced_events(held, assigned, policy.batch).await?;
        }
        let Some(last) = events.last() else {
            self.mark_exported(owner, held).await?;
            return Ok(ExportStep::Idle);
        };
        let upto = last.sequence;
        sink.append(&events, upto).await?;
        self.mark_exported(owner, upto).await?;
        self.prune_events(upto, policy.retention).await?;
        let more = upto < assigned || self.unsequenced_events().await?;
        Ok(ExportStep::Exported { upto, events: events.len(), more })
    }

    /// Takes or renews the exporter's lease; false when another owner holds it.
    async fn claim_export_lease(&self, owner: &str, ttl: Duration) -> Result<bool, Error> {
        let now = now_ms();
        let claimed = sqlx::query(
            "UPDATE event_log_export SET owner = $1, lease_expires_at = $2 \
             WHERE name = $3 AND (owner = $1 OR owner IS NULL OR lease_expires_at < $4)",
        )
        .bind(owner)
        .bind(now + ttl.as_millis() as i64)
        .bind(CURSOR)
        .bind(now)
        .execute(&self.store.pool)
        .await
        .map_err(Error::store)?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Gives up the lease (at shutdown), so another replica takes over without waiting it out.
    pub async fn release_export_lease(&self, owner: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE event_log_export SET owner = NULL, lease_expires_at = 0 WHERE name = $1 AND owner = $2",
        )
        .bind(CURSOR)
        .bind(owner)
        .execute(&self.store.pool)
        .await
        .map_err(Error::store)?;
        Ok(())
    }

    /// `(assigned, exported)`.
    async fn export_cursor(&self) -> Result<(i64, i64), Error> {
        let row = sqlx::query("SELECT assigned, exported FROM event_log_export WHERE name = $1")
            .bind(CURSOR)
            .fetch_one(&self.store.read)
            .await
            .map_err(Error::store)?;
        Ok((row.try_get("assigned").map_err(Error::store)?, row.try_get("exported").map_err(Error::store)?))
    }

    async fn unsequenced_events(&self) -> Result<bool, Error> {
        let row = sqlx::query("SELECT id FROM event_log WHERE sequence IS NULL LIMIT 1")
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?;
        Ok(row.is_some())
    }

    /// Sequences up to `batch` visible rows without one, numbering after `max(assigned, floor)`,
    /// if `owner` still holds the lease. Returns the new `assigned`.
    async fn assign_sequences(&self, owner: &str, floor: i64, batch: usize) -> Result<i64, Error> {
        let mut tx = self.store.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT assigned, owner FROM event_log_export WHERE name = $1{}",
            self.store.dialect.for_update()
        ))
        .bind(CURSOR)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::store)?;
        let assigned: i64 = row.try_get("assigned").map_err(Error::store)?;
        let holder: Option<String> = row.try_get("owner").map_err(Error::store)?;
        if holder.as_deref() != Some(owner) {
            return Ok(assigned); // lost the lease meanwhile: the new holder sequences
        }
        let base = assigned.max(floor);
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM event_log WHERE sequence IS NULL ORDER BY id LIMIT $1")
                .bind(batch as i64)
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::store)?;
        for (chunk_start, chunk) in ids.chunks(200).enumerate().map(|(i, c)| (i * 200, c)) {
            let sql = format!(
                "UPDATE event_log SET sequence = v.column2 FROM (VALUES {}) AS v WHERE event_log.id = v.column1",
                crate::store::sql::value_rows(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (i, id) in chunk.iter().enumerate() {
                q = q.bind(*id).bind(base + (chunk_start + i) as i64 + 1);
            }
            q.execute(&mut *tx).await.map_err(Error::store)?;
        }
        let assigned = base + ids.len() as i64;
        sqlx::query("UPDATE event_log_export SET assigned = $1 WHERE name = $2")
            .bind(assigned)
            .bind(CURSOR)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        Ok(assigned)
    }

    /// Sequenced events after `after` up to `upto`, at most `limit`, with task events' job and
    /// task names joined in.
    async fn sequenced_events(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<LogEvent>, Error> {
        let rows = sqlx::query(
            "SELECT e.id, e.sequence, e.at, e.origin, e.level, e.event_type, e.message, e.details, \
             t.task, t.run_id, r.job FROM event_log e \
             LEFT JOIN task_runs t ON t.id = e.task_run_id LEFT JOIN job_runs r ON r.id = t.run_id \
             WHERE e.sequence > $1 AND e.sequence <= $2 ORDER BY e.sequence LIMIT $3",
        )
        .bind(after)
        .bind(upto)
        .bind(limit as i64)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter().map(to_event).collect()
    }

    /// Records that the table holds everything up to `upto` (only while holding the lease, and
    /// never backwards).
    async fn mark_exported(&self, owner: &str, upto: i64) -> Result<(), Error> {
        sqlx::query(
            "UPDATE event_log_export SET exported = $1 WHERE name = $2 AND owner = $3 AND exported <> $1",
        )
        .bind(upto)
        .bind(CURSOR)
        .bind(owner)
        .execute(&self.store.pool)
        .await
        .map_err(Error::store)?;
        Ok(())
    }

    /// Deletes exported events older than the retention from the store.
    async fn prune_events(&self, exported: i64, retention: Duration) -> Result<(), Error> {
        sqlx::query("DELETE FROM event_log WHERE sequence <= $1 AND at < $2")
            .bind(exported)
            .bind(now_ms() - retention.as_millis() as i64)
            .execute(&self.store.pool)
            .await
            .map_err(Error::store)?;
        Ok(())
    }

    /// Events recorded in the store (exported or not), newest last: for tests and diagnostics.
    pub async fn recorded_events(&self) -> Result<Vec<(i64, Option<i64>, String)>, Error> {
        let rows = sqlx::query("SELECT id, sequence, event_type FROM event_log ORDER BY id")
            .fetch_all(&self.store.read)
            .await
            .map_err(Error::store)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(Error::store)?,
                    r.try_get("sequence").map_err(Error::store)?,
                    r.try_get("event_type").map_err(Error::store)?,
                ))
            })
            .collect()
    }
}

fn to_event(row: &sqlx::any::AnyRow) -> Result<LogEvent, Error> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(Error::store);
    let level: String = get_s("level")?;
    let mut message = get_s("message")?;
    let mut details = get_s("details")?;
    let task: Option<String> = row.try_get("task").map_err(Error::store)?;
    let job: Option<String> = row.try_get("job").map_err(Error::store)?;
    let run: Option<i64> = row.try_get("run_id").map_err(Error::store)?;
    if let (Some(task), Some(job), Some(run)) = (task, job, run) {
        message = format!("{job}/{task} (run {run}): {message}");
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(&details) {
            map.insert("job".into(), job.into());
            map.insert("task".into(), task.into());
            map.insert("run".into(), run.into());
            details = serde_json::Value::Object(map).to_string();
        }
    }
    Ok(LogEvent {
        id: row.try_get("id").map_err(Error::store)?,
        sequence: row.try_get("sequence").map_err(Error::store)?,
        origin: get_s("origin")?,
        at_ms: row.try_get("at").map_err(Error::store)?,
        level: level.parse().map_err(|e| Error::corrupt("event level", e))?,
        event_type: get_s("event_type")?,
        message,
        details,
    })
}

/// Exports events until `shutdown` turns true, then exports once more (so a stopping control
/// plane leaves nothing behind that it could still export) and gives up the lease. Failures are
/// logged and retried: events wait in the store meanwhile.
pub async fn export_loop<S: EventSink>(
    exporter: Exporter,
    sink: S,
    policy: ExportPolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = replica();
    let mut failing = false;
    let mut closed = false;
    loop {
        let stopping = closed || *shutdown.borrow();
        let more = match exporter.export_events(&sink, owner, &policy).await {
            Ok(ExportStep::Exported { upto, events, more }) => {
                tracing::debug!(upto, events, "Exported events to the event log.");
                if failing {
                    tracing::info!(sink = %sink.describe(), "Event log export works again.");
                    failing = false;
                }
                more
            }
            Ok(_) => false,
            Err(e) => {
                if !failing {
                    tracing::warn!(sink = %sink.describe(), error = %e, "Event log export failed; events stay in the state store and are retried.");
                }
                failing = true;
                false
            }
        };
        if stopping && !more {
            break;
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.interval) => {}
            changed = shutdown.changed() => closed = changed.is_err(),
        }
    }
    if let Err(e) = exporter.release_export_lease(owner).await {
        tracing::debug!(error = %e, "Could not release the event log export lease; it expires by itself.");
    }
}
