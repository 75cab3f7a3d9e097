//! The egress policy compiled for lookups: which rule governs a `host:port`.
//!
//! Indexed, never scanned: exact hosts in a hash map; `*.suffix` wildcards in a hash map probed
//! once per label of the host (longest suffix first); CIDR blocks in one hash map per prefix
//! length, probed longest prefix first. A lookup costs O(labels + distinct prefix lengths), whatever
//! the number of rules. Both `plan` and the gateway use this, so what is planned is what is enforced.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Destination, EgressPolicy};
use crate::value::{Endpoint, Host, HostPattern};

/// Rule indexes into `EgressPolicy::destinations`, grouped by what they match.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    exact: HashMap<String, Vec<usize>>,
    suffix: HashMap<String, Vec<usize>>,
    /// (prefix length, network → rules), longest prefix first.
    cidr: Vec<(u8, HashMap<IpNet, Vec<usize>>)>,
}

impl RuleIndex {
    pub fn new(policy: &EgressPolicy) -> Self {
        let mut index = RuleIndex::default();
        let mut by_len: HashMap<u8, HashMap<IpNet, Vec<usize>>> = HashMap::new();
        for (i, d) in policy.destinations.iter().enumerate() {
            match &d.host {
                HostPattern::Exact(h) => index.exact.entry(h.clone()).or_default().push(i),
                HostPattern::Suffix(s) => index.suffix.entry(s.clone()).or_default().push(i),
                HostPattern::Cidr(net) => {
                    by_len.entry(net.prefix_len()).or_default().entry(*net).or_default().push(i)
                }
            }
        }
        index.cidr = by_len.into_iter().collect();
        index.cidr.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        index
    }

    /// The most specific rule that allows `endpoint`'s host and port: an exact host, else the
    /// longest matching wildcard suffix; for an IP, the longest matching prefix.
    pub fn lookup<'p>(
        &self,
        policy: &'p EgressPolicy,
        endpoint: &Endpoint,
    ) -> Option<(usize, &'p Destination)> {
        let allows_port = |i: &usize| policy.destinations[*i].ports.iter().any(|p| p.0 == endpoint.port);
        let found = match &endpoint.host {
            Host::Name(name) => self.lookup_name(name, &allows_port),
            Host::Ip(ip) => self.lookup_ip(*ip, &allows_port),
        };
        found.map(|i| (i, &policy.destinations[i]))
    }

    fn lookup_name(&self, name: &str, allows_port: &dyn Fn(&usize) -> bool) -> Option<usize> {
        let name = name.trim_end_matches('.');
        if let Some(i) = self.exact.get(name).and_then(|rules| rules.iter().find(|i| allows_port(i))) {
            return Some(*i);
        }
        // Each `.` starts a candidate suffix; the leftmost is the longest.
        name.match_indices('.').find_map(|(at, _)| {
            self.suffix.get(&name[at..]).and_then(|rules| rules.iter().find(|i| allows_port(i)).copied())
        })
    }

    fn lookup_ip(&self, ip: IpAddr, allows_port: &dyn Fn(&usize) -> bool) -> Option<usize> {
        self.cidr.iter().find_map(|(len, nets)| {
            let net = IpNet::new(ip, *len).ok()?.trunc();
            nets.get(&net).and_then(|rules| rules.iter().find(|i| allows_port(i)).copied())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Port;

    fn rule(name: &str, host: &str, port: u16, ip: &str) -> Destination {
        Destination {
            name: name.into(),
            host: host.parse().unwrap(),
            ports: vec![Port(port)],
            egress_ips: vec![ip.parse().unwrap()],
            identity: None,
            description: None,
        }
    }

    fn policy() -> EgressPolicy {
        EgressPolicy {
            destinations: vec![
                rule("wide", "*.example.com", 443, "203.0.113.1"),
                rule("partner", "*.partner.example.com", 443, "203.0.113.2"),
                rule("api", "api.partner.example.com", 443, "203.0.113.3"),
                rule("net16", "10.20.0.0/16", 1433, "203.0.113.4"),
                rule("net24", "10.20.30.0/24", 1433, "203.0.113.5"),
                rule("other-port", "db.example.com", 5432, "203.0.113.6"),
            ],
        }
    }

    fn name_of(p: &EgressPolicy, ep: &str) -> Option<String> {
        RuleIndex::new(p).lookup(p, &ep.parse().unwrap()).map(|(_, d)| d.name.clone())
    }

    #[test]
    fn most_specific_rule_wins() {
        let p = policy();
        assert_eq!(name_of(&p, "api.partner.example.com:443").as_deref(), Some("api"));
        assert_eq!(name_of(&p, "x.y.partner.example.com:443").as_deref(), Some("partner"));
        assert_eq!(name_of(&p, "www.example.com:443").as_deref(), Some("wide"));
        assert_eq!(name_of(&p, "10.20.30.7:1433").as_deref(), Some("net24"));
        assert_eq!(name_of(&p, "10.20.99.7:1433").as_deref(), Some("net16"));
    }

    #[test]
    fn port_and_bare_suffix_must_match() {
        let p = policy();
        assert_eq!(name_of(&p, "example.com:443"), None);
        assert_eq!(name_of(&p, "api.partner.example.com:80"), None);
        assert_eq!(name_of(&p, "10.21.0.1:1433"), None);
        // An exact rule on another port falls through to the wildcard.
        assert_eq!(name_of(&p, "db.example.com:443").as_deref(), Some("wide"));
        assert_eq!(name_of(&p, "db.example.com:5432").as_deref(), Some("other-port"));
    }
}
