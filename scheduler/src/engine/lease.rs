//! Granting leases: a node (or worker) asks for up to N tasks of its pool; each grant creates an
//! attempt whose id is the fencing token. Only reports carrying a live attempt id are accepted.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::transition::{self, Also, Move};
use super::{Engine, TaskState};
use crate::Error;
use crate::api::types::{Lease, RunOptions};
use crate::spec::TaskSpec;
use crate::store::sql::{Tx, placeholders};
use crate::store::{Dialect, now_ms};

/// Poll interval of a waiting lease request, for work queued by another replica.
const POLL: Duration = Duration::from_millis(200);
/// Longest pause between looks while queued work is held by others.
const CONTENDED_MAX: Duration = Duration::from_millis(32);

impl Engine {
    /// Waits up to `wait` for work for `node` and grants up to `max` leases.
    pub async fn lease(&self, node_id: &str, max: usize, wait: Duration) -> Result<Vec<Lease>, Error> {
        let key = self.node_queue_key(node_id).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut backoff = Duration::from_millis(2);
        loop {
            // Register interest before looking, so a notify between the look and the wait is not lost.
            let notified = self.work.notified();
            let (leases, contended) = self.try_lease(node_id, &key, max).await?;
            if !leases.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(leases);
            }
            if contended {
                // There is work, but others held every candidate at the moment of the look: other
                // nodes of the pool claiming, or the tick writing waiting reasons. Look again
                // soon, backing off to CONTENDED_MAX, rather than sleep a poll interval with work
                // queued (that sleep was the lease p99: 200 ms behind a tick's transaction).
                // Within the request's own wait, so a row that can never be claimed costs a look
                // every CONTENDED_MAX at most.
                tokio::time::sleep(backoff.min(deadline - tokio::time::Instant::now())).await;
                backoff = (backoff * 2).min(CONTENDED_MAX);
                continue;
            }
            let until = (tokio::time::Instant::now() + POLL).min(deadline);
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    /// Leases up to `max` tasks; also says whether work was queued but all of it was being
    /// claimed by others at that moment.
    async fn try_lease(&self, node_id: &str, key: &str, max: usize) -> Result<(Vec<Lease>, bool), Error> {
        if max == 0 {
            return Ok((vec![], false));
        }
        let now = now_ms();
        // A look before the transaction: an idle long poll must not take SQLite's write lock (or a
        // PostgreSQL transaction) every time it wakes.
        let any: Option<i64> =
            sqlx::query_scalar("SELECT task_run_id FROM queue WHERE pool = $1 AND not_before <= $2 LIMIT 1")
                .bind(key)
                .bind(now)
                .fetch_optional(&self.store.read)
                .await
                .map_err(Error::store)?;
        if any.is_none() {
            return Ok((vec![], false));
        }
        let mut tx = self.store.begin().await?;
        let (leases, contended) = self.claim(&mut tx, node_id, key, max, now).await?;
        tx.commit().await.map_err(Error::store)?;
        log_leases(node_id, &leases);
        Ok((leases, contended))
    }

    /// Claims up to `max` queued tasks of the queue `key` for `node_id` in the caller's
    /// transaction: their attempts, states and events. Also says whether work was queued but all
    /// of it held by others at that moment.
    pub(super) async fn claim(
        &self,
        tx: &mut Tx,
        node_id: &str,
        key: &str,
        max: usize,
        now: i64,
    ) -> Result<(Vec<Lease>, bool), Error> {
        let expires = now + self.config.lease_ttl.as_millis() as i64;
        let rows = lock_candidates(tx, self.store.dialect, key, max, now).await?;
        if rows.is_empty() {
            return Ok((vec![], true));
        }
        dequeue(tx, &rows).await?;
        let grant = Grant { node_id, now, expires };
        let (claimed, attempt_of) = insert_attempts(tx, &grant, &rows).await?;
        let (leases, moves) = leases_and_moves(&grant, &rows, claimed, &attempt_of)?;
        transition::apply(tx, TaskState::Running, &moves, &Also { leased: true, ..Also::default() }, now)
            .await?;
        if !leases.is_empty() {
            sqlx::query("UPDATE nodes SET first_lease_at = $1 WHERE id = $2 AND first_lease_at IS NULL")
                .bind(now)
                .bind(node_id)
                .execute(&mut **tx)
                .await
                .map_err(Error::store)?;
        }
        Ok((leases, false))
    }
}

/// What every attempt of one claim shares.
struct Grant<'a> {
    node_id: &'a str,
    now: i64,
    expires: i64,
}

/// A candidate as read when its attempt was inserted; the move to running needs its prior state
/// and queue time.
struct Claimed {
    task_run: i64,
    number: i64,
    from: TaskState,
    queued_at: Option<i64>,
}

