//! Gauges the control plane exports at `/metrics` (Prometheus text format), read from the store so
//! every replica reports the same. Names follow `switchyard_<component>_<name>_<unit>`.

use std::fmt::Write;

use sqlx::Row;

use super::Engine;
use crate::Error;
use crate::api::types::CertificateExpiry;
use crate::store::now_ms;

impl Engine {
    /// Stores the certificate expiries a node reported.
    pub async fn record_certificates(
        &self,
        node_id: &str,
        certificates: &[CertificateExpiry],
    ) -> Result<(), Error> {
        let json = serde_json::to_string(certificates).map_err(|e| Error::corrupt("certificates", e))?;
        sqlx::query("UPDATE nodes SET certificates = $1 WHERE id = $2")
            .bind(json)
            .bind(node_id)
            .execute(&self.store.pool)
            .await
            .map_err(Error::store)?;
        Ok(())
    }

    pub async fn metrics(&self) -> Result<String, Error> {
        let now = now_ms();
        let mut out = String::new();
        let queue = sqlx::query(
            "SELECT pool, COUNT(*) AS n FROM queue WHERE not_before <= $1 GROUP BY pool ORDER BY pool",
        )
        .bind(now)
        .fetch_all(&self.store.pool)
        .await
        .map_err(Error::store)?;
        out.push_str("# HELP switchyard_scheduler_queue_depth_tasks Tasks ready to be leased, by pool (`serverless` for workers).\n");
        out.push_str("# TYPE switchyard_scheduler_queue_depth_tasks gauge\n");
        for row in &queue {
            let pool: String = row.try_get("pool").map_err(Error::store)?;
            let n: i64 = row.try_get("n").map_err(Error::store)?;
            let pool = if pool == crate::spec::SERVERLESS { "serverless".to_owned() } else { pool };
            let _ = writeln!(out, "switchyard_scheduler_queue_depth_tasks{{pool=\"{}\"}} {n}", escape(&pool));
        }
        let live_after = now - self.config.lease_ttl.as_millis() as i64;
        let nodes = sqlx::query("SELECT id, kind, pool, egress_ip, certificates FROM nodes WHERE state = 'active' AND heartbeat_at >= $1 ORDER BY id")
            .bind(live_after)
            .fetch_all(&self.store.pool)
            .await
            .map_err(Error::store)?;
        out.push_str(
            "# HELP switchyard_scheduler_nodes_live Nodes and workers heartbeating within the lease TTL.\n",
        );
        out.push_str("# TYPE switchyard_scheduler_nodes_live gauge\n");
        let _ = writeln!(out, "switchyard_scheduler_nodes_live {}", nodes.len());
        out.push_str("# HELP switchyard_gateway_certificate_expiry_seconds Seconds until a node's client certificate expires (negative: expired).\n");
        out.push_str("# TYPE switchyard_gateway_certificate_expiry_seconds gauge\n");
        for row in &nodes {
            let id: String = row.try_get("id").map_err(Error::store)?;
            let pool: Option<String> = row.try_get("pool").map_err(Error::store)?;
            let certificates: Option<String> = row.try_get("certificates").map_err(Error::store)?;
            let Some(certificates) = certificates else { continue };
            let certificates: Vec<CertificateExpiry> =
                serde_json::from_str(&certificates).unwrap_or_default();
            for c in certificates {
                let _ = writeln!(
                    out,
                    "switchyard_gateway_certificate_expiry_seconds{{node=\"{}\",pool=\"{}\",identity=\"{}\"}} {}",
                    escape(&id),
                    escape(pool.as_deref().unwrap_or("")),
                    escape(&c.identity),
                    c.not_after - now / 1000
                );
            }
        }
        Ok(out)
    }
}

/// Label values escape backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
