use std::collections::HashMap;

use super::LoadedSettings;
use crate::diagnostic::{Code, Diagnostic};
use crate::document::Seg;
use crate::manifest::valid_name;

pub(crate) fn check_settings(s: &LoadedSettings, out: &mut Vec<Diagnostic>) {
    let Some(doc) = &s.doc else { return };
    let settings = &s.settings;
    let state = &settings.control_plane.state;
    if !(state.starts_with("sqlite://")
        || state.starts_with("postgres://")
        || state.starts_with("postgresql://"))
    {
        out.push(
            doc.error(
                Code::Schema,
                &[Seg::Key("control_plane"), Seg::Key("state")],
                format!("unsupported state store `{}`", state.split("://").next().unwrap_or(state)),
            )
            .with_hint(
                "use sqlite://PATH (single control plane) or postgres://USER@HOST/DB (several replicas)",
            ),
        );
    }
    let cp = &settings.control_plane;
    if cp.tls_cert.is_some() != cp.tls_key.is_some() {
        let (set, missing) =
            if cp.tls_cert.is_some() { ("tls_cert", "tls_key") } else { ("tls_key", "tls_cert") };
        out.push(
            doc.error(Code::Schema, &[Seg::Key("control_plane"), Seg::Key(set)], format!("`{set}` is set but `{missing}` is not"))
                .with_hint("TLS needs both the certificate chain and its private key; set both, or neither for plain HTTP"),
        );
    }
    if cp.lease_ttl.as_std() < std::time::Duration::from_millis(300) {
        out.push(
            doc.error(
                Code::Schema,
                &[Seg::Key("control_plane"), Seg::Key("lease_ttl")],
                format!("lease_ttl {} is too short", cp.lease_ttl),
            )
            .with_hint("nodes heartbeat three times per lease_ttl; use at least 1s (15s is the default)"),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, pool) in settings.pools.iter().enumerate() {
        let at = |key: &'static str| [Seg::Key("pools"), Seg::Index(s.pool_index[i]), Seg::Key(key)];
        if !valid_name(&pool.name) {
            out.push(
                doc.error(Code::Schema, &at("name"), format!("invalid pool name `{}`", pool.name))
                    .with_hint("use letters, digits, `_` and `-`"),
            );
        }
        if let Some(first) = seen.insert(pool.name.as_str(), i) {
            let line =
                doc.locate(&[Seg::Key("pools"), Seg::Index(s.pool_index[first]), Seg::Key("name")]).line;
            out.push(
                doc.error(Code::DuplicateName, &at("name"), format!("pool `{}` is defined twice", pool.name))
                    .with_hint(format!("the first is at line {line}; give each pool its own name")),
            );
        }
        if pool.egress_ips.is_empty() {
            out.push(
                doc.error(Code::Schema, &at("egress_ips"), format!("pool `{}` has no egress IP", pool.name))
                    .with_hint("list the static egress IPs of the pool's nodes"),
            );
        }
        if pool.slots == 0 {
            out.push(
                doc.error(Code::Schema, &at("slots"), "`slots` is 0: nodes of this pool could run nothing")
                    .with_hint("set slots to 1 or more"),
            );
        }
        for (j, identity) in pool.identities.iter().enumerate() {
            if !settings.identities.contains_key(identity) {
                let known = settings.identities.keys().map(String::as_str);
                out.push(
                    doc.error(
                        Code::UnknownIdentity,
                        &[
                            Seg::Key("pools"),
                            Seg::Index(s.pool_index[i]),
                            Seg::Key("identities"),
                            Seg::Index(j),
                        ],
                        format!("pool `{}` holds identity `{identity}`, which is not defined", pool.name),
                    )
                    .with_hint(format!(
                        "{}add `[identities.{identity}]` with cert, key and ca",
                        crate::suggest::did_you_mean(identity, known)
                    )),
                );
            }
        }
    }
    for (key, value) in [
        ("dedicated_node_hour", settings.prices.dedicated_node_hour),
        ("serverless_vcpu_second", settings.prices.serverless_vcpu_second),
    ] {
        if !(value >= 0.0 && value.is_finite()) {
            out.push(
                doc.error(
                    Code::Schema,
                    &[Seg::Key("prices"), Seg::Key(key)],
                    format!("price {value} is not a non-negative number"),
                )
                .with_hint("prices are in your currency per unit, e.g. 0.50"),
            );
        }
    }
}
