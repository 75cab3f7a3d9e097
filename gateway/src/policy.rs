//! The egress policy as enforced on one node: a connection to `host:port` from this node's static
//! egress IP is allowed only by the most specific matching rule, and only if that rule lists the
//! IP. Everything else is denied, with the reason. Lookups use the config crate's [`RuleIndex`]
//! (hash lookups, not a scan) — the same matcher `plan` uses, so what is planned is what is enforced.

use std::fmt;
use std::net::IpAddr;

use switchyard_config::FailureClass;
use switchyard_config::egress::{EgressPolicy, RuleIndex};
use switchyard_config::value::{Endpoint, Host};

/// How strictly the policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Denied connections are refused.
    Enforce,
    /// Denied connections are logged and audited as would-be denials, then allowed.
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: String, identity: Option<String> },
    Deny(DenyReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule matches the host and port.
    NoRule,
    /// A rule matches, but does not list this node's egress IP.
    IpNotAllowlisted { rule: String, egress_ip: IpAddr, allowed: Vec<IpAddr> },
}

impl DenyReason {
    pub fn class(&self) -> FailureClass {
        FailureClass::Access
    }

    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoRule => "denied_by_policy",
            DenyReason::IpNotAllowlisted { .. } => "ip_not_allowlisted",
        }
    }

    pub fn hint(&self) -> String {
        match self {
            DenyReason::NoRule => "add a destination for this host and port to egress.yaml (operators: `switchyard egress diff` shows the effect first)".into(),
            DenyReason::IpNotAllowlisted { rule, egress_ip, allowed } => format!(
                "rule {rule} allows {}, not this node's {egress_ip}: run the task on a pool with an allowed IP, or have the destination allowlist {egress_ip} and add it to the rule",
                allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRule => f.write_str("no egress rule matches (deny by default)"),
            DenyReason::IpNotAllowlisted { rule, egress_ip, .. } => {
                write!(f, "rule {rule} does not allow egress IP {egress_ip}")
            }
        }
    }
}

/// A compiled policy for one egress IP.
#[derive(Debug, Clone)]
pub struct Enforcer {
    policy: EgressPolicy,
    index: RuleIndex,
    egress_ip: IpAddr,
    mode: Mode,
}

impl Enforcer {
    pub fn new(policy: EgressPolicy, egress_ip: IpAddr, mode: Mode) -> Self {
        let index = RuleIndex::new(&policy);
        Enforcer { policy, index, egress_ip, mode }
    }

    pub fn egress_ip(&self) -> IpAddr {
        self.egress_ip
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The decision for `host:port` (before any DNS: a host-name rule allows the name).
    pub fn decide(&self, host: &Host, port: u16) -> Decision {
        let endpoint = Endpoint::new(host.clone(), port);
        match self.index.lookup(&self.policy, &endpoint) {
            None => Decision::Deny(DenyReason::NoRule),
            Some((_, rule)) if !rule.egress_ips.contains(&self.egress_ip) => {
                Decision::Deny(DenyReason::IpNotAllowlisted {
                    rule: rule.name.clone(),
                    egress_ip: self.egress_ip,
                    allowed: rule.egress_ips.clone(),
                })
            }
            Some((_, rule)) => Decision::Allow { rule: rule.name.clone(), identity: rule.identity.clone() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EgressPolicy {
        let yaml = "destinations:\n  - { name: api, host: \"*.partner.example.com\", ports: [443], egress_ips: [127.0.0.2], identity: partner }\n  - { name: db, host: 10.0.0.0/8, ports: [5432], egress_ips: [127.0.0.3] }\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("egress.yaml");
        std::fs::write(&path, yaml).unwrap();
        let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
            egress: Some(path),
            env: Some(Default::default()),
            ..Default::default()
        })
        .unwrap();
        // No settings here, so the rule's identity is "unknown"; nothing else may be wrong.
        assert!(
            inputs.diagnostics.iter().all(|d| d.code == switchyard_config::Code::UnknownIdentity),
            "{:?}",
            inputs.diagnostics
        );
        inputs.policy.policy
    }

    #[test]
    fn allows_only_matching_rules_that_list_this_ip() {
        let e = Enforcer::new(policy(), "127.0.0.2".parse().unwrap(), Mode::Enforce);
        assert_eq!(
            e.decide(&Host::parse("api.partner.example.com").unwrap(), 443),
            Decision::Allow { rule: "api".into(), identity: Some("partner".into()) }
        );
        assert_eq!(
            e.decide(&Host::parse("evil.example.org").unwrap(), 443),
            Decision::Deny(DenyReason::NoRule)
        );
        assert_eq!(
            e.decide(&Host::parse("api.partner.example.com").unwrap(), 80),
            Decision::Deny(DenyReason::NoRule)
        );
        let Decision::Deny(reason) = e.decide(&Host::parse("10.1.2.3").unwrap(), 5432) else { panic!() };
        assert_eq!(reason.code(), "ip_not_allowlisted");
        assert!(reason.hint().contains("127.0.0.3"), "{}", reason.hint());
    }
}
