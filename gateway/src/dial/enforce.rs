//! The policy layer: no socket is opened for a destination the policy denies (in enforce mode),
//! and every decision is audited.

use super::{Dial, Dialed, Target};
use crate::Error;
use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::policy::{Decision, Enforcer, Mode};

#[derive(Debug)]
pub struct Enforce<D> {
    enforcer: Enforcer,
    audit: AuditSink,
    inner: D,
}

impl<D> Enforce<D> {
    pub fn new(enforcer: Enforcer, audit: AuditSink, inner: D) -> Self {
        Enforce { enforcer, audit, inner }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl<D: Dial> Dial for Enforce<D> {
    async fn dial(&self, target: &Target) -> Result<Dialed, Error> {
        let decision = self.enforcer.decide(&target.host, target.port);
        let event = |verdict| AuditEvent {
            at: now_ms(),
            egress_ip: self.enforcer.egress_ip(),
            destination: target.label(),
            task: target.task.clone(),
            verdict,
        };
        let (rule, identity) = match decision {
            Decision::Allow { rule, identity } => {
                self.audit.emit(event(Verdict::Allowed { rule: rule.clone() }));
                (Some(rule), identity)
            }
            Decision::Deny(reason) if self.enforcer.mode() == Mode::DryRun => {
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
