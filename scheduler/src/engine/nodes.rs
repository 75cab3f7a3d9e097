//! Node and worker registration and heartbeats. A dedicated node must start with one of its pool's
//! static egress IPs; a heartbeat renews every lease the node holds and tells it which attempts to
//! stop (cancelled, or reclaimed because it went quiet for too long).

use sqlx::Row;

use super::Engine;
use crate::Error;
use crate::api::types::{HeartbeatReply, NodeInfo, NodeKind, Registration, Stop};
use crate::spec::SERVERLESS;
use crate::store::now_ms;
use crate::store::sql::placeholders;

impl Engine {
    /// Registers a node or worker. A dedicated node's pool must exist and its egress IP must be one
    /// of the pool's; anything else is refused with what to do.
    pub async fn register(&self, info: &NodeInfo) -> Result<Registration, Error> {
        let (pool, ip) = match info.kind {
            NodeKind::Serverless => (None, None),
            NodeKind::Dedicated => {
                let settings = &self.config.settings;
                let Some(name) = &info.pool else {
                    return Err(Error::NodeRefused {
                        reason: "a dedicated node must name its pool".into(),
                        hint: "start it with --pool NAME".into(),
                    });
                };
                let Some(pool) = settings.pool(name) else {
                    let known: Vec<&str> = settings.pools.iter().map(|p| p.name.as_str()).collect();
                    return Err(Error::NodeRefused {
                        reason: format!("pool `{name}` is not defined in the control plane's settings"),
                        hint: format!(
                            "known pools: {}; add a [[pools]] entry or fix --pool",
                            known.join(", ")
                        ),
                    });
                };
                let Some(ip) = info.egress_ip else {
                    return Err(Error::NodeRefused {
                        reason: "a dedicated node must name its static egress IP".into(),
                        hint: "start it with --egress-ip IP".into(),
                    });
                };
                if !pool.egress_ips.contains(&ip) {
                    let ips: Vec<String> = pool.egress_ips.iter().map(ToString::to_string).collect();
                    return Err(Error::NodeRefused {
                        reason: format!(
                            "egress IP {ip} is not one of pool `{name}`'s static egress IPs ({})",
                            ips.join(", ")
                        ),
                        hint: format!(
                            "start the node with --egress-ip set to one of {}, or add {ip} to the pool's egress_ips in the settings (and to the egress policy rules that should allow it)",
                            ips.join(", ")
                        ),
                    });
                }
                (Some(name.clone()), Some(ip.to_string()))
            }
        };
        let now = now_ms();
        let suffix: u32 = rand::random();
        let node_id = match (&pool, &ip) {
            (Some(p), Some(ip)) => format!("{p}-{ip}-{suffix:08x}"),
            _ => format!("worker-{suffix:08x}"),
        };
        let kind = match info.kind {
            NodeKind::Dedicated => "dedicated",
            NodeKind::Serverless => "serverless",
        };
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "INSERT INTO nodes (id, kind, pool, egress_ip, identities, version, slots, state, registered_at, heartbeat_at, launched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8, $9)",
        )
        .bind(&node_id)
        .bind(kind)
        .bind(pool.as_deref())
        .bind(ip.as_deref())
        .bind(serde_json::to_string(&info.identities).unwrap_or_else(|_| "[]".into()))
        .bind(&info.version)
        .bind(i64::from(info.slots))
        .bind(now)
        .bind(info.launched_at)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        let event = crate::store::event_log::NewEvent {
            origin: format!("node/{node_id}"),
            level: crate::store::event_log::Level::Info,
            event_type: "node_registered",
            message: match (&pool, &ip) {
                (Some(p), Some(ip)) => {
                    format!("{kind} node {node_id} registered in pool {p} with egress IP {ip}")
                }
                _ => format!("{kind} node {node_id} registered"),
            },
            details: serde_json::json!({
                "node": node_id, "kind": kind, "pool": pool, "egress_ip": ip, "slots": info.slots,
                "version": info.version, "identities": info.identities,
            }),
            task_run: None,
        };
        crate::store::event_log::insert(&mut tx, &[event], now).await?;
        tx.commit().await.map_err(Error::store)?;
        tracing::info!(node = %node_id, kind, pool = pool.as_deref().unwrap_or("-"), egress_ip = ip.as_deref().unwrap_or("-"), "Node registered.");
        let ttl = self.config.lease_ttl.as_millis() as u64;
        Ok(Registration { node_id, heartbeat_ms: (ttl / 3).max(50), lease_ttl_ms: ttl })
    }

    /// The queue key a node leases from: its pool, or the serverless key.
    pub(crate) async fn node_queue_key(&self, node_id: &str) -> Result<String, Error> {
        let row = sqlx::query("SELECT kind, pool, state FROM nodes WHERE id = $1")
            .bind(node_id)
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?
            .ok_or_else(|| Error::NotFound { what: "node", id: node_id.to_owned() })?;
        let state: String = row.try_get("state").map_err(Error::store)?;
        if state != "active" {
            return Err(Error::NodeRefused {
                reason: format!("node {node_id} is {state}"),
                hint: "register again".into(),
            });
        }
        let kind: String = row.try_get("kind").map_err(Error::store)?;
        let pool: Option<String> = row.try_get("pool").map_err(Error::store)?;
        Ok(if kind == "serverless" { SERVERLESS.to_owned() } else { pool.unwrap_or_default() })
    }

    /// Renews the node's leases; returns the attempts it holds that it must stop. `tails` carries
    /// the latest output of running attempts.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        running: &[i64],
        tails: &[(i64, String)],
    ) -> Result<HeartbeatReply, Error> {
        let now = now_ms();
        let expires = now + self.config.lease_ttl.as_millis() as i64;
        let mut tx = self.store.begin().await?;
        let touched = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2 AND state = 'active'")
            .bind(now)
            .bind(node_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        if touched.rows_affected() == 0 {
            return Err(Error::NodeRefused {
                reason: format!("node {node_id} is not registered (or was declared gone)"),
                hint: "stop its tasks and register again".into(),
            });
        }
        sqlx::query("UPDATE attempts SET lease_expires_at = $1 WHERE node_id = $2 AND state = 'running'")
            .bind(expires)
            .bind(node_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::store)?;
        // All tails in one statement per chunk: a node running 16 tasks sent 16 updates a beat.
        for chunk in tails.chunks(crate::store::sql::CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "SELECT CAST(${} AS BIGINT) AS id, CAST(${} AS TEXT) AS tail",
                        2 * i + 2,
                        2 * i + 3
                    )
                })
                .collect();
            let sql = format!(
                "UPDATE attempts SET log_tail = v.tail FROM ({}) AS v \
                 WHERE attempts.id = v.id AND attempts.node_id = $1 AND attempts.state = 'running'",
                rows.join(" UNION ALL ")
            );
            let mut q = sqlx::query(&sql).bind(node_id);
            for (attempt, tail) in chunk {
                q = q.bind(*attempt).bind(tail.as_str());
            }
            q.execute(&mut *tx).await.map_err(Error::store)?;
        }
        let mut reply = HeartbeatReply::default();
        if !running.is_empty() {
            let sql = format!(
                "SELECT id, state FROM attempts WHERE id IN ({}) AND (state <> 'running' OR node_id <> ${})",
                placeholders(1, running.len()),
                running.len() + 1
            );
            let mut q = sqlx::query(&sql);
            for id in running {
                q = q.bind(*id);
            }
            for row in q.bind(node_id).fetch_all(&mut *tx).await.map_err(Error::store)? {
                reply.stop.push(Stop {
                    attempt: row.try_get("id").map_err(Error::store)?,
                    reason: row.try_get("state").map_err(Error::store)?,
                });
            }
        }
        tx.commit().await.map_err(Error::store)?;
        Ok(reply)
    }

    /// A node leaving cleanly (after draining).
    pub async fn deregister(&self, node_id: &str) -> Result<(), Error> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let left = sqlx::query(
            "UPDATE nodes SET state = 'gone', heartbeat_at = $1 WHERE id = $2 AND state <> 'gone'",
        )
        .bind(now)
        .bind(node_id)
        .execute(&mut *tx)
        .await
        .map_err(Error::store)?;
        if left.rows_affected() > 0 {
            let event = crate::store::event_log::NewEvent {
                origin: format!("node/{node_id}"),
                level: crate::store::event_log::Level::Info,
                event_type: "node_deregistered",
                message: format!("node {node_id} left after draining"),
                details: serde_json::json!({ "node": node_id }),
                task_run: None,
            };
            crate::store::event_log::insert(&mut tx, &[event], now).await?;
        }
        tx.commit().await.map_err(Error::store)?;
        tracing::info!(node = node_id, "Node deregistered.");
        Ok(())
    }
}