/// Finds and locks the claimable task rows of queue `key` in one statement.
///
/// The task rows are locked with SKIP LOCKED, so nodes of a pool leasing at once get disjoint
/// batches (PostgreSQL scans past rows another transaction holds instead of returning them and
/// leaving the caller empty-handed), and replicas leasing the same task through different pools
/// never wait on each other (a lock order that would otherwise deadlock): a task claimed
/// elsewhere simply drops out.
///
/// The candidates are the pool's first few queue rows, taken in key order from the queue's
/// primary key (pool, task_run_id) before any join: a bulk submit leaves the planner's
/// statistics saying the queue is small, and with the join and ORDER BY over the whole pool
/// PostgreSQL sorted every queued task of the pool on every lease (95 ms a call with 10,000
/// queued tasks). The window is wide enough for the batches other nodes of the pool hold locked
/// at the same moment; a node that finds it all taken asks again.
async fn lock_candidates(
    tx: &mut Tx,
    dialect: Dialect,
    key: &str,
    max: usize,
    now: i64,
) -> Result<Vec<AnyRow>, Error> {
    let sql = format!(
        "WITH c AS MATERIALIZED (SELECT task_run_id FROM queue WHERE pool = $1 AND not_before <= $2 \
           ORDER BY task_run_id LIMIT $4) \
         SELECT t.id, t.run_id, t.spec, t.attempts, t.queued_at, t.state, r.job, r.options FROM c \
         JOIN task_runs t ON t.id = c.task_run_id JOIN job_runs r ON r.id = t.run_id \
         WHERE t.state IN ('queued', 'retrying') ORDER BY t.id LIMIT $3{}",
        dialect.lock_skip_of("t")
    );
    let window = (max * 8).max(64) as i64;
    let rows = sqlx::query(&sql)
        .bind(key)
        .bind(now)
        .bind(max as i64)
        .bind(window)
        .fetch_all(&mut **tx)
        .await
        .map_err(Error::store)?;
    Ok(rows)
}

/// Takes the claimed tasks off the queue, so no other lease finds them once this commits.
async fn dequeue(tx: &mut Tx, rows: &[AnyRow]) -> Result<(), Error> {
    let ids: Vec<i64> =
        rows.iter().map(|r| r.try_get::<i64, _>("id")).collect::<Result<_, _>>().map_err(Error::store)?;
    let sql = format!("DELETE FROM queue WHERE task_run_id IN ({})", placeholders(1, ids.len()));
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(*id);
    }
    q.execute(&mut **tx).await.map_err(Error::store)?;
    Ok(())
}

/// One multi-row insert for the attempts, so a batch costs one statement; the moves to running
/// need the attempt ids it returns (task run → attempt).
async fn insert_attempts(
    tx: &mut Tx,
    grant: &Grant<'_>,
    rows: &[AnyRow],
) -> Result<(Vec<Claimed>, HashMap<i64, i64>), Error> {
    let sql = format!(
        "INSERT INTO attempts (task_run_id, number, node_id, state, queued_at, started_at, lease_expires_at) \
         VALUES {} RETURNING id, task_run_id",
        crate::store::sql::value_rows(rows.len(), 7)
    );
    let mut q = sqlx::query(&sql);
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let task_run: i64 = row.try_get("id").map_err(Error::store)?;
        let number: i64 = row.try_get::<i64, _>("attempts").map_err(Error::store)? + 1;
        let queued_at: Option<i64> = row.try_get("queued_at").map_err(Error::store)?;
        let from: TaskState = crate::store::sql::parse_column(row, "state")?;
        q = q
            .bind(task_run)
            .bind(number)
            .bind(grant.node_id)
            .bind("running")
            .bind(queued_at.unwrap_or(grant.now))
            .bind(grant.now)
            .bind(grant.expires);
        claimed.push(Claimed { task_run, number, from, queued_at });
    }
    let inserted = q.fetch_all(&mut **tx).await.map_err(Error::store)?;
    let mut attempt_of = HashMap::new();
    for row in &inserted {
        let id: i64 = row.try_get("id").map_err(Error::store)?;
        let task_run: i64 = row.try_get("task_run_id").map_err(Error::store)?;
        attempt_of.insert(task_run, id);
    }
    Ok((claimed, attempt_of))
}

/// The leases handed to the node and the moves to running, in candidate order.
fn leases_and_moves<'a>(
    grant: &Grant<'a>,
    rows: &[AnyRow],
    claimed: Vec<Claimed>,
    attempt_of: &HashMap<i64, i64>,
) -> Result<(Vec<Lease>, Vec<Move<'a>>), Error> {
    let mut leases = Vec::with_capacity(rows.len());
    let mut moves = Vec::with_capacity(rows.len());
    for (row, Claimed { task_run, number, from, queued_at }) in rows.iter().zip(claimed) {
        let attempt = attempt_of[&task_run];
        let run: i64 = row.try_get("run_id").map_err(Error::store)?;
        let job: String = row.try_get("job").map_err(Error::store)?;
        let spec: String = row.try_get("spec").map_err(Error::store)?;
        let spec: TaskSpec = serde_json::from_str(&spec).map_err(|e| Error::corrupt("task spec", e))?;
        let options = run_options(row)?;
        moves.push(Move {
            task_run,
            attempt: Some(attempt),
            from,
            reason: Some(grant.node_id),
            since: queued_at,
        });
        leases.push(Lease {
            attempt,
            task_run,
            run,
            job,
            number,
            spec,
            lease_expires_at: grant.expires,
            options,
        });
    }
    Ok((leases, moves))
}

/// A run's stored options; runs from before options existed have none, which means the defaults.
pub(crate) fn run_options(row: &sqlx::any::AnyRow) -> Result<RunOptions, Error> {
    Ok(crate::store::sql::json_column(row, "options", "run options")?.unwrap_or_default())
}

/// Logged once the leases' transaction committed.
pub(super) fn log_leases(node_id: &str, leases: &[Lease]) {
    for lease in leases {
        tracing::debug!(job = %lease.job, run = lease.run, task = %lease.spec.name, attempt = lease.attempt, node = node_id, "Leased.");
    }
}
