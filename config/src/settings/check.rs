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
    check_transform(doc, &settings.transform, out);
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
    let vcpus = settings.serverless.vcpus_per_worker;
    if !(vcpus > 0.0 && vcpus.is_finite()) {
        out.push(
            doc.error(
                Code::Schema,
                &[Seg::Key("serverless"), Seg::Key("vcpus_per_worker")],
                format!("vcpus_per_worker {vcpus} is not a positive number"),
            )
            .with_hint("set the vCPUs one worker is billed for, e.g. 1 or 0.5"),
        );
    }
    if let Some(ns) = &settings.serverless.netns {
        let at = [Seg::Key("serverless"), Seg::Key("netns")];
        // A namespace name is a file name under /run/netns.
        let valid = !ns.is_empty() && ns.len() <= 255 && ns != "." && ns != ".." && !ns.contains(['/', '\0']);
        if !valid {
            out.push(
                doc.error(Code::Schema, &at, format!("`{ns}` is not a network namespace name"))
                    .with_hint("give the name `ip netns list` shows, e.g. \"switchyard-workers\""),
            );
        } else if settings.serverless.launcher == super::LauncherKind::Kubernetes {
            out.push(
                doc.error(Code::Schema, &at, "`netns` applies to the local launcher, not to Kubernetes")
                    .with_hint(
                        "on Kubernetes the workers' NetworkPolicy keeps them from the network \
                         (deploy/kubernetes/40-workers.yaml); remove `netns`",
                    ),
            );
        }
    }
    if settings.serverless.launcher == super::LauncherKind::Kubernetes && settings.serverless.max_workers > 0
    {
        check_kubernetes(doc, &settings.serverless.kubernetes, &settings.lake.root, out);
    }
    check_lake(doc, &settings.lake, out);
    super::alerts::check_alerts(doc, &settings.alerts, out);
}

