//! The deployment files in `deploy/`, checked as data: no cluster, systemd or Docker engine runs
//! here (deploy/README.md says exactly what was and was not tried for real). Every Kubernetes
//! manifest is parsed and its references checked against the others (selectors against labels,
//! Secrets against the README's `kubectl create secret` lines, the Service the StatefulSet and the
//! workers name); every command line — the manifests' container args, the systemd units'
//! `ExecStart`, the worker Job the launcher would create — is parsed by this build's own CLI; the
//! example settings are loaded with the real loader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use switchyard_config::LoadOptions;
use switchyard_config::settings::{LauncherKind, Settings};
use switchyard_scheduler::launcher::kubernetes::{JobTemplate, RUN_AS};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), to_json(v))).collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

/// Every document of every `deploy/kubernetes/*.yaml`, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = YamlLoader::load_from_str(&read(&file)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for doc in parsed.iter().filter(|d| !d.is_null()) {
            docs.push((name.clone(), to_json(doc)));
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|(_, d)| d["kind"] == kind).map(|(_, d)| d).collect()
}

fn named<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// `selector ⊆ labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let labels = str_map(labels);
    let selector = str_map(selector);
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

/// Runs this build's CLI on `args` followed by `--help`: clap parses every flag and value before
/// it (an unknown flag or a bad IP, duration or address fails) and then prints help and exits 0.
fn cli_accepts(args: &[String]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("switchyard {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn cli_accepts_rejects_unknown_flags_and_bad_values() {
    // The check above is only worth something if it can fail.
    let ok = |a: &[&str]| cli_accepts(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(ok(&["node", "--pool", "p", "--egress-ip", "203.0.113.10"]).is_ok());
    assert!(ok(&["node", "--pool", "p", "--egress-ip", "not-an-ip"]).is_err());
    assert!(ok(&["node", "--pool", "p", "--no-such-flag", "x"]).is_err());
    assert!(ok(&["serve", "--listen", "nowhere"]).is_err());
    assert!(ok(&["worker", "--idle-timeout", "soon"]).is_err());
    assert!(ok(&["executor", "--scheduler", "df://10.0.0.5:50050"]).is_ok());
    assert!(ok(&["executor", "--scheduler", "http://10.0.0.5:50050"]).is_err());
}

/// Substitutes Kubernetes' `$(VAR)` in container args from the container's env (a fieldRef gets
/// a sample pod IP).
fn expand_k8s_args(container: &Value) -> Vec<String> {
    let mut env = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(path)) if path == "status.podIP" => "10.1.2.3".to_owned(),
            _ => continue,
        };
        env.insert(e["name"].as_str().unwrap().to_owned(), value);
    }
    strings(&container["args"])
        .into_iter()
        .map(|a| {
            let mut a = a;
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            assert!(!a.contains("$("), "unexpanded variable in {a}");
            a
        })
        .collect()
}

/// The settings and policy in the ConfigMap, loaded like `switchyard validate` loads files.
fn configmap_settings(docs: &[(String, Value)]) -> Settings {
    let cm = named(docs, "ConfigMap", "switchyard-config");
    load_settings(
        cm["data"]["switchyard.toml"].as_str().unwrap(),
        cm["data"]["egress.yaml"].as_str().unwrap(),
    )
}

fn load_settings(toml: &str, egress: &str) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("switchyard.toml"), toml).unwrap();
    std::fs::write(dir.path().join("egress.yaml"), egress).unwrap();
    let options = LoadOptions {
        paths: vec![],
        settings: Some(dir.path().join("switchyard.toml")),
        egress: Some(dir.path().join("egress.yaml")),
        env: Some(BTreeMap::new()),
        inline: vec![],
    };
    let inputs = switchyard_config::load(&options).unwrap();
    let errors: Vec<String> =
        inputs.diagnostics.iter().map(|d| format!("{}: {} ({})", d.path, d.message, d.hint)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    inputs.settings.settings
}

