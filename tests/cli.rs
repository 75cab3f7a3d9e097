//! The `switchyard` binary end to end: exit codes, the broken examples, hostile input, schemas.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn switchyard(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .expect("run switchyard");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const EXAMPLE_INPUTS: [&str; 4] =
    ["--settings", "examples/switchyard.toml", "--egress", "examples/egress.yaml"];

fn with_examples<'a>(command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command];
    args.extend(EXAMPLE_INPUTS);
    args.extend(extra);
    args
}

#[test]
fn examples_plan_cleanly_in_the_documented_shape() {
    let run = switchyard(&with_examples("plan", &["--json", "examples/jobs"]), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan.as_object().unwrap().keys().collect::<Vec<_>>(), ["errors", "jobs"]);
    assert_eq!(plan["errors"], serde_json::json!([]));
    let jobs = plan["jobs"].as_array().unwrap();
    assert_eq!(
        jobs.iter().map(|j| j["job"].as_str().unwrap()).collect::<Vec<_>>(),
        ["claims_daily", "legacy_export", "member_events"]
    );
    let task = &jobs[0]["tasks"][0];
    let keys: Vec<&str> = task.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        ["task", "class", "compute", "pool", "egress_ips", "destinations", "depends_on", "reasons"];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(task["reasons"][0], "destination claims-db allows only 203.0.113.10");
    let silver = &jobs[0]["tasks"][3];
    assert_eq!(silver["compute"], "serverless");
    assert_eq!(silver["pool"], serde_json::Value::Null);
    assert_eq!(
        silver["depends_on"],
        serde_json::json!(["ingest_claims", "ingest_providers", "fetch_eligibility"])
    );

    let run = switchyard(&with_examples("validate", &["examples/jobs"]), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("ok: 3 jobs, 9 tasks"), "{}", run.stdout);
}

/// Each file under examples/broken/ is named after the error code it demonstrates.
#[test]
fn every_broken_example_fails_with_its_code_and_location() {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("examples/broken")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let codes = [
        "syntax",
        "schema",
        "duplicate_name",
        "cycle",
        "class_mismatch",
        "no_egress_rule",
        "unplaceable",
        "unknown_identity",
        "unknown_pool",
        "unknown_table",
    ];
    for code in codes {
        assert!(files.iter().any(|f| f.file_stem().unwrap() == code), "no examples/broken/{code}.yaml");
    }
    for file in files {
        let code = file.file_stem().unwrap().to_str().unwrap();
        let rel = format!("examples/broken/{}", file.file_name().unwrap().to_str().unwrap());
        for command in ["validate", "plan"] {
            let run = switchyard(&with_examples(command, &[&rel]), &[]);
            assert_eq!(run.code, 1, "{command} {rel}: {}", run.stderr);
            let located = regex_like_location(&run.stderr, &rel);
            assert!(located, "{command} {rel}: no {rel}:LINE:COL in\n{}", run.stderr);
            assert!(run.stderr.contains(&format!("error[{code}]")), "{command} {rel}:\n{}", run.stderr);
            assert!(run.stderr.contains("hint: "), "{command} {rel}: no hint\n{}", run.stderr);
        }
        let run = switchyard(&with_examples("plan", &["--json", &rel]), &[]);
        let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let errors = plan["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| e["code"] == code && e["line"].as_u64() > Some(0)),
            "{rel}: {errors:?}"
        );
    }
}

fn regex_like_location(text: &str, file: &str) -> bool {
    text.lines().any(|l| {
        let Some(rest) = l.strip_prefix(&format!("{file}:")) else { return false };
        let mut parts = rest.splitn(3, ':');
        matches!(
            (parts.next().map(str::parse::<u32>), parts.next().map(str::parse::<u32>)),
            (Some(Ok(line)), Some(Ok(col))) if line > 0 && col > 0
        )
    })
}

