//! Certificate expiries the nodes report with their heartbeats, kept on the node's row for the
//! health checks and `switchyard_gateway_certificate_expiry_seconds`.

use super::Engine;
use crate::Error;
use crate::api::types::CertificateExpiry;

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
}
