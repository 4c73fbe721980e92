#!/usr/bin/env bash
# pea's whole test suite, as root: prerequisites, format and lint checks, a clean build, every
# test (privileged ones for real), then the leak guard. Prints the total time at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
# A one-shot clean build gains nothing from incremental state, which costs gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
start=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the suite creates namespaces, mounts and cgroups for real: run it as root" >&2
  exit 1
fi
tests/scripts/prereqs.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo-nextest is missing (it runs the tests): cargo install cargo-nextest --locked" >&2
  exit 1
fi

cargo fmt --all --check
# One compile serves both clippy and the tests: clippy-driver compiles the workspace's crates
# (what `cargo clippy` does, in check mode) with `-D warnings`, while dependencies go through
# plain rustc. The same settings stay exported so nextest and cargo test reuse these artifacts.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
cargo build --workspace --all-targets --locked --quiet

guard=$(mktemp /tmp/pea-leakguard.XXXXXX)
trap 'rm -f "$guard"' EXIT
target/debug/pea-leakguard snapshot "$guard"

status=0
# Test binaries run side by side (.config/nextest.toml: four at a time; the eviction tests alone,
# one whole cluster at a time); doc tests are not nextest's, so cargo runs them.
cargo nextest run --workspace --locked --profile ci --no-fail-fast || status=$?
cargo test --workspace --locked --doc --quiet || status=$?
target/debug/pea-leakguard check "$guard" || status=1

echo "test.sh: clean build + all tests took $(( $(date +%s) - start )) s (exit $status)"
exit $status
