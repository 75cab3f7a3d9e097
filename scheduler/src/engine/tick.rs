//! The engine's periodic work: reclaim leases whose heartbeats stopped, settle runs and dependents
//! that concurrent reports left open, retire silent nodes, fire cron slots and data triggers, and
//! explain why queued tasks are not running.

use std::collections::HashMap;

use sqlx::Row;
use switchyard_config::FailureClass;

use super::complete::{finish_task, key_rows, maybe_finish_run};
use super::submit::keys_of;
use super::transition::{self, Also, Move, QueuedAt};
use super::{Engine, TaskState};
use crate::Error;
use crate::api::types::{Outcome, Report};
use crate::spec::SERVERLESS;
use crate::store::sql::parse_column;
use crate::store::{Store, now_ms};

impl Engine {
    /// Runs every periodic duty once. The control plane calls this about every second.
    pub async fn tick(&self) -> Result<(), Error> {
        self.reclaim_expired().await?;
        self.settle().await?;
        self.retire_silent_nodes().await?;
        self.fire_due_schedules().await?;
        self.fire_due_triggers().await?;
        self.explain_waiting().await?;
        Ok(())
    }

    /// Attempts whose lease expired are recorded as lost and their tasks requeued for another
    /// eligible node; a task that keeps losing its node fails (`internal`).
    pub async fn reclaim_expired(&self) -> Result<usize, Error> {
        let now = now_ms();
        let expired = sqlx::query(
            "SELECT id, task_run_id, node_id FROM attempts WHERE state = 'running' AND lease_expires_at < $1 LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        let mut reclaimed = 0;
        for row in &expired {
            let attempt: i64 = row.try_get("id").map_err(Error::store)?;
            let task_run: i64 = row.try_get("task_run_id").map_err(Error::store)?;
            let node: String = row.try_get("node_id").map_err(Error::store)?;
            let mut tx = self.store.begin().await?;
            let lost = sqlx::query(
                "UPDATE attempts SET state = 'lost', finished_at = $1, error_class = 'connectivity', \
                 message = $2 WHERE id = $3 AND state = 'running' AND lease_expires_at < $1",
            )
            .bind(now)
            .bind(format!("node {node} stopped heartbeating; lease reclaimed"))
            .bind(attempt)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
            if lost.rows_affected() == 0 {
                continue; // renewed or reported meanwhile
            }
            let task = sqlx::query(&format!(
                "SELECT state, run_id, losses, pools FROM task_runs WHERE id = $1{}",
                self.store.dialect.for_update()
            ))
            .bind(task_run)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::store)?;
            let from: TaskState = parse_column(&task, "state")?;
            let losses: i64 = task.try_get::<i64, _>("losses").map_err(Error::store)? + 1;
            let run_id: i64 = task.try_get("run_id").map_err(Error::store)?;
            sqlx::query("UPDATE task_runs SET losses = $1 WHERE id = $2")
                .bind(losses)
                .bind(task_run)
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
            if from == TaskState::Running {
                if losses > i64::from(self.config.max_losses) {
                    let report = Report {
                        attempt,
                        outcome: Outcome::Failed,
                        exit_code: None,
                        error_class: Some(FailureClass::Internal),
                        message: Some(format!("lost its node {losses} times")),
                        log_tail: None,
                        details: None,
                    };
                    let m = Move { task_run, attempt: Some(attempt), from, reason: None, since: None };
                    finish_task(&mut tx, m, TaskState::Failed, now, &report, None).await?;
                } else {
                    let reason = format!("lease lost on node {node}; requeued");
                    let m =
                        Move { task_run, attempt: Some(attempt), from, reason: Some(&reason), since: None };
                    let requeue = Also { queued_at: QueuedAt::Now, ..Also::default() };
                    transition::one(&mut tx, TaskState::Queued, m, &requeue, now).await?;
                    super::queue::push(&mut tx, &key_rows(task_run, &keys_of(&task)?), now).await?;
                }
            }
            maybe_finish_run(&mut tx, run_id, now).await?;
            tx.commit().await.map_err(Error::store)?;
            tracing::warn!(attempt, task_run, node = %node, "Lease lost; requeueing.");
            reclaimed += 1;
        }
        if reclaimed > 0 {
            self.work.notify_waiters();
        }
        Ok(reclaimed)
    }

