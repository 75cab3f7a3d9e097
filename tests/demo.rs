//! `switchyard demo` end to end, as a newcomer runs it: the binary with nothing but a directory,
//! then the Delta tables it leaves behind read back with the lake crate. The partner feed is
//! deterministic (750 claims in 3 pages: 6 with a negative amount, 5 without a member, 3 with an
//! unexpected status, each row breaking at most one rule), so the tables are checked exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use switchyard_config::value::TableName;
use switchyard_lake::Lake;
use switchyard_lake::arrow::array::{Array, AsArray, RecordBatch};
use switchyard_lake::arrow::compute::cast;
use switchyard_lake::arrow::datatypes::{DataType, Float64Type, Int64Type};

const CLAIMS: usize = 750;
const NEGATIVE: usize = 6;
const NO_MEMBER: usize = 5;

fn demo(dir: &Path) -> (i32, String, String) {
    let (code, stdout, stderr, _) = demo_with(dir, &[]);
    (code, stdout, stderr)
}

/// Runs the demo; also returns its pid (network namespaces it makes are named after it).
fn demo_with(dir: &Path, more: &[&str]) -> (i32, String, String, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--dir"])
        .arg(dir)
        .args(more)
        .env("NO_COLOR", "1")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run switchyard demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("run switchyard demo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    )
}

async fn table(lake: &Lake, name: &str) -> Vec<RecordBatch> {
    let table: TableName = name.parse().unwrap();
    lake.read(&table, None).await.unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// A column as f64 values (None for nulls), whatever numeric type the writer chose.
fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(
            b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}")),
            &DataType::Float64,
        )
        .unwrap();
        out.extend(c.as_primitive::<Float64Type>().iter());
    }
    out
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column_by_name(column).unwrap(), &DataType::Int64).unwrap();
        out.extend(c.as_primitive::<Int64Type>().iter());
    }
    out
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
        out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_owned)));
    }
    out
}

fn nulls(batches: &[RecordBatch], column: &str) -> usize {
    batches.iter().map(|b| b.column_by_name(column).unwrap().null_count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tells_the_healthcare_story_and_leaves_checked_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (code, stdout, stderr) = demo(&dir);
    assert_eq!(code, 0, "switchyard demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");

    // The summary shows where things ran and the denial as the control plane audited it.
    assert!(stdout.contains("dedicated partner-egress (127.0.0.2)"), "{stdout}");
    assert!(stdout.contains("serverless_fetch_attempt/fetch_claims"), "{stdout}");
    assert!(stdout.contains("denied (serverless_no_egress)"), "{stdout}");
    assert!(stdout.contains("from serverless"), "{stdout}");
    assert!(stdout.contains("valid_member (quarantine) 5"), "{stdout}");
    assert!(stdout.contains("positive_amount (drop) 6"), "{stdout}");
    assert!(stdout.lines().last().unwrap_or("").starts_with("ok"), "{stdout}");

    check_tables(&dir).await;
}

/// The tables the demo leaves: bronze the whole feed, silver without the bad rows, the
/// quarantine, gold's totals equal to silver's.
async fn check_tables(dir: &Path) {
    let lake = Lake::new(dir.join("lake").to_str().unwrap()).unwrap();
    let bronze = table(&lake, "bronze.claims").await;
    assert_eq!(rows(&bronze), CLAIMS, "bronze holds the whole feed, bad rows included");
    assert_eq!(nulls(&bronze, "member_id"), NO_MEMBER);

    let silver = table(&lake, "silver.claims").await;
    assert_eq!(rows(&silver), CLAIMS - NEGATIVE - NO_MEMBER);
    assert_eq!(nulls(&silver, "member_id"), 0, "rows without a member are quarantined");
    assert!(floats(&silver, "amount").iter().all(|a| a.unwrap() >= 0.0), "negative amounts are dropped");

    let quarantine = table(&lake, "silver.claims__quarantine").await;
    assert_eq!(rows(&quarantine), NO_MEMBER);
    assert_eq!(nulls(&quarantine, "member_id"), NO_MEMBER);

    // Gold: one row per provider, totals equal to silver's.
    let mut expected: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for (p, a) in strings(&silver, "provider").into_iter().zip(floats(&silver, "amount")) {
        let e = expected.entry(p.unwrap()).or_default();
        e.0 += 1;
        e.1 += a.unwrap();
    }
    let gold = table(&lake, "gold.provider_totals").await;
    assert_eq!(rows(&gold), expected.len());
    let got = strings(&gold, "provider")
        .into_iter()
        .zip(ints(&gold, "claims"))
        .zip(floats(&gold, "total_amount"))
        .map(|((p, c), t)| (p.unwrap(), (c.unwrap(), t.unwrap())));
    for (provider, (claims, total)) in got {
        let (want_claims, want_total) = expected[&provider];
        assert_eq!(claims, want_claims, "{provider}");
        assert!((total - want_total).abs() < 1e-6, "{provider}: {total} vs {want_total}");
    }
}

/// `switchyard demo --netns`: the same pipeline with the partner behind a real firewall in its
/// own network namespace, the node holding 203.0.113.10 on a real interface, workers with no
/// route out. Needs root, iproute2 and nftables (scripts/test provides them and makes this run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_in_network_namespaces() {
    switchyard_netns::require_netns!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (code, stdout, stderr, pid) = demo_with(&dir, &["--netns"]);
    assert_eq!(code, 0, "switchyard demo --netns failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("dedicated partner-egress (203.0.113.10)"), "{stdout}");
    assert!(stdout.contains("workers' routes    none"), "{stdout}");
    assert!(stdout.contains("direct connect     failed (access)"), "{stdout}");
    assert!(stdout.contains("Network is unreachable"), "{stdout}");
    assert!(stdout.contains("sources seen: 203.0.113.10 ("), "{stdout}");
    assert!(stdout.lines().last().unwrap_or("").starts_with("ok"), "{stdout}");
    check_tables(&dir).await;
    // The demo's namespaces are gone with it.
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.lines().any(|l| l.starts_with(&format!("sy-{pid}-"))), "left behind: {listed}");
}

#[test]
fn a_directory_the_demo_did_not_make_is_never_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let (code, _, stderr) = demo(tmp.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("was not made by `switchyard demo`"), "{stderr}");
    assert!(tmp.path().join("precious.txt").exists());
}
