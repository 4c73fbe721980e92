#!/usr/bin/env bash
# pea's main job, as it stands: install prerequisites, build everything, and run a busybox
# container, printing its output. It grows into "bring up a cluster and run a workload" as the
# layers land.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  echo "up.sh: running containers needs root" >&2
  exit 1
fi
tests/scripts/prereqs.sh
cargo build --release --workspace --bins --locked --quiet

work=$(mktemp -d /tmp/pea-up.XXXXXX)
id="pea-up-$$"
runtime=(target/release/pea-runtime --root "$work/state")
cleanup() { "${runtime[@]}" delete --force "$id" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

target/release/pea-fixture bundle "$work/bundle" --hostname pea-up -- \
  /bin/sh -c 'echo "hello from a pea container: hostname $(hostname), pid $$, $(id)"; ls /'
echo "up.sh: running a busybox container with pea-runtime"
"${runtime[@]}" run --bundle "$work/bundle" "$id" </dev/null
