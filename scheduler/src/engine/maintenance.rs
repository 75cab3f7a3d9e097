//! Scheduled lake maintenance, run exactly once per slot across control-plane replicas: the
//! replica whose insert of the (table, slot) row succeeds runs it, and records how it ended
//! (with an event). The work itself (deltalake's optimize and vacuum) is the binary's, which
//! holds the lake.

use super::Engine;
use crate::Error;
use crate::store::event_log::{Level, NewEvent};
use crate::store::now_ms;

/// The slot `now` (epoch ms) falls in: the start of the current `every` interval (aligned to the
/// Unix epoch, so every replica computes the same one), or the latest time of a cron schedule.
pub fn maintenance_slot(every: Option<std::time::Duration>, schedule: Option<&str>, now: i64) -> Option<i64> {
    match (every, schedule) {
        (Some(every), _) => {
            let ms = i64::try_from(every.as_millis()).ok().filter(|ms| *ms > 0)?;
            Some(now - now.rem_euclid(ms))
        }
        (None, Some(schedule)) => super::cron::latest_slot(schedule, now),
        (None, None) => None,
    }
}

impl Engine {
    /// Claims `slot` of `table`'s maintenance for `owner`: true for exactly one caller, whichever
    /// replica asks first; false for every other (and for the same one asking again).
    pub async fn claim_maintenance(&self, table: &str, slot: i64, owner: &str) -> Result<bool, Error> {
        let claimed = sqlx::query(
            "INSERT INTO lake_maintenance (target, slot, owner, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (target, slot) DO NOTHING",
        )
        .bind(table)
        .bind(slot)
        .bind(owner)
        .bind(now_ms())
        .execute(&self.store.pool)
        .await
        .map_err(Error::store)?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Records how a claimed slot ended, with a `lake_maintenance` event when `event` (`details`:
    /// what it did).
    pub async fn finish_maintenance(
        &self,
        table: &str,
        slot: i64,
        outcome: Result<String, String>,
        details: serde_json::Value,
        event: bool,
    ) -> Result<(), Error> {
        let now = now_ms();
        let (state, message, level) = match &outcome {
            Ok(m) => ("succeeded", m.clone(), Level::Info),
            Err(m) => ("failed", m.clone(), Level::Warn),
        };
        let mut tx = self.store.pool.begin().await.map_err(Error::store)?;
        sqlx::query(
            "UPDATE lake_maintenance SET finished_at = $1, outcome = $2, message = $3 WHERE target = $4 AND slot = $5",
        )
        .bind(now)
        .bind(state)
        .bind(&message)
        .bind(table)
        .bind(slot)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        let record = event;
        let event = NewEvent {
            origin: format!("control_plane/{}", crate::store::event_log::replica()),
            level,
            event_type: "lake_maintenance",
            message: format!("maintenance of {table} {state}: {message}"),
            details: serde_json::json!({ "table": table, "slot": slot, "outcome": state, "did": details }),
            task_run: None,
        };
        if record {
            crate::store::event_log::insert(&mut tx, &[event], now).await?;
        }
        tx.commit().await.map_err(Error::store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_slots_are_aligned_so_replicas_agree() {
        let hour = std::time::Duration::from_secs(3600);
        let at = 1_764_000_000_123; // some instant, ms
        let slot = maintenance_slot(Some(hour), None, at).unwrap();
        assert_eq!(slot % 3_600_000, 0);
        assert!(slot <= at && at - slot < 3_600_000);
        assert_eq!(maintenance_slot(Some(hour), None, slot + 3_599_999), Some(slot));
        assert_eq!(maintenance_slot(Some(hour), None, slot + 3_600_000), Some(slot + 3_600_000));
        assert_eq!(maintenance_slot(None, None, at), None);
        assert_eq!(maintenance_slot(Some(std::time::Duration::ZERO), None, at), None);
    }
}
