//! The policy layer: no socket is opened for a destination the policy denies (in enforce mode),
//! and every decision is audited.

use super::{Dial, Dialed, Target};
use crate::Error;
use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::policy::{Decision, Enforcer, Mode};

#[derive(Debug)]
pub struct Enforce<D> {
    /// Swapped whole when a new policy version is applied; dials in flight keep the one they read.
    enforcer: std::sync::RwLock<std::sync::Arc<Enforcer>>,
    audit: AuditSink,
    inner: D,
}

impl<D> Enforce<D> {
    pub fn new(enforcer: Enforcer, audit: AuditSink, inner: D) -> Self {
        Enforce { enforcer: std::sync::RwLock::new(std::sync::Arc::new(enforcer)), audit, inner }
    }

    pub fn replace(&self, enforcer: Enforcer) {
        if let Ok(mut current) = self.enforcer.write() {
            *current = std::sync::Arc::new(enforcer);
        }
    }

    /// Records the end of an allowed connection (bytes both ways, duration).
    pub fn closed(&self, target: &Target, rule: Option<String>, bytes: u64, duration_ms: u64) {
        self.audit.emit(AuditEvent {
            at: now_ms(),
            egress_ip: self.current().egress_ip(),
            destination: target.label(),
            task: target.task.clone(),
            verdict: Verdict::Closed { rule, bytes, duration_ms },
        });
    }

    fn current(&self) -> std::sync::Arc<Enforcer> {
        self.enforcer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl<D: Dial> Dial for Enforce<D> {
    async fn dial(&self, target: &Target) -> Result<Dialed, Error> {
        let enforcer = self.current();
        let decision = enforcer.decide(&target.host, target.port);
        let event = |verdict| AuditEvent {
            at: now_ms(),
            egress_ip: enforcer.egress_ip(),
            destination: target.label(),
            task: target.task.clone(),
            verdict,
        };
        let (rule, identity) = match decision {
            Decision::Allow { rule, identity } => {
                self.audit.emit(event(Verdict::Allowed { rule: rule.clone() }));
                (Some(rule), identity)
            }
            Decision::Deny(reason) if enforcer.mode() == Mode::DryRun => {
                self.audit
                    .emit(event(Verdict::WouldDeny { code: reason.code(), reason: reason.to_string() }));
                (None, None)
            }
            Decision::Deny(reason) => {
                self.audit.emit(event(Verdict::Denied { code: reason.code(), reason: reason.to_string() }));
                return Err(Error::Denied { target: target.label(), reason });
            }
        };
        let mut dialed = self.inner.dial(target).await?;
        dialed.info.rule = rule;
        dialed.info.identity = identity;
        Ok(dialed)
    }
}
