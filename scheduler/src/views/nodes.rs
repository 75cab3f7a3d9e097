//! Nodes and workers: every registration (`switchyard nodes`, the API), and those heartbeating
//! within the lease TTL with the certificate expiries they reported (health, metrics).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::Views;
use crate::Error;
use crate::api::types::CertificateExpiry;
use crate::store::sql::get;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub kind: String,
    pub pool: Option<String>,
    pub egress_ip: Option<String>,
    pub version: String,
    pub slots: i64,
    pub busy: i64,
    pub state: String,
    pub heartbeat_at: i64,
    pub launched_at: Option<i64>,
    pub registered_at: i64,
    pub first_lease_at: Option<i64>,
}

/// A node or worker that is heartbeating.
#[derive(Debug, Clone)]
pub(crate) struct LiveNode {
    pub(crate) id: String,
    /// `dedicated` or `serverless`.
    pub(crate) kind: String,
    pub(crate) pool: Option<String>,
    pub(crate) certificates: Vec<CertificateExpiry>,
}

impl Views {
    pub async fn nodes(&self) -> Result<Vec<NodeView>, Error> {
        let rows = sqlx::query(
            "SELECT n.id, n.kind, n.pool, n.egress_ip, n.version, n.slots, n.state, n.heartbeat_at, n.launched_at, \
             n.registered_at, n.first_lease_at, \
             (SELECT COUNT(*) FROM attempts a WHERE a.node_id = n.id AND a.state = 'running') AS busy \
             FROM nodes n ORDER BY n.registered_at",
        )
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                Ok(NodeView {
                    id: row.try_get("id").map_err(Error::store)?,
                    kind: row.try_get("kind").map_err(Error::store)?,
                    pool: row.try_get("pool").map_err(Error::store)?,
                    egress_ip: row.try_get("egress_ip").map_err(Error::store)?,
                    version: row.try_get("version").map_err(Error::store)?,
                    slots: row.try_get("slots").map_err(Error::store)?,
                    busy: row.try_get("busy").map_err(Error::store)?,
                    state: row.try_get("state").map_err(Error::store)?,
                    heartbeat_at: row.try_get("heartbeat_at").map_err(Error::store)?,
                    launched_at: row.try_get("launched_at").map_err(Error::store)?,
                    registered_at: row.try_get("registered_at").map_err(Error::store)?,
                    first_lease_at: row.try_get("first_lease_at").map_err(Error::store)?,
                })
            })
            .collect()
    }

    /// Nodes and workers heartbeating within the lease TTL, with their certificates.
    pub(crate) async fn live_nodes(&self, now: i64) -> Result<Vec<LiveNode>, Error> {
        let live_after = now - self.config.lease_ttl.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT id, kind, pool, certificates FROM nodes \
             WHERE state = 'active' AND heartbeat_at >= $1 ORDER BY id",
        )
        .bind(live_after)
        .fetch_all(&self.store.read)
        .await
        .map_err(Error::store)?;
        rows.iter()
            .map(|row| {
                let certificates: Option<String> = get(row, "certificates")?;
                Ok(LiveNode {
                    id: get(row, "id")?,
                    kind: get(row, "kind")?,
                    pool: get(row, "pool")?,
                    certificates: certificates
                        .and_then(|c| serde_json::from_str(&c).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}
