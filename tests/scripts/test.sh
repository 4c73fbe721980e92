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

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
cargo build --workspace --all-targets --locked --quiet

guard=$(mktemp /tmp/pea-leakguard.XXXXXX)
trap 'rm -f "$guard"' EXIT
target/debug/pea-leakguard snapshot "$guard"

status=0
cargo test --workspace --locked --no-fail-fast || status=$?
target/debug/pea-leakguard check "$guard" || status=1

echo "test.sh: clean build + all tests took $(( $(date +%s) - start )) s (exit $status)"
exit $status
