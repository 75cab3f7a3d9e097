//! `/metrics` against real stores (SQLite and PostgreSQL) with real history: task runs finished,
//! failed and lost, egress decisions, commits, expectation counts. The text is read back by a
//! small Prometheus text-format parser (families, types, label syntax, histogram consistency) and,
//! when `promtool` is installed (Debian: `apt-get install --no-install-recommends prometheus`), by
//! `promtool check metrics` as well.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestDb, engine, job, node, task, worker};
use switchyard_scheduler::api::types::{CertificateExpiry, CommitRecord};
use switchyard_scheduler::engine::{AuditRecord, Outcome, Report};
use switchyard_scheduler::plan::Compute;

/// One parsed exposition: series (`name{sorted labels}`) → value, and family name → type.
#[derive(Debug, Default)]
struct Parsed {
    series: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Parsed {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&key(name, labels)).copied()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict reader of the Prometheus text format 0.0.4 as Switchyard writes it. Panics on the
/// first problem, naming the line.
fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut helped = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", n + 1);
        assert!(!line.is_empty(), "empty {at}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text, {at}"));
            assert!(valid_name(name) && !help.trim().is_empty(), "{at}");
            assert!(!helped.contains(&name.to_owned()), "family {name} twice, {at}");
            helped.push(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{at}"));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{at}");
            assert!(parsed.types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice, {at}");
            current = Some(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment, {at}");
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value, {at}"),
        };
        assert!(valid_name(name), "bad metric name, {at}");
        let family = current.as_deref().unwrap_or_else(|| panic!("sample before any TYPE, {at}"));
        let kind = &parsed.types[family];
        let suffix_ok = name == family
            || (kind == "histogram"
                && [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                    .contains(&name.to_owned()));
        assert!(suffix_ok, "sample {name} outside its family {family}, {at}");
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let Some(&(start, c)) = chars.peek() else { panic!("unterminated labels, {at}") };
                if c == '}' {
                    chars.next();
                    rest = &body[start + 1..];
                    break;
                }
                if c == ',' {
                    chars.next();
                    continue;
                }
                let eq = body[start..].find('=').unwrap_or_else(|| panic!("label without =, {at}")) + start;
                let label = &body[start..eq];
                assert!(valid_name(label) && !label.starts_with("__"), "bad label name {label:?}, {at}");
                assert_eq!(&body[eq + 1..eq + 2], "\"", "label value not quoted, {at}");
                while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated value, {at}"));
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?}, {at}"),
                        },
                        '\n' => panic!("raw newline in a label value, {at}"),
                        c => value.push(c),
                    }
                }
                assert!(!labels.iter().any(|(k, _)| k == label), "label {label} twice, {at}");
                labels.push((label.to_owned(), value));
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value, {at}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v:?}, {at}")),
        };
        if kind == "counter" {
            assert!(value >= 0.0, "negative counter, {at}");
        }
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let series = key(name, &pairs);
        assert!(parsed.series.insert(series.clone(), value).is_none(), "series {series} twice, {at}");
    }
    for (family, kind) in &parsed.types {
        assert!(helped.contains(family), "{family} has no HELP");
        if kind != "histogram" {
            continue;
        }
        // Buckets are cumulative and the +Inf bucket equals the count, for each label set.
        let bucket = format!("{family}_bucket{{");
        let mut sets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, value) in &parsed.series {
            if let Some(labels) = series.strip_prefix(&bucket) {
                let labels = labels.trim_end_matches('}');
                let (le, others): (Vec<&str>, Vec<&str>) =
                    labels.split(',').partition(|l| l.starts_with("le="));
                let le = le[0].trim_start_matches("le=").trim_matches('"');
                let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                sets.entry(others.join(",")).or_default().push((le, *value));
            }
        }
        assert!(!sets.is_empty(), "histogram {family} has no buckets");
        for (labels, mut buckets) in sets {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{{{labels}}} not cumulative");
            let (last_le, last) = *buckets.last().unwrap();
            assert!(last_le.is_infinite(), "{family}{{{labels}}} has no +Inf bucket");
            let count = parsed.series[&format!("{family}_count{{{labels}}}")];
            assert_eq!(last, count, "{family}{{{labels}}}: +Inf bucket != count");
            assert!(parsed.series.contains_key(&format!("{family}_sum{{{labels}}}")));
        }
    }
    parsed
}

