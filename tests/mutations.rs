//! Planning mutated manifests: whatever a careless edit produces, `plan` reports errors and never
//! panics (the SQL position mapping and the DAG code see every half-broken input here).

use std::path::Path;

use switchyard_config::egress::LoadedPolicy;
use switchyard_config::settings::LoadedSettings;
use switchyard_config::{Inputs, parse_manifest};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "JOIN",
    " ",
    "\n",
    "(",
    ")",
    ",",
    "'",
    "--",
    "WITH x AS (",
    "bronze.claims",
    "\u{e9}",
    ":",
    "|",
    "-",
    "depends_on: [",
    "]",
    "silver.claims",
];

#[test]
fn planning_mutated_manifests_never_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Vec<String> = std::fs::read_dir(root.join("examples/jobs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..1_500 {
        let mut text: Vec<char> = seeds[round % seeds.len()].chars().collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 => {
                    let end = (at + rng.below(12)).min(text.len());
                    text.drain(at..end);
                }
                _ => {
                    let token = TOKENS[rng.below(TOKENS.len())];
                    text.splice(at..at, token.chars());
                }
            }
        }
        let text: String = text.into_iter().collect();
        let path = Path::new("mutated.yaml");
        let (manifest, diagnostics) = parse_manifest(path, text.as_bytes());
        let inputs = Inputs {
            manifests: manifest.into_iter().collect(),
            policy: LoadedPolicy::empty(),
            settings: LoadedSettings::unreadable(),
            diagnostics,
            notes: vec![],
            files: vec![path.to_path_buf()],
        };
        let plan = switchyard_scheduler::plan(&inputs);
        let lines = text.lines().count().max(1) as u32 + 1;
        for e in &plan.errors {
            assert!(e.line >= 1 && e.line <= lines && e.column >= 1, "round {round}: {e:?} outside:\n{text}");
        }
    }
}