/// Secrets the README tells the operator to create.
fn documented_secrets() -> BTreeSet<String> {
    let readme = read(&deploy().join("README.md"));
    readme
        .lines()
        .filter_map(|l| {
            let rest = l.split("kubectl").nth(1)?;
            let mut words = rest.split_whitespace().skip_while(|w| *w != "secret");
            words.next()?;
            let kind = words.next()?;
            assert!(["generic", "tls"].contains(&kind), "{l}");
            Some(words.next()?.to_owned())
        })
        .collect()
}

/// Every Secret a pod spec refers to: env secretKeyRef, envFrom secretRef, secret volumes.
fn secret_refs(pod: &Value) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for c in pod["containers"].as_array().unwrap() {
        for e in c["env"].as_array().into_iter().flatten() {
            if let Some(name) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                refs.insert(name.to_owned());
            }
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = e["secretRef"]["name"].as_str() {
                refs.insert(name.to_owned());
            }
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = v["secret"]["secretName"].as_str() {
            refs.insert(name.to_owned());
        }
    }
    refs
}

#[test]
fn deploy_kubernetes_manifests_parse_and_have_their_required_fields() {
    let docs = manifests();
    let kinds: BTreeSet<&str> = docs.iter().map(|(_, d)| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "StatefulSet",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes ({kinds:?})");
    }
    let cluster_scoped = ["Namespace", "CiliumEgressGatewayPolicy"];
    for (file, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or_else(|| panic!("{file}: a document without kind"));
        assert!(d["apiVersion"].is_string(), "{file}: {kind} without apiVersion");
        assert!(d["metadata"]["name"].is_string(), "{file}: {kind} without metadata.name");
        if !cluster_scoped.contains(&kind) {
            assert_eq!(d["metadata"]["namespace"], "switchyard", "{file}: {kind} {}", d["metadata"]["name"]);
        }
        // Secrets are created with kubectl from values kept elsewhere, never committed.
        assert_ne!(kind, "Secret", "{file}: secrets do not belong in the manifests");
    }
    for workload in of_kind(&docs, "Deployment").into_iter().chain(of_kind(&docs, "StatefulSet")) {
        let name = &workload["metadata"]["name"];
        let spec = &workload["spec"];
        assert!(
            selects(&spec["selector"]["matchLabels"], &spec["template"]["metadata"]["labels"]),
            "{name}: selector does not match the pod labels"
        );
        let pod = &spec["template"]["spec"];
        let account = pod["serviceAccountName"].as_str().unwrap();
        named(&docs, "ServiceAccount", account);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], RUN_AS, "{name}: the image's user");
        for c in pod["containers"].as_array().unwrap() {
            assert!(c["image"].as_str().is_some_and(|i| !i.is_empty()), "{name}: no image");
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{name}");
            let volumes: BTreeSet<&str> =
                pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
            for m in c["volumeMounts"].as_array().unwrap() {
                assert!(
                    volumes.contains(m["name"].as_str().unwrap()),
                    "{name}: mount of a missing volume {m}"
                );
            }
        }
    }
    for svc in of_kind(&docs, "Service") {
        let selector = &svc["spec"]["selector"];
        let backed = of_kind(&docs, "Deployment")
            .into_iter()
            .chain(of_kind(&docs, "StatefulSet"))
            .any(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]));
        assert!(backed, "Service {} selects no pods", svc["metadata"]["name"]);
    }
}