/// `[lake]`: a root whose object store Switchyard has, and storage options that say one thing.
fn check_lake(doc: &crate::document::Document, lake: &super::Lake, out: &mut Vec<Diagnostic>) {
    let root_at = [Seg::Key("lake"), Seg::Key("root")];
    let scheme = super::lake_scheme(&lake.root);
    let known = super::LAKE_SCHEMES.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    if lake.root.trim().is_empty() {
        out.push(
            doc.error(Code::Schema, &root_at, "lake root is empty")
                .with_hint("set [lake] root to a directory (e.g. .switchyard/lake) or an object-store URL such as s3://bucket/prefix"),
        );
    } else if !known.contains(&scheme) {
        out.push(
            doc.error(
                Code::Schema,
                &root_at,
                format!(
                    "lake root `{}` has the scheme `{scheme}`, which no object store here handles",
                    lake.root
                ),
            )
            .with_hint(format!("use a local directory or one of {}://", known.join("://, "))),
        );
    } else if scheme != "file" {
        let rest = lake.root.split_once("://").map_or("", |(_, r)| r);
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            let what = if scheme.starts_with("abfs") { "container@account" } else { "bucket or container" };
            out.push(
                doc.error(Code::Schema, &root_at, format!("lake root `{}` names no {what}", lake.root))
                    .with_hint(format!(
                        "write it as {scheme}://{}/PREFIX",
                        if scheme.starts_with("abfs") {
                            "CONTAINER@ACCOUNT.dfs.core.windows.net"
                        } else {
                            "BUCKET"
                        }
                    )),
            );
        }
    }
    let keys: Vec<&str> = lake.storage_options.keys().collect();
    for key in &keys {
        let at = [Seg::Key("lake"), Seg::Key("storage_options"), Seg::Key(key)];
        if let Some(option) = key.strip_suffix("_env").or_else(|| key.strip_suffix("_file")) {
            if option.is_empty() {
                out.push(
                    doc.error(Code::Schema, &at, format!("`{key}` names no option"))
                        .with_hint("write OPTION_env = \"VARIABLE\" or OPTION_file = \"PATH\""),
                );
            }
            let twins = [option.to_owned(), format!("{option}_env"), format!("{option}_file")];
            let set: Vec<&String> = twins.iter().filter(|t| keys.contains(&t.as_str())).collect();
            // Reported once, at the first reference of the set.
            let first_reference = set.iter().find(|t| t.as_str() != option);
            if set.len() > 1 && first_reference.is_some_and(|t| t.as_str() == *key) {
                out.push(
                    doc.error(
                        Code::Schema,
                        &at,
                        format!(
                            "`{option}` is given {} ways: {}",
                            set.len(),
                            set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .with_hint("keep one: the value itself, OPTION_env or OPTION_file"),
                );
            }
        }
    }
    check_maintenance(doc, &lake.maintenance, out);
    if matches!(scheme, "s3" | "s3a") && !lake.allow_unsafe_rename {
        let unsafe_key = keys.iter().find(|k| k.eq_ignore_ascii_case("aws_s3_allow_unsafe_rename"));
        if let Some(key) = unsafe_key {
            out.push(
                doc.error(Code::Schema, &[Seg::Key("lake"), Seg::Key("storage_options"), Seg::Key(key)], "unsafe renames let two writers racing for one Delta version both succeed, losing a commit")
                    .with_hint("remove it: Switchyard commits with conditional PUT (If-None-Match), which S3 and most S3-compatible servers support; if exactly one process ever writes each table and the server lacks it, set [lake] allow_unsafe_rename = true"),
            );
        }
    }
}

/// `[[lake.maintenance]]`: each entry says when (one of `every`, `schedule`) and does something;
/// a table has one entry.
fn check_maintenance(
    doc: &crate::document::Document,
    entries: &[super::Maintenance],
    out: &mut Vec<Diagnostic>,
) {
    for (i, m) in entries.iter().enumerate() {
        let at =
            |key: &'static str| [Seg::Key("lake"), Seg::Key("maintenance"), Seg::Index(i), Seg::Key(key)];
        match (&m.every, &m.schedule) {
            (None, None) => out.push(
                doc.error(
                    Code::Schema,
                    &at("table"),
                    format!("maintenance of {} says neither `every` nor `schedule`", m.table),
                )
                .with_hint("add every = \"6h\" or schedule = \"0 3 * * *\" (cron, UTC)"),
            ),
            (Some(_), Some(_)) => out.push(
                doc.error(
                    Code::Schema,
                    &at("schedule"),
                    format!("maintenance of {} has both `every` and `schedule`", m.table),
                )
                .with_hint("keep one of them"),
            ),
            (Some(every), None) if every.0 < std::time::Duration::from_secs(1) => out.push(
                doc.error(
                    Code::Schema,
                    &at("every"),
                    format!("maintenance every {every} is shorter than a second"),
                )
                .with_hint("maintenance rewrites files: run it every few hours, e.g. every = \"6h\""),
            ),
            _ => {}
        }
        if !m.optimize && m.vacuum_retain.is_none() {
            out.push(
                doc.error(
                    Code::Schema,
                    &at("optimize"),
                    format!("maintenance of {} does nothing: optimize = false and no vacuum_retain", m.table),
                )
                .with_hint("set optimize = true, add vacuum_retain = \"7d\", or remove the entry"),
            );
        }
        if !m.optimize && !m.z_order.is_empty() {
            out.push(
                doc.error(
                    Code::Schema,
                    &at("z_order"),
                    "z_order is set but optimize = false, so nothing is Z-ordered",
                )
                .with_hint("set optimize = true or remove z_order"),
            );
        }
        if entries[..i].iter().any(|earlier| earlier.table == m.table) {
            out.push(
                doc.error(
                    Code::DuplicateName,
                    &at("table"),
                    format!("{} has a second maintenance entry", m.table),
                )
                .with_hint("merge them into one entry per table"),
            );
        }
    }
}

/// `[serverless.kubernetes]` when the Kubernetes launcher is selected: what the Jobs cannot do
/// without, and names Kubernetes would refuse.
fn check_kubernetes(
    doc: &crate::document::Document,
    k: &super::KubernetesWorkers,
    lake_root: &str,
    out: &mut Vec<Diagnostic>,
) {
    let at = |key: &'static str| [Seg::Key("serverless"), Seg::Key("kubernetes"), Seg::Key(key)];
    if super::lake_scheme(lake_root) == "file" {
        out.push(
            doc.error(Code::Schema, &[Seg::Key("lake"), Seg::Key("root")], format!("lake root `{lake_root}` is a local path, which worker pods do not share"))
                .with_hint("with launcher = \"kubernetes\" use an object-store lake root (s3://, s3a://, abfss://, az://, gs://) that the control plane, the nodes and the worker pods all reach"),
        );
    }
    if k.image.trim().is_empty() {
        out.push(
            doc.error(Code::Schema, &at("image"), "launcher = \"kubernetes\" needs an image for the worker Jobs")
                .with_hint("set serverless.kubernetes.image to the image deploy/Dockerfile builds, e.g. registry.example/switchyard:0.1.0"),
        );
    }
    match k.control_plane_url.as_deref() {
        None => out.push(
            doc.error(Code::Schema, &at("control_plane_url"), "launcher = \"kubernetes\" needs the URL workers reach the control plane at")
                .with_hint("set serverless.kubernetes.control_plane_url, e.g. http://switchyard-control-plane.switchyard.svc:7070 (the control plane's Service)"),
        ),
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => out.push(
            doc.error(Code::Schema, &at("control_plane_url"), format!("`{url}` is not an http:// or https:// URL"))
                .with_hint("e.g. http://switchyard-control-plane.switchyard.svc:7070"),
        ),
        Some(_) => {}
    }
    let mut names = vec![
        ("namespace", Some(k.namespace.as_str()), true),
        ("token_secret", Some(k.token_secret.as_str()), false),
    ];
    names.push(("service_account", Some(k.service_account.as_str()), false));
    names.push(("ca_secret", k.ca_secret.as_deref(), false));
    names.push(("lake_secret", k.lake_secret.as_deref(), false));
    for (key, value, label) in names {
        let Some(value) = value else { continue };
        if !valid_kubernetes_name(value, label) {
            let rule = if label { "a DNS label: at most 63" } else { "a DNS subdomain: at most 253" };
            out.push(
                doc.error(Code::Schema, &at(key), format!("`{value}` is not a valid Kubernetes name"))
                    .with_hint(format!("use {rule} lowercase letters, digits, `-` (and `.` between labels), starting and ending with a letter or digit")),
            );
        }
    }
    if k.memory.trim().is_empty() || !k.memory.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
        out.push(
            doc.error(Code::Schema, &at("memory"), format!("`{}` is not a memory quantity", k.memory))
                .with_hint("use Kubernetes quantity notation, e.g. 2Gi or 512Mi"),
        );
    }
}

