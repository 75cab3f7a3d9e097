//! The HTTPS source's tests talk to a real nginx (from `switchyard-testkit`: TLS requiring a
//! client certificate, only source 127.0.0.2) through a node's dialer, made here.

use std::path::Path;
use std::sync::Arc;

use switchyard_config::settings::IdentityFiles;
use switchyard_gateway::audit::{AuditEvent, AuditSink};
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
pub(crate) use switchyard_testkit::{Nginx, Pki, free_port, new_ca};

pub(crate) type Audit = tokio::sync::mpsc::UnboundedReceiver<AuditEvent>;

/// A node's dialer: the egress policy `yaml`, bound to `egress_ip`, holding identity `partner`;
/// and its audit records.
pub(crate) fn dialer(yaml: &str, egress_ip: &str, partner: Option<IdentityFiles>) -> (Dialer, Audit) {
    let (loaded, diagnostics) =
        switchyard_config::parse_policy(Path::new("egress.yaml"), yaml.as_bytes(), None);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let names: Vec<String> = partner.iter().map(|_| "partner".to_owned()).collect();
    let files = partner.into_iter().map(|f| ("partner".to_owned(), f)).collect();
    let identities: Arc<Identities> = Identities::load_all(&files, &names).unwrap();
    let (audit, events) = AuditSink::channel();
    let enforcer = Enforcer::new(loaded.policy, egress_ip.parse().unwrap(), Mode::Enforce);
    (Dialer::new(enforcer, identities, audit, DialerConfig::default()), events)
}
