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
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--dir"])
        .arg(dir)
        .env("NO_COLOR", "1")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .expect("run switchyard demo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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

#[test]
fn a_directory_the_demo_did_not_make_is_never_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let (code, _, stderr) = demo(tmp.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("was not made by `switchyard demo`"), "{stderr}");
    assert!(tmp.path().join("precious.txt").exists());
}
