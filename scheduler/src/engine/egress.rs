//! The control plane's side of egress: the audit trail nodes send, and the versioned egress policy
//! operators apply (each version kept, with who applied it and in which mode).

use sqlx::Row;

use super::Engine;
use crate::Error;
use crate::api::types::{AuditRecord, PolicyVersion};
use crate::store::now_ms;

impl Engine {
    pub async fn record_audit(&self, records: &[AuditRecord]) -> Result<(), Error> {
        let mut tx = self.store.begin().await?;
        for chunk in records.chunks(100) {
            let sql = format!(
                "INSERT INTO egress_audit (at, egress_ip, task, destination, verdict, code, rule, reason, count, bytes, duration_ms) VALUES {}",
                crate::store::sql::value_rows(chunk.len(), 11)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.at)
                    .bind(&r.egress_ip)
                    .bind(r.task.as_deref())
                    .bind(&r.destination)
                    .bind(&r.verdict)
                    .bind(r.code.as_deref())
                    .bind(r.rule.as_deref())
                    .bind(r.reason.as_deref())
                    .bind(r.count)
                    .bind(r.bytes)
                    .bind(r.duration_ms);
            }
            q.execute(&mut *tx).await.map_err(Error::store)?;
        }
        let denials: Vec<_> = records.iter().filter(|r| r.verdict != "allowed").map(denial_event).collect();
        crate::store::event_log::insert(&mut tx, &denials, now_ms()).await?;
        tx.commit().await.map_err(Error::store)?;
        Ok(())
    }

    /// Stores a new policy version (already validated by the caller); returns its number.
    pub async fn apply_policy(&self, yaml: &str, mode: &str, applied_by: &str) -> Result<i64, Error> {
        let mut tx = self.store.begin().await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO egress_policies (yaml, mode, applied_at, applied_by) VALUES ($1, $2, $3, $4) RETURNING version",
        )
        .bind(yaml)
        .bind(mode)
        .bind(now_ms())
        .bind(applied_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::store)?;
        tx.commit().await.map_err(Error::store)?;
        tracing::info!(version, mode, applied_by, "Egress policy applied.");
        Ok(version)
    }

    /// The latest applied version, if any was applied through the control plane.
    pub async fn current_policy(&self) -> Result<Option<PolicyVersion>, Error> {
        let row = sqlx::query("SELECT version, yaml, mode, applied_at, applied_by FROM egress_policies ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?;
        row.map(|r| {
            Ok(PolicyVersion {
                version: r.try_get("version").map_err(Error::store)?,
                yaml: r.try_get("yaml").map_err(Error::store)?,
                mode: r.try_get("mode").map_err(Error::store)?,
                applied_at: r.try_get("applied_at").map_err(Error::store)?,
                applied_by: r.try_get("applied_by").map_err(Error::store)?,
            })
        })
        .transpose()
    }
}

/// The event log entry of a denied (or, in dry-run mode, would-be denied) connection.
fn denial_event(r: &AuditRecord) -> crate::store::event_log::NewEvent {
    let dry = r.verdict == "would_deny";
    let mut message = format!(
        "{} {}{} from egress IP {}",
        if dry { "would deny (dry run)" } else { "denied" },
        r.destination,
        r.task.as_deref().map(|t| format!(" for {t}")).unwrap_or_default(),
        r.egress_ip
    );
    if let Some(reason) = r.reason.as_deref().or(r.code.as_deref()) {
        message.push_str(&format!(": {reason}"));
    }
    crate::store::event_log::NewEvent {
        origin: format!("gateway/{}", r.egress_ip),
        level: crate::store::event_log::Level::Warn,
        event_type: "egress_denied",
        message,
        details: serde_json::json!({
            "destination": r.destination, "egress_ip": r.egress_ip, "task": r.task, "verdict": r.verdict,
            "code": r.code, "rule": r.rule, "reason": r.reason, "count": r.count, "at": r.at,
        }),
        task_run: None,
    }
}