    /// Nodes silent for three lease periods are declared gone (their leases were reclaimed long ago).
    async fn retire_silent_nodes(&self) -> Result<(), Error> {
        let now = now_ms();
        let cutoff = now - 3 * self.config.lease_ttl.as_millis() as i64;
        // A read first: the write transaction (SQLite's one writer) only when a node went silent.
        let silent = sqlx::query("SELECT id FROM nodes WHERE state = 'active' AND heartbeat_at < $1 LIMIT 1")
            .bind(cutoff)
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?;
        if silent.is_none() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        let gone = sqlx::query(
            "UPDATE nodes SET state = 'gone' WHERE state = 'active' AND heartbeat_at < $1 \
             RETURNING id, kind, pool, egress_ip, heartbeat_at",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::store)?;
        let mut events = Vec::with_capacity(gone.len());
        for row in &gone {
            let id: String = row.try_get("id").map_err(Error::store)?;
            let kind: String = row.try_get("kind").map_err(Error::store)?;
            let pool: Option<String> = row.try_get("pool").map_err(Error::store)?;
            let egress_ip: Option<String> = row.try_get("egress_ip").map_err(Error::store)?;
            let heartbeat_at: i64 = row.try_get("heartbeat_at").map_err(Error::store)?;
            let silent_s = (now - heartbeat_at) as f64 / 1000.0;
            events.push(crate::store::event_log::NewEvent {
                origin: format!("control_plane/{}", crate::store::event_log::replica()),
                // A serverless worker that went quiet is routine (it may have been scaled away);
                // a dedicated node is a static egress IP gone.
                level: if kind == "dedicated" { crate::store::event_log::Level::Error } else { crate::store::event_log::Level::Warn },
                event_type: "node_lost",
                message: format!("{kind} node {id} stopped heartbeating {silent_s:.0}s ago; declared gone"),
                details: serde_json::json!({
                    "node": id, "kind": kind, "pool": pool, "egress_ip": egress_ip, "last_heartbeat_at": heartbeat_at,
                }),
                task_run: None,
            });
        }
        crate::store::event_log::insert(&mut tx, &events, now).await?;
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }

    /// Writes a "cannot schedule" reason on each waiting task: no live node for its pools, all
    /// slots busy, or backoff.
    async fn explain_waiting(&self) -> Result<(), Error> {
        let now = now_ms();
        let live_after = now - self.config.lease_ttl.as_millis() as i64;
        let capacity = live_capacity(&self.store, live_after).await?;
        let changed = changed_reasons(&self.store, &capacity, now).await?;
        write_reasons(&self.store, &changed).await?;
        Ok(())
    }
}

/// Queue key → (live nodes, free slots, total slots).
type Capacity = HashMap<String, (i64, i64, i64)>;

/// The capacity of the nodes that heartbeated within a lease period, by queue key: serverless
/// workers all share one key, dedicated nodes count under their pool.
async fn live_capacity(store: &Store, live_after: i64) -> Result<Capacity, Error> {
    let nodes =
        sqlx::query("SELECT id, kind, pool, slots FROM nodes WHERE state = 'active' AND heartbeat_at >= $1")
            .bind(live_after)
            .fetch_all(&store.read)
            .await
            .map_err(Error::store)?;
    let busy = busy_slots(store).await?;
    let mut capacity: Capacity = HashMap::new();
    for row in &nodes {
        let id: String = row.try_get("id").map_err(Error::store)?;
        let kind: String = row.try_get("kind").map_err(Error::store)?;
        let pool: Option<String> = row.try_get("pool").map_err(Error::store)?;
        let slots: i64 = row.try_get("slots").map_err(Error::store)?;
        let key = if kind == "serverless" { SERVERLESS.to_owned() } else { pool.unwrap_or_default() };
        let entry = capacity.entry(key).or_default();
        entry.0 += 1;
        entry.1 += (slots - busy.get(&id).copied().unwrap_or(0)).max(0);
        entry.2 += slots;
    }
    Ok(capacity)
}

/// Running attempts per node id, the slots each node has taken.
async fn busy_slots(store: &Store) -> Result<HashMap<String, i64>, Error> {
    let busy_rows =
        sqlx::query("SELECT node_id, COUNT(*) AS n FROM attempts WHERE state = 'running' GROUP BY node_id")
            .fetch_all(&store.read)
            .await
            .map_err(Error::store)?;
    let mut busy: HashMap<String, i64> = HashMap::new();
    for row in &busy_rows {
        busy.insert(row.try_get("node_id").map_err(Error::store)?, row.try_get("n").map_err(Error::store)?);
    }
    Ok(busy)
}

