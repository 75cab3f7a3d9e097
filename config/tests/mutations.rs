//! A deterministic stand-in for fuzzing that runs in every test run: thousands of mutations of real
//! manifests (bytes flipped, deleted, duplicated, spliced, truncated) must each produce diagnostics
//! or a manifest — never a panic, and every diagnostic must carry a position inside the input.
//! `fuzz/` holds the libFuzzer target for longer, coverage-guided runs.

use std::path::Path;

use switchyard_config::parse_manifest;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b":",
    b"-",
    b"[",
    b"]",
    b"{",
    b"}",
    b"&a",
    b"*a",
    b"\"",
    b"'",
    b"|",
    b">",
    b"\n",
    b"  ",
    b"\t",
    b"#",
    b"~",
    b"kind: kafka",
    b"sql: SELECT",
    b"port: 99999",
    b"\xff",
    b"\xe2\x82",
    b"name: x",
    b"---",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 if !out.is_empty() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + rng.below(64)).min(out.len());
                let chunk = out[start..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn mutated_manifests_never_panic_and_errors_point_inside_the_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seeds = Vec::new();
    for dir in ["jobs", "broken"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            seeds.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let path = Path::new("fuzz.yaml");
    for round in 0..4_000 {
        let seed = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, seed);
        let (manifest, diagnostics) = parse_manifest(path, &input);
        let lines = input.split(|b| *b == b'\n').count() as u32;
        for d in &diagnostics {
            assert!(
                d.location.line >= 1 && d.location.line <= lines.max(1) && d.location.column >= 1,
                "round {round}: {d} is outside the input ({lines} lines):\n{}",
                String::from_utf8_lossy(&input)
            );
            assert!(!d.message.is_empty(), "round {round}: empty message");
        }
        assert!(
            manifest.is_some() || !diagnostics.is_empty(),
            "round {round}: neither a manifest nor an error"
        );
    }
}