#[test]
fn deploy_control_plane_reads_postgres_from_a_secret_and_serves_with_real_flags() {
    let docs = manifests();
    let deployment = named(&docs, "Deployment", "switchyard-control-plane");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = expand_k8s_args(c);
    assert_eq!(args[0], "serve");
    cli_accepts(&args).unwrap();
    let state = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SWITCHYARD__CONTROL_PLANE__STATE")
        .expect("the state store URL from the environment");
    assert_eq!(state["valueFrom"]["secretKeyRef"], json!({ "name": "switchyard-postgres", "key": "url" }));
    assert!(state.get("value").is_none(), "never inline");
    // Every Secret it uses is one the README says how to create.
    let documented = documented_secrets();
    for secret in secret_refs(pod) {
        assert!(documented.contains(&secret), "Secret {secret} is not in deploy/README.md ({documented:?})");
    }
    // The Service reaches the container's port, and the settings' listen address is that port.
    let svc = named(&docs, "Service", "switchyard-control-plane");
    assert!(selects(&svc["spec"]["selector"], &deployment["spec"]["template"]["metadata"]["labels"]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    assert_eq!(c["ports"][0]["containerPort"], svc["spec"]["ports"][0]["port"]);
    let settings = configmap_settings(&docs);
    let listen = args.iter().position(|a| a == "--listen").map(|i| args[i + 1].clone()).unwrap();
    assert_eq!(listen, settings.control_plane.listen.to_string());
    // The launcher's account may create and list Jobs.
    let binding = named(&docs, "RoleBinding", "switchyard-launcher");
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    let role = named(&docs, "Role", binding["roleRef"]["name"].as_str().unwrap());
    let jobs = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            strings(&r["apiGroups"]) == ["batch"] && strings(&r["resources"]).contains(&"jobs".to_owned())
        })
        .expect("a rule for batch/jobs");
    for verb in ["create", "list"] {
        assert!(strings(&jobs["verbs"]).contains(&verb.to_owned()), "{verb}");
    }
    // Probes use endpoints the API serves without a token.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
}

#[test]
fn deploy_node_statefulset_is_pinned_to_the_static_egress_pool() {
    let docs = manifests();
    let settings = configmap_settings(&docs);
    let sts = named(&docs, "StatefulSet", "switchyard-node-egress-a");
    named(&docs, "Service", sts["spec"]["serviceName"].as_str().unwrap());
    let pod = &sts["spec"]["template"]["spec"];
    let selector = str_map(&pod["nodeSelector"]);
    assert!(!selector.is_empty(), "pinned by nodeSelector");
    let tolerations = pod["tolerations"].as_array().expect("tolerations for the pool's taint");
    for (key, value) in &selector {
        assert!(
            tolerations.iter().any(|t| t["key"] == key.as_str()
                && t["value"] == value.as_str()
                && t["operator"] == "Equal"
                && t["effect"] == "NoSchedule"),
            "no toleration for the taint {key}={value}:NoSchedule"
        );
    }
    let c = &pod["containers"][0];
    let args = expand_k8s_args(c);
    assert_eq!(args[0], "node");
    cli_accepts(&args).unwrap();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let pool = settings.pool(&flag("--pool").unwrap()).expect("the pool is in the ConfigMap's settings");
    let egress_ip: std::net::IpAddr = flag("--egress-ip").unwrap().parse().unwrap();
    assert!(pool.egress_ips.contains(&egress_ip), "{egress_ip} is not one of {:?}", pool.egress_ips);
    assert_eq!(
        flag("--source-ip").as_deref(),
        Some("10.1.2.3"),
        "behind the NAT, sockets leave from the pod IP"
    );
    assert_eq!(
        flag("--control-plane").unwrap(),
        settings.serverless.kubernetes.control_plane_url.clone().unwrap()
    );
    // Long enough for the drain.
    let drain = flag("--drain-timeout").unwrap();
    let drain: switchyard_config::value::Duration = drain.parse().unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain.as_std().as_secs());
    // The identities the pool holds are mounted where the settings say.
    let mounts: Vec<&str> =
        c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    for identity in &pool.identities {
        let files = &settings.identities[identity];
        for file in [Some(&files.cert), Some(&files.key), files.ca.as_ref()].into_iter().flatten() {
            assert!(mounts.iter().any(|m| file.starts_with(m)), "{} is not mounted", file.display());
        }
    }
    let documented = documented_secrets();
    for secret in secret_refs(pod) {
        assert!(documented.contains(&secret), "Secret {secret} is not in deploy/README.md ({documented:?})");
    }
}

