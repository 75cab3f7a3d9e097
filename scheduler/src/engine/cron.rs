//! Cron schedules. Each slot fires exactly once: the run row for (job, slot) is unique in the
//! store, so restarts and several replicas racing for the same slot start one run between them.
//! After downtime only the latest missed slot fires, not every slot that was missed.

use chrono::{TimeZone, Utc};
use sqlx::Row;

use super::Engine;
use crate::Error;
use crate::store::now_ms;

impl Engine {
    pub(crate) async fn fire_due_schedules(&self) -> Result<(), Error> {
        let now = now_ms();
        let jobs = sqlx::query("SELECT name, schedule, created_at FROM jobs WHERE schedule IS NOT NULL")
            .fetch_all(&self.store.read)
            .await
            .map_err(Error::store)?;
        for row in &jobs {
            let name: String = row.try_get("name").map_err(Error::store)?;
            let schedule: String = row.try_get("schedule").map_err(Error::store)?;
            let created_at: i64 = row.try_get("created_at").map_err(Error::store)?;
            let Some(slot) = latest_slot(&schedule, now) else { continue };
            if slot < created_at {
                continue; // slots before the job existed never fire
            }
            if let Some(run) = self.trigger_slot(&name, slot).await? {
                tracing::info!(job = %name, run, slot, "Cron slot fired.");
            }
        }
        Ok(())
    }
}

/// The most recent slot of `schedule` at or before `now` (epoch ms).
pub(crate) fn latest_slot(schedule: &str, now: i64) -> Option<i64> {
    let cron = croner::parser::CronParser::new().parse(schedule).ok()?;
    let now = Utc.timestamp_millis_opt(now).single()?;
    let slot = cron.find_previous_occurrence(&now, true).ok()?;
    Some(slot.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_slot_is_at_or_before_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 34, 56).unwrap().timestamp_millis();
        let slot = latest_slot("*/5 * * * *", now).unwrap();
        assert_eq!(slot, Utc.with_ymd_and_hms(2026, 11, 21, 12, 30, 0).unwrap().timestamp_millis());
        let on = Utc.with_ymd_and_hms(2026, 11, 21, 12, 30, 0).unwrap().timestamp_millis();
        assert_eq!(latest_slot("*/5 * * * *", on), Some(on));
    }
}