fn scratch(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

fn plan_file(path: &Path) -> (Run, Duration) {
    let start = Instant::now();
    let run = switchyard(&with_examples("validate", &[path.to_str().unwrap()]), &[]);
    (run, start.elapsed())
}

#[test]
fn a_50_mb_file_is_refused_quickly_with_a_clear_error() {
    let mut big = b"job: big\ntasks:\n".to_vec();
    let task = b"  - { name: t, sql: SELECT 1 AS x, sink: { table: a.b } }\n";
    while big.len() < 50 * 1024 * 1024 {
        big.extend_from_slice(task);
    }
    let (_dir, path) = scratch("big.yaml", &big);
    let (run, took) = plan_file(&path);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("error[syntax]: file is 50.0 MiB; input files are limited to 8 MiB"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn ten_thousand_levels_of_nesting_are_an_error_not_a_crash() {
    let flow = "job: deep\ntasks: ".to_owned() + &"[".repeat(10_000) + &"]".repeat(10_000) + "\n";
    let flow_map = "job: deep\ntasks: ".to_owned() + &"{a: ".repeat(10_000) + &"}".repeat(10_000) + "\n";
    // Block nesting costs one more space per level, so 10,000 levels would be a 50 MB file (refused
    // for its size, see above); 2,000 levels (2 MB) reach the depth limit instead.
    let block: String = "job: deep\ntasks:\n".to_owned()
        + &(0..2_000).map(|i| format!("{}k:\n", " ".repeat(i + 1))).collect::<String>();
    for (name, text) in [("flow.yaml", flow), ("flow_map.yaml", flow_map), ("block.yaml", block)] {
        let (_dir, path) = scratch(name, text.as_bytes());
        let (run, _) = plan_file(&path);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains("error[syntax]: nesting is deeper than 64 levels"),
            "{name}: {}",
            run.stderr
        );
    }
}

#[test]
fn binary_garbage_and_empty_files_get_located_errors() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for (name, bytes, expected) in [
        ("garbage.yaml", garbage.as_slice(), "error[syntax]"),
        ("empty.yaml", b"".as_slice(), "error[schema]: file is empty"),
        ("nul.yaml", b"job: a\x00\ntasks: []\n".as_slice(), "error["),
        ("tabs.yaml", b"job: a\ntasks:\n\t- name: x\n".as_slice(), "error[syntax]"),
    ] {
        let (_dir, path) = scratch(name, bytes);
        let (run, _) = plan_file(&path);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
    }
}

#[test]
fn io_and_usage_errors_exit_2() {
    let run = switchyard(&["plan", "--settings", "nope.toml", "examples/jobs"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("settings file nope.toml does not exist"), "{}", run.stderr);
    let run = switchyard(&with_examples("plan", &["examples/no-such-dir"]), &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("examples/no-such-dir"), "{}", run.stderr);
    let run = switchyard(&["plan"], &[]);
    assert_eq!(run.code, 2, "missing PATH is a usage error");
    let run = switchyard(&["plan", "--frobnicate", "x"], &[]);
    assert_eq!(run.code, 2);
}

/// `--select` with a table no task writes is a usage error that lists the tables there are, found
/// before anything starts.
#[test]
fn selecting_an_unknown_table_names_the_known_ones() {
    let run = switchyard(&with_examples("run", &["--select", "silver.claimz", "examples/jobs"]), &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    for needle in
        ["`silver.claimz`", "bronze.claims", "silver.claims", "gold.member_costs", "nothing was run"]
    {
        assert!(run.stderr.contains(needle), "lacks {needle}: {}", run.stderr);
    }
    let run = switchyard(&["submit", "--no-run", "--select", "silver.claims", "examples/jobs"], &[]);
    assert_eq!(run.code, 2, "--no-run with --select is contradictory: {}", run.stderr);
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let run = switchyard(
        &with_examples("validate", &["examples/jobs"]),
        &[("SWITCHYARD__SERVERLESS__MAX_WORKERS", "lots")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("$SWITCHYARD__SERVERLESS__MAX_WORKERS"), "{}", run.stderr);
    let run = switchyard(
        &with_examples("validate", &["examples/jobs"]),
        &[("SWITCHYARD__SERVERLESS__MAX_WORKERS", "3")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn schemas_describe_the_formats() {
    for (kind, must_have) in [
        ("manifest", vec!["job", "tasks", "schedule", "external_tables"]),
        ("egress", vec!["destinations"]),
        (
            "settings",
            vec!["control_plane", "pools", "serverless", "scheduler", "identities", "prices", "lake"],
        ),
    ] {
        let run = switchyard(&["schema", kind], &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let props = schema["properties"].as_object().unwrap_or_else(|| panic!("{kind}: {schema}"));
        for key in must_have {
            assert!(props.contains_key(key), "{kind} schema lacks {key}");
        }
        assert_eq!(schema["additionalProperties"], false, "{kind}: unknown fields must be errors");
    }
    let manifest = switchyard(&["schema", "manifest"], &[]).stdout;
    for needle in ["\"sqlserver\"", "\"kafka\"", "\"https\"", "\"ingest.jdbc\"", "password_env"] {
        assert!(manifest.contains(needle), "manifest schema lacks {needle}");
    }
}

#[test]
fn egress_diff_reports_exactly_the_stranded_and_moved_tasks() {
    let run = switchyard(
        &[
            "egress",
            "diff",
            "tests/fixtures/egress-removed-ip.yaml",
            "--settings",
            "examples/switchyard.toml",
            "--egress",
            "examples/egress.yaml",
            "examples/jobs",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "a stranded task fails the diff:\n{}{}", run.stdout, run.stderr);
    let stranded: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("STRANDED")).collect();
    assert_eq!(stranded.len(), 1, "{}", run.stdout);
    assert!(
        stranded[0].contains("legacy_export/export_legacy") && stranded[0].contains("203.0.113.12"),
        "{}",
        run.stdout
    );
    let moved: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("MOVES")).collect();
    assert_eq!(
        moved,
        ["MOVES     member_events/consume_events  egress-a (203.0.113.10) → egress-b (203.0.113.11)"]
    );
    // Diffing a policy against itself changes nothing.
    let same = switchyard(
        &[
            "egress",
            "diff",
            "examples/egress.yaml",
            "--settings",
            "examples/switchyard.toml",
            "--egress",
            "examples/egress.yaml",
            "examples/jobs",
        ],
        &[],
    );
    assert_eq!(same.code, 0);
    assert!(same.stdout.contains("0 task(s) stranded, 0 other change(s)"), "{}", same.stdout);
    let list = switchyard(
        &[
            "egress",
            "list",
            "--settings",
            "examples/switchyard.toml",
            "--egress",
            "examples/egress.yaml",
            "examples/jobs",
        ],
        &[],
    );
    assert_eq!(list.code, 0);
    assert!(list.stdout.contains("partner-files  files.partner.example.com:443\n    pools:  egress-b (203.0.113.11)\n    tasks:  legacy_export/export_legacy"), "{}", list.stdout);
}

/// `switchyard lake check` against the S3 server that checks credentials
/// (`SWITCHYARD_TEST_S3_AUTH`: moto in IAM mode, with a writer and a read-only user made by
/// scripts/test): the writer passes; a wrong secret fails at `list` as authentication; the
/// read-only user fails at `put` as access, with a hint naming what to grant. No secret printed.
#[test]
fn lake_check_names_the_stage_that_wrong_or_read_only_credentials_fail_at() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name}: run through scripts/test"));
    let endpoint = var("SWITCHYARD_TEST_S3_AUTH");
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("switchyard.toml");
    std::fs::write(&settings, "[lake]\nroot = \"s3://switchyard-auth/cli-check\"\n").unwrap();
    let run = |key: &str| {
        let (id, secret) = key.split_once(':').unwrap();
        let env = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ];
        let out = switchyard(&["lake", "check", "--settings", settings.to_str().unwrap()], &env);
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "a secret was printed");
        out
    };
    let writer = var("SWITCHYARD_TEST_S3_WRITER");
    let ok = run(&writer);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);

    let wrong = run(&format!("{}:not-the-secret", writer.split_once(':').unwrap().0));
    assert_eq!(wrong.code, 1, "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stdout.contains("FAIL  list") && wrong.stdout.contains("authentication"),
        "{}",
        wrong.stdout
    );

    let read_only = run(&var("SWITCHYARD_TEST_S3_READER"));
    assert_eq!(read_only.code, 1, "{}\n{}", read_only.stdout, read_only.stderr);
    assert!(read_only.stdout.contains("ok    list"), "{}", read_only.stdout);
    assert!(
        read_only.stdout.contains("FAIL  put") && read_only.stdout.contains("access"),
        "{}",
        read_only.stdout
    );
    assert!(read_only.stdout.contains("lake check failed at stage `put`"), "{}", read_only.stdout);
    assert!(read_only.stdout.contains("grant"), "{}", read_only.stdout);
}

/// `switchyard lake check` with the lake on the S3 server (`SWITCHYARD_TEST_S3`, started by
/// scripts/test) and only the standard `AWS_*` variables: every stage passes; a dead endpoint
/// fails at `list` as connectivity; a bucket that does not exist fails at `list` as access. A
/// settings file that asks for unsafe renames is refused naming the option.
#[test]
fn lake_check_probes_an_s3_root_with_only_the_standard_aws_variables() {
    let endpoint = std::env::var("SWITCHYARD_TEST_S3").expect("SWITCHYARD_TEST_S3: run through scripts/test");
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("switchyard.toml");
    let write = |root: &str, extra: &str| {
        std::fs::write(&settings, format!("[lake]\nroot = \"{root}\"\n{extra}")).unwrap();
    };
    let aws = |endpoint: &str| -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), endpoint.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing-secret-value".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    };
    let run = |env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        switchyard(&["lake", "check", "--settings", settings.to_str().unwrap()], &env)
    };
    write("s3://switchyard-test/cli-check", "");
    let ok = run(&aws(&endpoint));
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    for stage in ["resolve", "list", "put", "conditional-put", "read", "delete"] {
        assert!(
            ok.stdout.lines().any(|l| l.starts_with("ok") && l.contains(stage)),
            "{stage}:\n{}",
            ok.stdout
        );
    }
    assert!(!ok.stdout.contains("testing-secret-value") && !ok.stderr.contains("testing-secret-value"));

    let dead = run(&aws("http://127.0.0.1:9"));
    assert_eq!(dead.code, 1, "{}\n{}", dead.stdout, dead.stderr);
    assert!(dead.stdout.contains("FAIL  list") && dead.stdout.contains("connectivity"), "{}", dead.stdout);
    assert!(dead.stdout.contains("lake check failed at stage `list`"), "{}", dead.stdout);

    write("s3://switchyard-no-such-bucket-cli/x", "");
    let missing = run(&aws(&endpoint));
    assert_eq!(missing.code, 1, "{}\n{}", missing.stdout, missing.stderr);
    assert!(missing.stdout.contains("access") && missing.stdout.contains("bucket"), "{}", missing.stdout);

    write("s3://switchyard-test/x", "[lake.storage_options]\naws_s3_allow_unsafe_rename = \"true\"\n");
    let refused = run(&aws(&endpoint));
    // Refused while loading the settings, like any invalid settings file: exit 2, located.
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("aws_s3_allow_unsafe_rename") && refused.stderr.contains("switchyard.toml"),
        "{}",
        refused.stderr
    );
}
