//! Audit records of egress decisions. The dialer emits one per decision; the node batches them to
//! the control plane (denials always kept; allowed connections may be aggregated there).

use std::net::IpAddr;

use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        rule: String,
    },
    Denied {
        code: &'static str,
        reason: String,
    },
    /// Dry-run mode: would have been denied, was allowed.
    WouldDeny {
        code: &'static str,
        reason: String,
    },
    /// An allowed connection ended: what it carried and how long it lasted.
    Closed {
        rule: Option<String>,
        bytes: u64,
        duration_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Epoch milliseconds.
    pub at: i64,
    pub egress_ip: IpAddr,
    pub destination: String,
    pub task: Option<String>,
    pub verdict: Verdict,
}

/// Where audit events go. Cheap to clone; sending never blocks the dial.
#[derive(Debug, Clone)]
pub struct AuditSink(mpsc::UnboundedSender<AuditEvent>);

impl AuditSink {
    pub fn channel() -> (AuditSink, mpsc::UnboundedReceiver<AuditEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (AuditSink(tx), rx)
    }

    pub(crate) fn emit(&self, event: AuditEvent) {
        match &event.verdict {
            Verdict::Denied { code, reason } => {
                tracing::warn!(destination = %event.destination, egress_ip = %event.egress_ip, task = event.task.as_deref().unwrap_or("-"), code, reason = %reason, "Egress denied.")
            }
            Verdict::WouldDeny { code, reason } => {
                tracing::warn!(destination = %event.destination, egress_ip = %event.egress_ip, code, reason = %reason, "Egress would be denied (dry run); allowed.")
            }
            Verdict::Allowed { rule } => {
                tracing::debug!(destination = %event.destination, rule = %rule, "Egress allowed.")
            }
            Verdict::Closed { bytes, duration_ms, .. } => {
                tracing::debug!(destination = %event.destination, bytes, duration_ms, "Egress connection closed.")
            }
        }
        let _ = self.0.send(event);
    }
}
