//! `[serverless] vcpus_per_worker`, which the cost report prices workers with: default 1, set from the
//! file or the environment, refused with its location when not a positive number.

use std::collections::BTreeMap;

use switchyard_config::{LoadOptions, load};

fn loaded(toml: &str, env: &[(&str, &str)]) -> (f64, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    std::fs::write(&file, toml).unwrap();
    let egress = dir.path().join("egress.yaml");
    std::fs::write(&egress, "destinations: []\n").unwrap();
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let options = LoadOptions {
        paths: vec![],
        settings: Some(file),
        egress: Some(egress),
        env: Some(env),
        inline: vec![],
    };
    let inputs = load(&options).unwrap();
    let errors = inputs.diagnostics.iter().map(|d| (d.path.clone(), d.message.clone())).collect();
    (inputs.settings.settings.serverless.vcpus_per_worker, errors)
}

#[test]
fn vcpus_per_worker_defaults_to_one() {
    assert_eq!(loaded("", &[]), (1.0, vec![]));
}

#[test]
fn vcpus_per_worker_from_the_file_and_the_environment() {
    assert_eq!(loaded("[serverless]\nvcpus_per_worker = 0.5\n", &[]), (0.5, vec![]));
    assert_eq!(loaded("", &[("SWITCHYARD__SERVERLESS__VCPUS_PER_WORKER", "2")]).0, 2.0);
}

#[test]
fn vcpus_per_worker_must_be_positive() {
    let (_, errors) = loaded("[serverless]\nvcpus_per_worker = 0\n", &[]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "serverless.vcpus_per_worker");
    assert!(errors[0].1.contains("not a positive number"), "{errors:?}");
}
