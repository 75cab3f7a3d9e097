//! DESIGN §4.4 rule 3: a dedicated task runs only on a pool whose static egress IP every one of its
//! destinations allows, and which holds the identities it needs.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use switchyard_config::egress::{Destination, EgressPolicy, RuleIndex};
use switchyard_config::settings::{Pool, Settings};
use switchyard_config::value::Endpoint;

/// The outcome for one dedicated task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Placed {
        pool: String,
        egress_ips: Vec<IpAddr>,
        also_eligible: Vec<String>,
    },
    /// Destinations (by index into the task's list) that no rule allows.
    NoRule(Vec<usize>),
    /// No pool qualifies; the text says which rule allows which IP and what each pool lacks.
    Unplaceable {
        why: String,
        hint: String,
    },
}

/// What placement learnt about the task's destinations, for the plan's reasons.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules<'p> {
    pub(crate) matched: Vec<&'p Destination>,
    pub(crate) identities: BTreeSet<String>,
}

pub(crate) fn place<'p>(
    destinations: &[Endpoint],
    own_identity: Option<&str>,
    pinned: Option<&Pool>,
    settings: &Settings,
    pools_by_ip: &HashMap<IpAddr, Vec<usize>>,
    policy: &'p EgressPolicy,
    index: &RuleIndex,
) -> (Outcome, Rules<'p>) {
    let mut rules = Rules::default();
    let mut missing = Vec::new();
    for (i, endpoint) in destinations.iter().enumerate() {
        match index.lookup(policy, endpoint) {
            Some((_, rule)) => rules.matched.push(rule),
            None => missing.push(i),
        }
    }
    if !missing.is_empty() {
        return (Outcome::NoRule(missing), rules);
    }
    rules.identities.extend(own_identity.map(str::to_owned));
    rules.identities.extend(rules.matched.iter().filter_map(|r| r.identity.clone()));

    // The IPs every destination allows (in the first rule's order, for stable output).
    let allowed: Vec<IpAddr> = rules.matched[0]
        .egress_ips
        .iter()
        .copied()
        .filter(|ip| rules.matched.iter().all(|r| r.egress_ips.contains(ip)))
        .collect();
    let candidates: Vec<&Pool> = match pinned {
        Some(p) => vec![p],
        None => {
            // Only pools holding an allowed IP can qualify; keep the settings' order.
            let mut indexes: Vec<usize> =
                allowed.iter().filter_map(|ip| pools_by_ip.get(ip)).flatten().copied().collect();
            indexes.sort_unstable();
            indexes.dedup();
            indexes.into_iter().map(|i| &settings.pools[i]).collect()
        }
    };
    let usable = |pool: &Pool| -> Vec<IpAddr> {
        if !rules.identities.iter().all(|id| pool.identities.contains(id)) {
            return vec![];
        }
        pool.egress_ips.iter().copied().filter(|ip| allowed.contains(ip)).collect()
    };
    let mut eligible = candidates.iter().filter(|p| !usable(p).is_empty());
    if let Some(first) = eligible.next() {
        let outcome = Outcome::Placed {
            pool: first.name.clone(),
            egress_ips: usable(first),
            also_eligible: eligible.map(|p| p.name.clone()).collect(),
        };
        return (outcome, rules);
    }
    let all: Vec<&Pool> = match pinned {
        Some(p) => vec![p],
        None => settings.pools.iter().collect(),
    };
    let outcome = unplaceable(&rules, &allowed, &all, pinned.is_some());
    (outcome, rules)
}

fn list(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        "no IP".to_owned()
    } else {
        ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

fn unplaceable(rules: &Rules<'_>, allowed: &[IpAddr], candidates: &[&Pool], pinned: bool) -> Outcome {
    let rule_text: Vec<String> = rules
        .matched
        .iter()
        .map(|r| format!("rule {} allows {}", r.name, list(&r.egress_ips)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let pool_text: Vec<String> = candidates
        .iter()
        .map(|p| {
            let lacking: Vec<&str> =
                rules.identities.iter().filter(|id| !p.identities.contains(id)).map(String::as_str).collect();
            let mut s = format!("pool {} has {}", p.name, list(&p.egress_ips));
            if !lacking.is_empty() {
                s.push_str(&format!(" and lacks identity {}", lacking.join(", ")));
            }
            s
        })
        .collect();
    let identity = if rules.identities.is_empty() {
        String::new()
    } else {
        format!(" and holds identity {}", rules.identities.iter().cloned().collect::<Vec<_>>().join(", "))
    };
    let why = match (allowed.is_empty(), pinned) {
        (true, _) => "its destinations allow no egress IP in common".to_owned(),
        (false, true) => format!(
            "its pinned pool {} has no egress IP that every destination allows ({}){identity}",
            candidates[0].name,
            list(allowed)
        ),
        (false, false) => {
            format!("no pool has an egress IP that every destination allows ({}){identity}", list(allowed))
        }
    };
    let mut hint = rule_text;
    if pool_text.is_empty() {
        hint.push("no pools are defined in the settings".to_owned());
    } else {
        hint.extend(pool_text);
    }
    let fix = if allowed.is_empty() {
        "allow one static IP in every rule, or split the task so each part needs fewer destinations"
    } else {
        "add an allowed IP (and the identity) to a pool, or allow a pool's IP in the rules"
    };
    Outcome::Unplaceable { why, hint: format!("{}; {fix}", hint.join("; ")) }
}
