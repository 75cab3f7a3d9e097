//! The egress policy (`egress.yaml`, DESIGN §4.2): which destinations may be reached, on which
//! ports, from which static egress IPs, with which client identity. Anything not matched is denied.

mod check;
mod index;
mod load;

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Deserialize;

pub(crate) use check::check_policy;
pub use index::RuleIndex;
pub use load::LoadedPolicy;
pub(crate) use load::load_policy;

use crate::document::recover_vec;
use crate::value::{HostPattern, Port};

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Allowed destinations. A connection matching none of them is denied and audited.
    #[serde(deserialize_with = "recover_vec")]
    pub destinations: Vec<Destination>,
}

/// One allowed destination and the static egress IPs its firewall accepts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Rule name, unique in the policy; shown in plans, audits and denials.
    pub name: String,
    /// Exact host, `*.suffix` wildcard, IP address or CIDR block. When several rules match a
    /// connection, the most specific wins: exact host, then the longest suffix or prefix.
    pub host: HostPattern,
    /// Ports allowed on that host.
    pub ports: Vec<Port>,
    /// Static egress IPs the destination's firewall allows connections from.
    pub egress_ips: Vec<IpAddr>,
    /// Client identity (settings `[identities.NAME]`) presented to this destination.
    #[serde(default)]
    pub identity: Option<String>,
    /// Why the destination is allowed (ticket, owner), for the audit trail.
    #[serde(default)]
    pub description: Option<String>,
}
