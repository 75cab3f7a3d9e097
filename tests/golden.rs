//! Golden tests: manifests, policy and settings in; `plan --json` and the human text out, compared
//! with the checked-in files of each case under `tests/golden/<case>/`.
//!
//! A case holds `args` (the arguments after `switchyard plan`, whitespace-separated, run from the
//! case directory), its inputs, `expected.json` and `expected.txt`. To accept new output after an
//! intended change: `UPDATE_GOLDEN=1 cargo test --test golden`, then review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn switchyard(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("SWITCHYARD__CONTROL_PLANE__LISTEN")
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").is_file())
        .collect();
    cases.sort();
    cases
}

/// Compares `actual` with the file, or rewrites the file under UPDATE_GOLDEN. Returns a failure
/// description instead of panicking so that every case is checked in one run.
fn compare(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        format!(
            "{} differs at line {}:\n  expected: {:?}\n  actual:   {:?}\n--- actual output ---\n{actual}",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff).unwrap_or("<end>"),
            actual.lines().nth(first_diff).unwrap_or("<end>"),
        )
    })
}

#[test]
fn plan_outputs_match_golden_files() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 6, "expected the golden cases, found {cases:?}");
    for case in cases {
        let args_text = std::fs::read_to_string(case.join("args")).unwrap();
        let args: Vec<&str> = args_text.split_whitespace().collect();

        let mut json_args = vec!["plan", "--json"];
        json_args.extend(&args);
        let (code, stdout, _) = switchyard(&case, &json_args);
        let parsed: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{}: plan --json is not JSON ({e}):\n{stdout}", case.display()));
        let errors = parsed["errors"].as_array().map_or(0, Vec::len);
        assert_eq!(code, i32::from(errors > 0), "{}: exit code vs errors", case.display());
        failures.extend(compare(&case.join("expected.json"), &stdout));

        let mut human_args = vec!["plan"];
        human_args.extend(&args);
        let (code, stdout, stderr) = switchyard(&case, &human_args);
        let text = format!("exit: {code}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
        failures.extend(compare(&case.join("expected.txt"), &text));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
