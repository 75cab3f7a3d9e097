use std::collections::HashMap;

use super::LoadedPolicy;
use crate::diagnostic::{Code, Diagnostic};
use crate::document::Seg;
use crate::settings::Settings;

/// Names unique, every rule allows at least one IP and port, identities exist in the settings.
pub(crate) fn check_policy(p: &LoadedPolicy, settings: Option<&Settings>, out: &mut Vec<Diagnostic>) {
    let Some(doc) = &p.doc else { return };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, d) in p.policy.destinations.iter().enumerate() {
        let at = |key: &'static str| [Seg::Key("destinations"), Seg::Index(p.index[i]), Seg::Key(key)];
        if let Some(first) = seen.insert(d.name.as_str(), i) {
            let line =
                doc.locate(&[Seg::Key("destinations"), Seg::Index(p.index[first]), Seg::Key("name")]).line;
            out.push(
                doc.error(
                    Code::DuplicateName,
                    &at("name"),
                    format!("destination `{}` is defined twice", d.name),
                )
                .with_hint(format!(
                    "the first is at line {line}; rule names must be unique so audits are unambiguous"
                )),
            );
        }
        if d.egress_ips.is_empty() {
            out.push(
                doc.error(
                    Code::Schema,
                    &at("egress_ips"),
                    format!("destination `{}` allows no egress IP", d.name),
                )
                .with_hint("list the static IPs the destination's firewall allows, or remove the rule"),
            );
        }
        if d.ports.is_empty() {
            out.push(
                doc.error(Code::Schema, &at("ports"), format!("destination `{}` allows no port", d.name))
                    .with_hint("list the ports to allow, e.g. [443]"),
            );
        }
        if let (Some(identity), Some(settings)) = (&d.identity, settings) {
            if !settings.identities.contains_key(identity) {
                let known = settings.identities.keys().map(String::as_str);
                out.push(
                    doc.error(
                        Code::UnknownIdentity,
                        &at("identity"),
                        format!("identity `{identity}` is not defined in the settings"),
                    )
                    .with_hint(format!(
                        "{}add `[identities.{identity}]` with cert, key and ca to the settings",
                        crate::suggest::did_you_mean(identity, known)
                    )),
                );
            }
        }
    }
}