/// The waiting tasks whose reason differs from the one stored, grouped by their new reason so
/// each reason is written in as few statements as possible; unchanged rows cost no write.
async fn changed_reasons(
    store: &Store,
    capacity: &Capacity,
    now: i64,
) -> Result<HashMap<String, Vec<i64>>, Error> {
    let waiting = sqlx::query(
        "SELECT id, state, pools, queued_at, waiting FROM task_runs WHERE state IN ('queued', 'retrying') ORDER BY id LIMIT 5000",
    )
    .fetch_all(&store.read)
    .await
    .map_err(Error::store)?;
    let mut changed: HashMap<String, Vec<i64>> = HashMap::new();
    for row in &waiting {
        let id: i64 = row.try_get("id").map_err(Error::store)?;
        let state: TaskState = parse_column(row, "state")?;
        let queued_at: Option<i64> = row.try_get("queued_at").map_err(Error::store)?;
        let old: Option<String> = row.try_get("waiting").map_err(Error::store)?;
        let keys = keys_of(row)?;
        let reason = waiting_reason(state, queued_at, &keys, capacity, now);
        if old.as_deref() != Some(reason.as_str()) {
            changed.entry(reason).or_default().push(id);
        }
    }
    Ok(changed)
}

/// Why a task eligible for the queue keys `keys` is not running, in the words an operator
/// reads: backoff first (capacity is irrelevant until it ends), then serverless, then pools.
fn waiting_reason(
    state: TaskState,
    queued_at: Option<i64>,
    keys: &[String],
    capacity: &Capacity,
    now: i64,
) -> String {
    if state == TaskState::Retrying && queued_at.is_some_and(|q| q > now) {
        format!("retrying in {:.1}s (backoff)", (queued_at.unwrap_or(now) - now) as f64 / 1000.0)
    } else if keys.iter().all(|k| k == SERVERLESS) {
        match capacity.get(SERVERLESS) {
            None => "waiting for a serverless worker to start".to_owned(),
            Some((_, 0, total)) => format!("all {total} serverless worker slots are busy"),
            Some(_) => "about to be leased by a serverless worker".to_owned(),
        }
    } else {
        let live: Vec<&String> = keys.iter().filter(|k| capacity.contains_key(*k)).collect();
        if keys.is_empty() {
            "no egress IP allowed: no pool is eligible (see `switchyard plan`)".to_owned()
        } else if live.is_empty() {
            format!(
                "no node registered for eligible pool{} {}",
                if keys.len() == 1 { "" } else { "s" },
                keys.join(", ")
            )
        } else if live.iter().all(|k| capacity[*k].1 == 0) {
            let total: i64 = live.iter().map(|k| capacity[*k].2).sum();
            format!(
                "all {total} slots busy on pool{} {}",
                if live.len() == 1 { "" } else { "s" },
                live.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else {
            "about to be leased".to_owned()
        }
    }
}

/// One statement per reason and chunk of 250 rows, each chunk its own short transaction:
/// thousands of single-row commits were each a turn of SQLite's one writer (or an fsync on
/// PostgreSQL) that lease and report calls queued behind, while one transaction over thousands
/// of rows held their locks long enough for leases to find every candidate taken.
async fn write_reasons(store: &Store, changed: &HashMap<String, Vec<i64>>) -> Result<(), Error> {
    for (reason, ids) in changed {
        for chunk in ids.chunks(250) {
            let mut tx = store.begin().await?;
            // Rows a lease is claiming right now are skipped, not waited for: the lease is
            // about to clear their reason anyway, and the tick must not hold up the nodes.
            let sql = format!(
                "UPDATE task_runs SET waiting = $1 WHERE id IN (SELECT id FROM task_runs \
                 WHERE state IN ('queued', 'retrying') AND id IN ({}){})",
                crate::store::sql::placeholders(2, chunk.len()),
                store.dialect.lock_skip_of("task_runs")
            );
            let mut q = sqlx::query(&sql).bind(reason);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await.map_err(Error::store)?;
            tx.commit().await.map_err(Error::store)?;
        }
    }
    Ok(())
}