#[test]
fn deploy_worker_jobs_match_the_network_policy_and_the_cli() {
    let docs = manifests();
    let settings = configmap_settings(&docs);
    assert_eq!(settings.serverless.launcher, LauncherKind::Kubernetes);
    let k = &settings.serverless.kubernetes;
    // The Job the launcher would create from these settings.
    let template = JobTemplate::from_settings(&settings, 2).unwrap();
    let job = template.job("switchyard-worker-test-0", 3, 1_700_000_000_000);
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["switchyard"]));
    cli_accepts(&strings(&c["args"])).unwrap();
    assert_eq!(job["metadata"]["namespace"], "switchyard");
    named(&docs, "Namespace", &k.namespace);
    named(&docs, "ServiceAccount", pod["serviceAccountName"].as_str().unwrap());
    // Same image as the control plane's.
    let deployment = named(&docs, "Deployment", "switchyard-control-plane");
    assert_eq!(c["image"], deployment["spec"]["template"]["spec"]["containers"][0]["image"]);
    // The URL the workers dial is the control plane's Service.
    let svc = named(&docs, "Service", "switchyard-control-plane");
    let url = format!(
        "http://{}.{}.svc:{}",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap(),
        svc["spec"]["ports"][0]["port"]
    );
    assert_eq!(k.control_plane_url.as_deref(), Some(url.as_str()));
    // CPU is what the cost report bills.
    let cpu = c["resources"]["limits"]["cpu"].as_str().unwrap();
    assert_eq!(cpu, format!("{}m", (settings.serverless.vcpus_per_worker * 1000.0) as u64));
    let documented = documented_secrets();
    for secret in secret_refs(pod) {
        assert!(documented.contains(&secret), "Secret {secret} is not in deploy/README.md ({documented:?})");
    }
    // The NetworkPolicy selects the worker pods and lets them reach only the control plane's
    // port, DNS and the lake.
    let policy = named(&docs, "NetworkPolicy", "switchyard-worker-egress");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &job["spec"]["template"]["metadata"]["labels"]
    ));
    assert!(strings(&policy["spec"]["policyTypes"]).contains(&"Egress".to_owned()));
    let rules = policy["spec"]["egress"].as_array().unwrap();
    let to_cp = rules
        .iter()
        .find(|r| {
            r["to"].as_array().unwrap().iter().any(|t| {
                selects(
                    &t["podSelector"]["matchLabels"],
                    &deployment["spec"]["template"]["metadata"]["labels"],
                )
            })
        })
        .expect("an egress rule to the control plane");
    assert_eq!(to_cp["ports"][0]["port"], svc["spec"]["ports"][0]["port"]);
    for rule in rules {
        for to in rule["to"].as_array().unwrap() {
            if let Some(cidr) = to["ipBlock"]["cidr"].as_str() {
                assert_ne!(cidr, "0.0.0.0/0", "workers get no egress beyond the lake");
            }
        }
    }
}

