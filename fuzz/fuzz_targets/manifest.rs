//! Coverage-guided fuzzing of manifest reading: any bytes must give a manifest or located
//! diagnostics, never a panic, a hang or an unbounded allocation.
//!
//! Run: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run manifest -- -max_total_time=60`
//! (seeds: `mkdir -p corpus/manifest && cp ../examples/jobs/*.yaml ../examples/broken/*.yaml corpus/manifest/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (manifest, diagnostics) = switchyard_config::parse_manifest(std::path::Path::new("fuzz.yaml"), data);
    assert!(manifest.is_some() || !diagnostics.is_empty());
    for d in &diagnostics {
        assert!(d.location.line >= 1 && d.location.column >= 1, "{d}");
    }
});
