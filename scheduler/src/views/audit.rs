//! The egress audit trail as operators read it (`switchyard egress audit`, the dashboard's
//! denials): newest first.

use sqlx::Row;

use super::Views;
use crate::Error;
use crate::api::types::AuditRecord;

impl Views {
    /// Newest first; only denials (and would-be denials) when `denied_only`.
    pub async fn audit(&self, denied_only: bool, limit: i64) -> Result<Vec<AuditRecord>, Error> {
        let rows = sqlx::query(
            "SELECT at, egress_ip, task, destination, verdict, code, rule, reason, count, bytes, duration_ms FROM egress_audit \
             WHERE (CAST($1 AS BIGINT) = 0 OR verdict <> 'allowed') ORDER BY id DESC LIMIT $2",
        )
        .bind(i64::from(denied_only))
        .bind(limit)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    at: r.try_get("at").map_err(Error::store)?,
                    egress_ip: r.try_get("egress_ip").map_err(Error::store)?,
                    task: r.try_get("task").map_err(Error::store)?,
                    destination: r.try_get("destination").map_err(Error::store)?,
                    verdict: r.try_get("verdict").map_err(Error::store)?,
                    code: r.try_get("code").map_err(Error::store)?,
                    rule: r.try_get("rule").map_err(Error::store)?,
                    reason: r.try_get("reason").map_err(Error::store)?,
                    count: r.try_get("count").map_err(Error::store)?,
                    bytes: r.try_get("bytes").map_err(Error::store)?,
                    duration_ms: r.try_get("duration_ms").map_err(Error::store)?,
                })
            })
            .collect()
    }
}