/// `KEY=VALUE` lines of an environment file (comments and blanks skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// `[Section]` → `Key` → values (a key may repeat).
fn unit(path: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in read(path).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{}: bad line {line}", path.display()));
        sections
            .entry(current.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    sections
}

/// systemd's expansion of an `ExecStart` line: `%i`, `${VAR}` (one word) and `$VAR` (split into
/// words), then splitting on whitespace (the units use no quotes).
fn exec_start(line: &str, instance: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    for word in line.replace("%i", instance).split_whitespace() {
        if let Some(var) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            words.push(env.get(var).unwrap_or_else(|| panic!("{var} is not in the env file")).clone());
        } else if let Some(var) = word.strip_prefix('$') {
            words.extend(
                env.get(var)
                    .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        } else {
            assert!(!word.contains('$') && !word.contains('%'), "unexpanded {word}");
            words.push(word.to_owned());
        }
    }
    words
}

#[test]
fn deploy_systemd_units_start_real_commands() {
    let dir = deploy().join("systemd");
    let settings =
        load_settings(&read(&dir.join("switchyard.toml")), &read(&deploy().join("systemd/egress.yaml")));
    assert_eq!(settings.serverless.launcher, LauncherKind::Local);

    let cp = unit(&dir.join("switchyard-control-plane.service"));
    let env = env_file(&dir.join("control-plane.env.example"));
    assert!(env["SWITCHYARD__CONTROL_PLANE__STATE"].starts_with("postgres://"));
    let args = exec_start(&cp["Service"]["ExecStart"][0], "", &env);
    assert_eq!(args[0], "/usr/local/bin/switchyard");
    assert_eq!(args[1], "serve");
    cli_accepts(&args[1..]).unwrap();
    assert_eq!(cp["Service"]["User"], ["switchyard"]);
    assert!(cp["Install"]["WantedBy"].contains(&"multi-user.target".to_owned()));

    let node = unit(&dir.join("switchyard-node@.service"));
    let env = env_file(&dir.join("node-egress-a.env.example"));
    let line = &node["Service"]["ExecStart"][0];
    let args = exec_start(line, "egress-a", &env);
    assert_eq!(args[1], "node");
    cli_accepts(&args[1..]).unwrap();
    // The commented alternative (behind a NAT) parses too.
    let mut nat = env.clone();
    nat.insert("SWITCHYARD_NODE_EXTRA_ARGS".into(), "--source-ip 10.0.1.23".into());
    cli_accepts(&exec_start(line, "egress-a", &nat)[1..]).unwrap();
    let ip: std::net::IpAddr = env["SWITCHYARD_EGRESS_IP"].parse().unwrap();
    assert!(settings.pool("egress-a").unwrap().egress_ips.contains(&ip));
    // SIGTERM to the agent only, so it can drain; the stop timeout covers the drain.
    assert_eq!(node["Service"]["KillMode"], ["mixed"]);
    let drain = args.iter().position(|a| a == "--drain-timeout").map(|i| args[i + 1].clone()).unwrap();
    let drain: switchyard_config::value::Duration = drain.parse().unwrap();
    let stop: switchyard_config::value::Duration = node["Service"]["TimeoutStopSec"][0].parse().unwrap();
    assert!(stop.as_std() > drain.as_std());
    assert_eq!(node["Service"]["User"], ["switchyard"]);
}

#[test]
fn deploy_dockerfile_builds_locked_and_runs_as_the_manifests_user() {
    let text = read(&deploy().join("Dockerfile"));
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(froms, ["FROM rust:1.95-bookworm AS build", "FROM debian:bookworm-slim AS runtime"]);
    assert!(
        text.contains("cargo build --release --locked --features kube"),
        "locked release build with the launcher"
    );
    assert!(text.contains("ca-certificates"));
    assert!(
        lines.contains(&format!("USER {RUN_AS}:{RUN_AS}").as_str()),
        "non-root, the UID the manifests use"
    );
    assert!(text.contains(&format!("--uid {RUN_AS}")));
    assert!(lines.contains(&"ENTRYPOINT [\"switchyard\"]"));
    // The Job's command (`switchyard`) is on the image's PATH.
    assert!(text.contains("/usr/local/bin/switchyard"));
}

#[test]
fn deploy_ballista_cluster_matches_the_cli_and_the_network_policies() {
    fn flag(args: &[String], name: &str) -> Option<String> {
        args.iter().position(|a| a == name).map(|i| args[i + 1].clone())
    }
    /// The ports a NetworkPolicy's `rules` (`ingress`/`egress`) open to or from (`peers`:
    /// `from`/`to`) pods of this namespace with `labels`.
    fn ports(policy: &Value, rules: &str, peers: &str, labels: &Value) -> Vec<u64> {
        policy["spec"][rules]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r[peers].as_array().into_iter().flatten().any(|p| {
                    p.get("namespaceSelector").is_none() && selects(&p["podSelector"]["matchLabels"], labels)
                })
            })
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_u64())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    /// The settings file's commented `[transform.ballista]` example, switched on.
    fn with_ballista(toml: &str) -> String {
        let on = toml
            .replace("#[transform.ballista]", "[transform.ballista]")
            .replace("#scheduler = ", "scheduler = ");
        assert_ne!(on, toml, "no commented [transform.ballista] example");
        on
    }

    let docs = manifests();
    // The scheduler: one replica (Ballista keeps its state in memory), real flags, and the
    // Service on the port it listens on.
    let scheduler = named(&docs, "Deployment", "switchyard-ballista-scheduler");
    assert_eq!(scheduler["spec"]["replicas"], 1);
    let scheduler_labels = &scheduler["spec"]["template"]["metadata"]["labels"];
    let c = &scheduler["spec"]["template"]["spec"]["containers"][0];
    let args = expand_k8s_args(c);
    assert_eq!(args[0], "ballista-scheduler");
    cli_accepts(&args).unwrap();
    let svc = named(&docs, "Service", "switchyard-ballista-scheduler");
    assert!(selects(&svc["spec"]["selector"], scheduler_labels));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    assert_eq!(c["ports"][0]["containerPort"], svc["spec"]["ports"][0]["port"]);
    let port = svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    let listen: std::net::SocketAddr = flag(&args, "--listen").unwrap().parse().unwrap();
    assert_eq!(u64::from(listen.port()), port);

    // The executors: real flags once $(POD_IP) is substituted, the scheduler's Service as their
    // scheduler, the pod's own IP as the advertised Flight address, the work dir on a volume.
    let sts = named(&docs, "StatefulSet", "switchyard-ballista-executor");
    let headless = named(&docs, "Service", sts["spec"]["serviceName"].as_str().unwrap());
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let executor_labels = &sts["spec"]["template"]["metadata"]["labels"];
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = expand_k8s_args(c);
    assert_eq!(args[0], "executor");
    cli_accepts(&args).unwrap();
    let scheduler_name = svc["metadata"]["name"].as_str().unwrap();
    assert_eq!(flag(&args, "--scheduler").unwrap(), format!("df://{scheduler_name}:{port}"));
    let flight: std::net::SocketAddr = flag(&args, "--listen").unwrap().parse().unwrap();
    assert_eq!(flight.ip().to_string(), "10.1.2.3", "executors advertise their pod IP");
    let flight_port = u64::from(flight.port());
    let grpc_port: u64 = flag(&args, "--grpc-port").unwrap().parse().unwrap();
    let mounts: Vec<&str> =
        c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    for path in [flag(&args, "--work-dir").unwrap(), flag(&args, "--settings").unwrap()] {
        assert!(mounts.iter().any(|m| path.starts_with(m)), "{path} is not mounted ({mounts:?})");
    }
    let documented = documented_secrets();
    for pod in [pod, &scheduler["spec"]["template"]["spec"]] {
        let refs = secret_refs(pod);
        assert!(refs.contains("switchyard-lake"), "the lake's credentials");
        for secret in refs {
            assert!(documented.contains(&secret), "Secret {secret} is not in deploy/README.md");
        }
    }
    // The commented settings example names the same Service.
    let cm = named(&docs, "ConfigMap", "switchyard-config");
    let settings = load_settings(
        &with_ballista(cm["data"]["switchyard.toml"].as_str().unwrap()),
        cm["data"]["egress.yaml"].as_str().unwrap(),
    );
    let ballista = settings.transform.ballista.expect("[transform.ballista]");
    assert_eq!(ballista.scheduler, format!("df://{scheduler_name}.switchyard.svc:{port}"));

    // Network policies: workers reach the scheduler and the executors' Flight port; executors
    // reach the scheduler and each other; the scheduler reaches the executors' gRPC port.
    let workers = named(&docs, "NetworkPolicy", "switchyard-worker-egress");
    assert!(ports(workers, "egress", "to", scheduler_labels).contains(&port));
    assert!(ports(workers, "egress", "to", executor_labels).contains(&flight_port));
    let executors = named(&docs, "NetworkPolicy", "switchyard-ballista-executor");
    assert!(selects(&executors["spec"]["podSelector"]["matchLabels"], executor_labels));
    assert!(ports(executors, "egress", "to", scheduler_labels).contains(&port));
    assert!(ports(executors, "egress", "to", executor_labels).contains(&flight_port));
    assert!(ports(executors, "ingress", "from", executor_labels).contains(&flight_port));
    assert!(ports(executors, "ingress", "from", scheduler_labels).contains(&grpc_port));
    let scheduler_policy = named(&docs, "NetworkPolicy", "switchyard-ballista-scheduler");
    assert!(selects(&scheduler_policy["spec"]["podSelector"]["matchLabels"], scheduler_labels));
    assert!(ports(scheduler_policy, "ingress", "from", executor_labels).contains(&port));
    assert!(ports(scheduler_policy, "egress", "to", executor_labels).contains(&grpc_port));
    let template = JobTemplate::from_settings(&configmap_settings(&docs), 1).unwrap();
    let job = template.job("switchyard-worker-test-0", 1, 0);
    let worker_labels = &job["spec"]["template"]["metadata"]["labels"];
    assert!(ports(executors, "ingress", "from", worker_labels).contains(&flight_port));
    assert!(ports(scheduler_policy, "ingress", "from", worker_labels).contains(&port));
    for policy in [executors, scheduler_policy] {
        for rule in policy["spec"]["egress"].as_array().unwrap() {
            for to in rule["to"].as_array().unwrap() {
                assert_ne!(to["ipBlock"]["cidr"], "0.0.0.0/0", "no egress beyond the lake");
            }
        }
    }

    // systemd: both units' ExecStart lines, with the example env file, parse, and the executor
    // dials the scheduler unit's port.
    let dir = deploy().join("systemd");
    let sched = unit(&dir.join("switchyard-ballista-scheduler.service"));
    let args = exec_start(&sched["Service"]["ExecStart"][0], "", &BTreeMap::new());
    assert_eq!(args[0], "/usr/local/bin/switchyard");
    assert_eq!(args[1], "ballista-scheduler");
    cli_accepts(&args[1..]).unwrap();
    assert_eq!(sched["Service"]["User"], ["switchyard"]);
    let sched_port = flag(&args, "--listen").unwrap().parse::<std::net::SocketAddr>().unwrap().port();

    let executor = unit(&dir.join("switchyard-executor@.service"));
    let env = env_file(&dir.join("executor-1.env.example"));
    let line = &executor["Service"]["ExecStart"][0];
    let args = exec_start(line, "1", &env);
    assert_eq!(args[0], "/usr/local/bin/switchyard");
    assert_eq!(args[1], "executor");
    cli_accepts(&args[1..]).unwrap();
    // The commented optional flags parse too.
    let mut extra = env;
    extra.insert("SWITCHYARD_EXECUTOR_EXTRA_ARGS".into(), "--slots 8".into());
    cli_accepts(&exec_start(line, "1", &extra)[1..]).unwrap();
    let url = flag(&args, "--scheduler").unwrap();
    let suffix = format!(":{sched_port}");
    assert!(url.starts_with("df://") && url.ends_with(&suffix), "{url} is not the scheduler unit's port");
    let listen: std::net::SocketAddr = flag(&args, "--listen").unwrap().parse().unwrap();
    assert!(!listen.ip().is_unspecified(), "the Flight address is advertised as is");
    assert!(executor["Service"]["EnvironmentFile"].iter().any(|f| f == "/etc/switchyard/executor-%i.env"));
    assert_eq!(executor["Service"]["User"], ["switchyard"]);
    // The VMs' commented settings example names the scheduler the executors dial.
    let settings =
        load_settings(&with_ballista(&read(&dir.join("switchyard.toml"))), &read(&dir.join("egress.yaml")));
    assert_eq!(settings.transform.ballista.expect("[transform.ballista]").scheduler, url);
}
