//! Helpers the ingestion benchmarks share: medians and number formatting, folder sizes, a
//! gateway dialer for one source, progress that goes nowhere, unique names.

use std::path::Path;
use std::sync::Arc;

use switchyard_config::value::TableName;
use switchyard_gateway::audit::AuditSink;
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_ingest::Progress;

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// `1234567` → `1,234,567`.
pub(crate) fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes of the files under `dir`.
pub(crate) fn size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A gateway dialer leaving from 127.0.0.1 whose policy allows `host:port` only.
pub(crate) fn dialer(host: &str, port: u16) -> Dialer {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("egress.yaml");
    std::fs::write(
        &path,
        format!(
            "destinations:\n  - {{ name: source, host: \"{host}\", ports: [{port}], egress_ips: [127.0.0.1] }}\n"
        ),
    )
    .expect("write the egress policy");
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .expect("egress policy");
    let (audit, _) = AuditSink::channel();
    Dialer::new(
        Enforcer::new(inputs.policy.policy, "127.0.0.1".parse().expect("IP"), Mode::Enforce),
        Arc::new(Identities::default()),
        audit,
        DialerConfig::default(),
    )
}

/// Progress goes nowhere: the summary has the counts.
#[derive(Debug)]
pub(crate) struct Quiet;

impl Progress for Quiet {
    fn rows(&self, _total: u64, _per_second: f64) {}
    fn committed(&self, _table: &TableName, _version: u64, _rows: u64) {}
}

/// `prefix-PID-NANOS`: a topic, group or table name no earlier run used.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}
