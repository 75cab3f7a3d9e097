//! Cancellation: of a whole run (every unfinished task) or of one task and, transitively, the
//! tasks waiting for it. Running attempts learn it at their next heartbeat.

use sqlx::Row;

use super::complete::{finish_task, maybe_finish_run};
use super::{Engine, TaskState};
use crate::Error;
use crate::api::types::{Outcome, Report};
use crate::store::now_ms;
use crate::store::sql::parse_column;
use crate::views::RunView;

impl Engine {
    /// Cancels every unfinished task of a run; running attempts are stopped at their next heartbeat.
    pub async fn cancel_run(&self, run_id: i64) -> Result<RunView, Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM task_runs WHERE run_id = $1 AND state IN ('pending', 'queued', 'running', 'retrying')",
        )
        .bind(run_id)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        self.cancel_tasks(&ids, "run cancelled").await?;
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        maybe_finish_run(&mut tx, run_id, now).await?;
        tx.commit().await.map_err(Error::store)?;
        self.views().run(run_id).await
    }

    /// Cancels one task (and, transitively, the tasks waiting for it).
    pub async fn cancel_task(&self, task_run_id: i64) -> Result<(), Error> {
        self.cancel_tasks(&[task_run_id], "task cancelled").await
    }

    async fn cancel_tasks(&self, ids: &[i64], why: &str) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        for id in ids {
            let row = sqlx::query(&format!(
                "SELECT state, run_id FROM task_runs WHERE id = $1{}",
                self.store.dialect.for_update()
            ))
            .bind(*id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::store)?
            .ok_or_else(|| Error::NotFound { what: "task run", id: id.to_string() })?;
            let from: TaskState = parse_column(&row, "state")?;
            if from.is_terminal() {
                continue;
            }
            sqlx::query("DELETE FROM queue WHERE task_run_id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(Error::store)?;
            sqlx::query(
                "UPDATE attempts SET state = 'cancelled', finished_at = $1, message = $2 WHERE task_run_id = $3 AND state = 'running'",
            )
            .bind(now)
            .bind(why)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
            let report = Report {
                attempt: 0,
                outcome: Outcome::Cancelled,
                exit_code: None,
                error_class: None,
                message: Some(why.to_owned()),
                log_tail: None,
                details: None,
            };
            let m = super::transition::Move { task_run: *id, attempt: None, from, reason: None, since: None };
            finish_task(&mut tx, m, TaskState::Cancelled, now, &report, None).await?;
            let run_id: i64 = row.try_get("run_id").map_err(Error::store)?;
            maybe_finish_run(&mut tx, run_id, now).await?;
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }
}
