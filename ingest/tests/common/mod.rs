//! What every ingestion test needs: a gateway dialer for one destination, a lake in a temporary
//! directory, a context, and a progress recorder.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use switchyard_config::egress::EgressPolicy;
use switchyard_config::value::TableName;
use switchyard_gateway::audit::AuditSink;
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_ingest::{Context, Progress};
use switchyard_lake::Lake;
use switchyard_lake::arrow::record_batch::RecordBatch;

/// An egress policy from YAML text.
pub fn policy(yaml: &str) -> EgressPolicy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("egress.yaml");
    std::fs::write(&path, yaml).unwrap();
    let inputs = switchyard_config::load(&switchyard_config::LoadOptions {
        egress: Some(path),
        env: Some(Default::default()),
        ..Default::default()
    })
    .unwrap();
    inputs.policy.policy
}

/// A dialer leaving from `egress_ip` that allows `host:port` only.
pub fn dialer(host: &str, port: u16, egress_ip: &str) -> Dialer {
    let policy = policy(&format!(
        "destinations:\n  - {{ name: source, host: \"{host}\", ports: [{port}], egress_ips: [{egress_ip}] }}\n"
    ));
    let (audit, _) = AuditSink::channel();
    Dialer::new(
        Enforcer::new(policy, egress_ip.parse().unwrap(), Mode::Enforce),
        Arc::new(Identities::default()),
        audit,
        DialerConfig::default(),
    )
}

pub fn context(lake: &Lake, dialer: Dialer, task: &str, run: i64) -> Context {
    Context { lake: lake.clone(), dialer, job: "test".into(), task: task.into(), run, continuous: false }
}

/// Commits seen, as (table, version, rows).
#[derive(Debug, Default)]
pub struct Recorder {
    pub commits: Mutex<Vec<(String, u64, u64)>>,
    pub rows: Mutex<u64>,
}

impl Progress for Recorder {
    fn rows(&self, total: u64, _per_second: f64) {
        *self.rows.lock().unwrap() = total;
    }

    fn committed(&self, table: &TableName, version: u64, rows: u64) {
        self.commits.lock().unwrap().push((table.to_string(), version, rows));
    }
}

pub fn table(name: &str) -> TableName {
    name.parse().unwrap()
}

pub fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// All values of an Int64 column.
pub fn int64s(batches: &[RecordBatch], column: &str) -> Vec<Option<i64>> {
    use switchyard_lake::arrow::array::{Array, Int64Array};
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(column).unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    out
}