fn report(attempt: i64, outcome: Outcome, details: Option<serde_json::Value>) -> Report {
    Report { attempt, outcome, exit_code: None, error_class: None, message: None, log_tail: None, details }
}

fn audit(destination: &str, verdict: &str, count: i64, bytes: i64) -> AuditRecord {
    AuditRecord {
        at: switchyard_scheduler::store::now_ms(),
        egress_ip: "127.0.0.2".into(),
        task: Some("pipe/ingest".into()),
        destination: destination.into(),
        verdict: verdict.into(),
        code: (verdict != "allowed").then(|| "denied_by_policy".into()),
        rule: None,
        reason: None,
        count,
        bytes,
        duration_ms: 0,
    }
}

/// A run where ingestion succeeds on a node, a transform drops and warns on a worker, and a second
/// job's task loses its node once and then fails.
async fn history(db: &TestDb) -> switchyard_scheduler::engine::Engine {
    let e = engine(db, Duration::from_millis(600)).await;
    let ingest = task("ingest", Compute::Dedicated, &["egress-a"], &[]);
    let mut silver = task("silver", Compute::Serverless, &[], &["ingest"]);
    silver.class = "transform".into();
    e.upsert_jobs(&[
        job("pipe", vec![ingest, silver]),
        job("other", vec![task("flaky", Compute::Dedicated, &["egress-a"], &[])]),
    ])
    .await
    .unwrap();
    e.trigger("pipe").await.unwrap();
    e.trigger("other").await.unwrap();
    let n1 = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    let leases = e.lease(&n1, 4, Duration::ZERO).await.unwrap();
    assert_eq!(leases.len(), 2);
    let ingest = leases.iter().find(|l| l.spec.name == "ingest").unwrap().attempt;
    // n1 reports the ingest and goes silent: `flaky` is lost with it.
    e.record_commits(
        &n1,
        &[CommitRecord { attempt: ingest, table: "bronze.claims".into(), version: 1, rows: 750 }],
    )
    .await
    .unwrap();
    e.complete(&n1, &[report(ingest, Outcome::Succeeded, None)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let n2 = e.register(&node("egress-a", "127.0.0.2")).await.unwrap().node_id;
    assert_eq!(e.reclaim_expired().await.unwrap(), 1);
    let flaky = e.lease(&n2, 4, Duration::ZERO).await.unwrap().remove(0);
    e.complete(&n2, &[report(flaky.attempt, Outcome::Failed, None)]).await.unwrap();
    let w = e.register(&worker()).await.unwrap().node_id;
    let silver = e.lease(&w, 4, Duration::ZERO).await.unwrap().remove(0);
    let details = serde_json::json!({"transform": {
        "refresh": {"mode": "full", "reason": "first run"},
        "input_versions": {"bronze.claims": 1},
        "output": {"table": "silver.claims", "version": 0, "rows": 736},
        "expectations": [
            {"name": "positive_amount", "action": "drop", "check": "amount >= 0", "violations": 6},
            {"name": "known \"status\"", "action": "warn", "check": "status IN ('a')", "violations": 3}
        ],
        "quarantined": 5
    }});
    e.record_commits(
        &w,
        &[CommitRecord { attempt: silver.attempt, table: "silver.claims".into(), version: 0, rows: 736 }],
    )
    .await
    .unwrap();
    e.complete(&w, &[report(silver.attempt, Outcome::Succeeded, Some(details))]).await.unwrap();
    e.record_audit(&[
        audit("api.partner.example.com:443", "allowed", 3, 4096),
        audit("evil.example.com:443", "denied", 2, 0),
    ])
    .await
    .unwrap();
    let in_ten_days = switchyard_scheduler::store::now_ms() / 1000 + 10 * 86_400;
    e.record_certificates(
        &n2,
        &[CertificateExpiry { identity: "partner-prod".into(), not_after: in_ten_days }],
    )
    .await
    .unwrap();
    e.heartbeat(&n2, &[], &[]).await.unwrap();
    e.heartbeat(&w, &[], &[]).await.unwrap();
    e
}

async fn metrics_scrape_cleanly(db: &TestDb) {
    let e = history(db).await;
    let text = e.views().metrics().await.unwrap();
    let m = parse(&text);
    let tasks = |class: &str, compute: &str, outcome: &str| {
        m.get(
            "switchyard_scheduler_tasks_total",
            &[("class", class), ("compute", compute), ("outcome", outcome)],
        )
    };
    assert_eq!(tasks("ingest.api", "dedicated", "succeeded"), Some(1.0), "{text}");
    assert_eq!(tasks("ingest.api", "dedicated", "failed"), Some(1.0), "{text}");
    assert_eq!(tasks("transform", "serverless", "succeeded"), Some(1.0), "{text}");
    assert_eq!(m.types["switchyard_scheduler_task_duration_seconds"], "histogram");
    let count = m.get(
        "switchyard_scheduler_task_duration_seconds_count",
        &[("class", "ingest.api"), ("compute", "dedicated")],
    );
    assert_eq!(count, Some(2.0), "{text}");
    // `flaky` took longer than 0.5 s (its first node was lost); `ingest` less.
    let fast = m.get(
        "switchyard_scheduler_task_duration_seconds_bucket",
        &[("class", "ingest.api"), ("compute", "dedicated"), ("le", "0.5")],
    );
    assert_eq!(fast, Some(1.0), "{text}");
    assert_eq!(m.get("switchyard_scheduler_lease_losses_total", &[("compute", "dedicated")]), Some(1.0));
    assert_eq!(m.get("switchyard_scheduler_lease_losses_total", &[("compute", "serverless")]), Some(0.0));
    assert_eq!(m.get("switchyard_serverless_workers_live", &[]), Some(1.0), "{text}");
    assert_eq!(m.get("switchyard_scheduler_nodes_live", &[]), Some(2.0), "{text}");
    assert_eq!(m.get("switchyard_scheduler_pool_nodes_live", &[("pool", "egress-a")]), Some(1.0));
    assert_eq!(m.get("switchyard_scheduler_pool_nodes_live", &[("pool", "egress-b")]), Some(0.0));
    let decisions = |d: &str, o: &str| {
        m.get("switchyard_gateway_egress_decisions_total", &[("destination", d), ("outcome", o)])
    };
    assert_eq!(decisions("api.partner.example.com:443", "allowed"), Some(3.0));
    assert_eq!(decisions("evil.example.com:443", "denied"), Some(2.0));
    assert_eq!(
        m.get("switchyard_gateway_egress_bytes_total", &[("destination", "api.partner.example.com:443")]),
        Some(4096.0)
    );
    assert_eq!(m.get("switchyard_ingest_rows_total", &[("table", "bronze.claims")]), Some(750.0));
    assert_eq!(m.get("switchyard_ingest_bytes_total", &[("egress_ip", "127.0.0.2")]), Some(4096.0));
    assert_eq!(m.get("switchyard_transform_rows_total", &[("table", "silver.claims")]), Some(736.0));
    let violations = |name: &str, action: &str| {
        m.get(
            "switchyard_transform_expectation_violations_total",
            &[("job_name", "pipe"), ("task", "silver"), ("expectation", name), ("action", action)],
        )
    };
    assert_eq!(violations("positive_amount", "drop"), Some(6.0));
    assert_eq!(violations("known \"status\"", "warn"), Some(3.0), "label values are escaped: {text}");
    let expiry = m
        .get(
            "switchyard_gateway_certificate_expiry_seconds",
            &[("node", &node_of(&text)), ("pool", "egress-a"), ("identity", "partner-prod")],
        )
        .unwrap();
    assert!((10.0 * 86_400.0 - 5.0..=10.0 * 86_400.0).contains(&expiry), "{expiry}");
    promtool(&text);
    e.store().close().await;
}
both_stores!(metrics_scrape, metrics_scrape_cleanly);

fn node_of(text: &str) -> String {
    let line =
        text.lines().find(|l| l.starts_with("switchyard_gateway_certificate_expiry_seconds{")).unwrap();
    line.split("node=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

/// `promtool check metrics` (its parser and lint rules), when it is installed.
fn promtool(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "promtool not run ({e}); install it with `apt-get install --no-install-recommends prometheus`"
            );
            return;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
