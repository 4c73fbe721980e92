#!/usr/bin/env bash
# pea's main job, as it stands: install prerequisites, build everything, run a busybox container
# with pea-runtime (printing its output), and bring up the control plane's API server
# (pea-control, embedded store, loopback only) for kubectl. It grows into "bring up a cluster and
# run a workload" as the layers land. Idempotent: a pea-control it started before keeps running.
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

# The API server runs on as a background service; a second up.sh finds it by its pid file.
control_dir=/var/lib/pea/control
pidfile=/run/pea/pea-control.pid
mkdir -p /run/pea
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "up.sh: pea-control already running (pid $(cat "$pidfile"))"
else
  setsid target/release/pea-control --data-dir "$control_dir" --listen 127.0.0.1:6443 \
    </dev/null >>/var/log/pea-control.log 2>&1 &
  echo $! >"$pidfile"
  echo "up.sh: started pea-control (pid $!, log /var/log/pea-control.log)"
fi
export KUBECONFIG="$control_dir/admin.kubeconfig"
for _ in $(seq 1 100); do
  if [ -s "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
kubectl get namespaces
echo "up.sh: the API server is up: export KUBECONFIG=$KUBECONFIG; stop it with kill \$(cat $pidfile)"