/// `[transform]`: a Ballista scheduler address that parses, and one whenever `distributed` is the
/// default engine.
fn check_transform(doc: &crate::document::Document, t: &super::Transform, out: &mut Vec<Diagnostic>) {
    let at = |key: &'static str| [Seg::Key("transform"), Seg::Key("ballista"), Seg::Key(key)];
    match &t.ballista {
        Some(b) if !valid_ballista_url(&b.scheduler) => out.push(
            doc.error(
                Code::Schema,
                &at("scheduler"),
                format!("`{}` is not a Ballista scheduler address", b.scheduler),
            )
            .with_hint("write it as df://HOST:PORT, e.g. df://ballista-scheduler:50050"),
        ),
        None if t.engine == crate::manifest::Engine::Distributed => out.push(
            doc.error(
                Code::Schema,
                &[Seg::Key("transform"), Seg::Key("engine")],
                "`engine = \"distributed\"` but no Ballista scheduler is configured",
            )
            .with_hint(
                "add `[transform.ballista] scheduler = \"df://HOST:50050\"`, or set `engine = \"local\"`",
            ),
        ),
        _ => {}
    }
}

/// `df://host:port` with a host and a port number.
pub(crate) fn valid_ballista_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("df://") else { return false };
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Kubernetes object names: a DNS label (namespaces) or a DNS subdomain (most other objects).
pub(crate) fn valid_kubernetes_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    !name.is_empty() && name.len() <= max && if label { part_ok(name) } else { name.split('.').all(part_ok) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::{LoadOptions, load};

    fn errors(toml: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, toml).unwrap();
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let options = LoadOptions {
            paths: vec![],
            settings: Some(file),
            egress: Some(dir.path().join("none.yaml")),
            env: Some(env),
            inline: vec![],
        };
        let egress = dir.path().join("none.yaml");
        std::fs::write(&egress, "destinations: []\n").unwrap();
        let inputs = load(&options).unwrap();
        inputs.diagnostics.iter().map(|d| (d.path.clone(), d.message.clone())).collect()
    }

    #[test]
    fn ballista_scheduler_is_an_address_and_needed_by_a_distributed_default() {
        assert_eq!(errors("[transform.ballista]\nscheduler = \"df://sched:50050\"\n", &[]), vec![]);
        for bad in ["http://sched:50050", "df://sched", "df://:50050", "df://sched:0", "df://a/b:1"] {
            let errs = errors(&format!("[transform.ballista]\nscheduler = \"{bad}\"\n"), &[]);
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!(errs[0].0, "transform.ballista.scheduler", "{bad}");
            assert!(errs[0].1.contains(bad), "{errs:?}");
        }
        let errs = errors("[transform]\nengine = \"distributed\"\n", &[]);
        assert_eq!(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["transform.engine"], "{errs:?}");
    }

    #[test]
    fn kubernetes_launcher_needs_an_image_and_a_control_plane_url() {
        let errs =
            errors("[lake]\nroot = \"s3://lake/prod\"\n[serverless]\nlauncher = \"kubernetes\"\n", &[]);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["serverless.kubernetes.image", "serverless.kubernetes.control_plane_url"],
            "{errs:?}"
        );
    }

    #[test]
    fn kubernetes_launcher_settings_from_the_file_and_the_environment() {
        let toml = "[lake]\nroot = \"s3://lake/prod\"\n[serverless]\nlauncher = \"kubernetes\"\n[serverless.kubernetes]\nimage = \"registry.example/switchyard:0.1.0\"\n";
        let url = ("SWITCHYARD__SERVERLESS__KUBERNETES__CONTROL_PLANE_URL", "http://cp.switchyard.svc:7070");
        assert_eq!(errors(toml, &[url]), vec![]);
        let bad = errors(toml, &[url, ("SWITCHYARD__SERVERLESS__KUBERNETES__NAMESPACE", "Not_A_Label")]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, "serverless.kubernetes.namespace");
        assert!(bad[0].1.contains("Not_A_Label"), "{bad:?}");
    }

    #[test]
    fn lake_roots_and_storage_options_are_checked() {
        let errs = errors("[lake]\nroot = \"hdfs://x/y\"\n", &[]);
        assert_eq!(errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["lake.root"], "{errs:?}");
        let errs = errors("[lake]\nroot = \"s3:///x\"\n", &[]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        let twice = "[lake]\nroot = \"s3://b/x\"\n[lake.storage_options]\nkey = \"v\"\nkey_env = \"K\"\n";
        let errs = errors(twice, &[]);
        assert_eq!(
            errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["lake.storage_options.key_env"],
            "{errs:?}"
        );
        let unsafe_rename =
            "[lake]\nroot = \"s3://b/x\"\n[lake.storage_options]\naws_s3_allow_unsafe_rename = \"true\"\n";
        assert_eq!(errors(unsafe_rename, &[]).len(), 1);
        let allowed = "[lake]\nroot = \"s3://b/x\"\nallow_unsafe_rename = true\n[lake.storage_options]\naws_s3_allow_unsafe_rename = \"true\"\n";
        assert!(errors(allowed, &[]).is_empty());
    }

    #[test]
    fn maintenance_entries_say_when_and_what() {
        let ok = "[[lake.maintenance]]\ntable = \"bronze.claims\"\nschedule = \"0 3 * * *\"\nz_order = [\"provider\"]\nvacuum_retain = \"7d\"\n\
                  [[lake.maintenance]]\ntable = \"_switchyard.event_log\"\nevery = \"6h\"\n";
        assert_eq!(errors(ok, &[]), vec![]);
        let bad = "[[lake.maintenance]]\ntable = \"a.b\"\n\
                   [[lake.maintenance]]\ntable = \"a.c\"\nevery = \"1h\"\nschedule = \"@daily\"\n\
                   [[lake.maintenance]]\ntable = \"a.d\"\nevery = \"1h\"\noptimize = false\nz_order = [\"x\"]\n\
                   [[lake.maintenance]]\ntable = \"A.B\"\nevery = \"100ms\"\n";
        let errs = errors(bad, &[]);
        let paths: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "lake.maintenance[0].table",
                "lake.maintenance[1].schedule",
                "lake.maintenance[2].optimize",
                "lake.maintenance[2].z_order",
                "lake.maintenance[3].table",
                "lake.maintenance[3].every",
            ],
            "{errs:?}"
        );
        assert!(errs[4].1.contains("a.b has a second maintenance entry"), "{errs:?}");
        let typo = errors("[[lake.maintenance]]\ntable = \"a.b\"\nschedule = \"0 3 * *\"\n", &[]);
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert!(typo[0].1.contains("expected 5"), "{typo:?}");
    }

    #[test]
    fn kubernetes_workers_need_a_shared_lake() {
        let toml = "[serverless]\nlauncher = \"kubernetes\"\n[serverless.kubernetes]\nimage = \"i\"\ncontrol_plane_url = \"http://cp:7070\"\n";
        let errs = errors(toml, &[]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "lake.root");
    }

    #[test]
    fn kubernetes_settings_are_not_checked_for_the_local_launcher() {
        assert_eq!(errors("[serverless.kubernetes]\nnamespace = \"x\"\n", &[]), vec![]);
    }

    #[test]
    fn kubernetes_names() {
        use super::valid_kubernetes_name as ok;
        assert!(ok("switchyard", true) && ok("a-1", true) && ok("tokens.example", false));
        assert!(!ok("", true) && !ok("-a", true) && !ok("a.b", true) && !ok("UPPER", false));
        assert!(!ok(&"a".repeat(64), true) && ok(&"a".repeat(63), true));
    }
}
