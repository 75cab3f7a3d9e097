#!/usr/bin/env bash
# Builds kafka-delta-ingest (KDI, github.com/delta-io/kafka-delta-ingest) for the kafka-ingest
# benchmark's comparison, in release mode with upstream's own profile (fat LTO), under
# target/kdi-build. Its source is a checkout under target/ that is never committed:
# SWITCHYARD_BENCH_KDI_SRC (default target/kdi-src). Prints the binary's absolute path on stdout
# (everything else goes to stderr) and writes `<binary>.source` (commit, features, rustc) beside it.
# Exit 3 when the source is missing (with the commands to get it), 1 when the build fails.
#
# Getting the source (the commit checked with this bench: c6d42def1f65badaac417203591d2d47daf5f0d8,
# 2026-06-22, version 0.4.0):
#   git clone https://github.com/delta-io/kafka-delta-ingest target/kdi-src
#   git -C target/kdi-src checkout c6d42def1f65badaac417203591d2d47daf5f0d8
# or from a git mirror without a work tree (MIRROR = its git directory), no .git in the result:
#   mkdir -p target/kdi-src
#   git --git-dir="$MIRROR" archive c6d42def1f65badaac417203591d2d47daf5f0d8 | tar -x -C target/kdi-src
#   echo c6d42def1f65badaac417203591d2d47daf5f0d8 > target/kdi-src/.kdi-commit
#
# Knobs: SWITCHYARD_BENCH_KDI_FEATURES (default `azure`: upstream's build.rs refuses to build
# without `s3` or `azure`; both only register object stores, the benchmark writes local tables, and
# `azure` compiles far less than `s3`'s AWS SDK + rusoto), SWITCHYARD_BENCH_KDI_LOCK (a Cargo.lock
# to build with: upstream has none), CARGO_PROFILE_RELEASE_LTO (e.g. `thin`, to shorten the link;
# the figures then are not upstream's build).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${SWITCHYARD_BENCH_KDI_SRC:-target/kdi-src}
out=${SWITCHYARD_BENCH_KDI_TARGET:-target/kdi-build}
features=${SWITCHYARD_BENCH_KDI_FEATURES:-azure}
pinned=c6d42def1f65badaac417203591d2d47daf5f0d8
say() { echo "kdi-build: $*" >&2; }

if [ ! -f "$src/Cargo.toml" ]; then
  say "no kafka-delta-ingest source at $src; get it with either:"
  cat >&2 <<EOF
  git clone https://github.com/delta-io/kafka-delta-ingest $src && git -C $src checkout $pinned
or, from a local git mirror MIRROR (a git directory):
  mkdir -p $src && git --git-dir="\$MIRROR" archive $pinned | tar -x -C $src && echo $pinned > $src/.kdi-commit
EOF
  exit 3
fi

# The commit: from the checkout's own .git only (without one, `git -C` would answer for
# Switchyard's repository around target/), else the note the archive commands leave.
if [ -e "$src/.git" ]; then
  commit=$(git -C "$src" rev-parse HEAD)
elif [ -f "$src/.kdi-commit" ]; then
  commit=$(tr -d '[:space:]' <"$src/.kdi-commit")
else
  commit=unknown
fi
[ "$commit" = "$pinned" ] || say "note: source at $commit, the bench was prepared against $pinned"

# System packages: a C toolchain and make for librdkafka's ./configure build (rdkafka-sys without
# cmake-build), pkg-config + OpenSSL headers (rdkafka's `ssl` feature, reqwest's native-tls in
# schema_registry_converter), zlib headers (rdkafka's `libz`). No cmake, SASL or zstd.
missing=()
for p in build-essential pkg-config libssl-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
  else
    say "missing packages: ${missing[*]} (apt-get install -y ${missing[*]})"
    exit 1
  fi
fi
command -v cargo >/dev/null || { say "cargo is not on PATH"; exit 1; }

# Upstream commits no Cargo.lock: take the one given, else resolve one once (the newest versions
# its Cargo.toml allows); it stays in the checkout so later builds are --locked to the same set.
lock=upstream
if [ -n "${SWITCHYARD_BENCH_KDI_LOCK:-}" ]; then
  cp "$SWITCHYARD_BENCH_KDI_LOCK" "$src/Cargo.lock"
  lock="given ($SWITCHYARD_BENCH_KDI_LOCK)"
elif [ ! -f "$src/Cargo.lock" ] || [ -f "$src/.kdi-lock-generated" ]; then
  if [ ! -f "$src/Cargo.lock" ]; then
    say "no Cargo.lock upstream: resolving one in $src/Cargo.lock"
    cargo generate-lockfile --manifest-path "$src/Cargo.toml" >&2
    date -u +%Y-%m-%dT%H:%M:%SZ >"$src/.kdi-lock-generated"
  fi
  lock="generated $(cat "$src/.kdi-lock-generated")"
fi

mkdir -p "$out"
log="$out/kdi-build.log"
build() {
  say "cargo build --release --locked --features $features (CARGO_TARGET_DIR=$out; log $log)"
  CARGO_TARGET_DIR="$out" cargo build --release --locked --features "$features" \
    --manifest-path "$src/Cargo.toml" --bin kafka-delta-ingest 2>&1 | tee "$log" >&2
}
patched=no
if ! build; then
  # KDI's lib.rs and main.rs say #![deny(warnings)] (and main.rs #![deny(deprecated)]): a lint new
  # in this rustc, or a deprecation in a dependency resolved newer than upstream's, stops the
  # build. Drop those two attributes in the checkout (not KDI's behaviour) and try once more.
  if grep -q -E 'deny\((warnings|deprecated)\)' "$log"; then
    say "the build failed on #![deny(warnings)]/#![deny(deprecated)]; dropping them in $src and retrying"
    sed -i -E '/^#!\[deny\((warnings|deprecated)\)\]/d' "$src/src/lib.rs" "$src/src/main.rs"
    patched="deny(warnings) and deny(deprecated) removed"
    build || { say "build failed; see $log"; exit 1; }
  else
    say "build failed; see $log"
    exit 1
  fi
fi

bin="$(cd "$out/release" && pwd)/kafka-delta-ingest"
[ -x "$bin" ] || { say "no binary at $bin"; exit 1; }
rustc_version=$(rustc -V 2>/dev/null || echo unknown)
{
  echo "kafka-delta-ingest $commit"
  echo "features=$features"
  echo "lock=$lock"
  echo "rustc=\"$rustc_version\""
  [ "$patched" = no ] || echo "patched=\"$patched\""
  [ -z "${CARGO_PROFILE_RELEASE_LTO:-}" ] || echo "lto=$CARGO_PROFILE_RELEASE_LTO"
} >"$bin.source"
echo "$bin"
