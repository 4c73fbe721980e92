#!/usr/bin/env bash
# pea's main job, as it stands: install prerequisites, build everything, run a busybox container
# with pea-runtime (printing its output), run a two-node pod network (pea-flanneld + pea-cni) in
# network namespaces it makes and removes again, with a pea-runtime container in a pod on one node
# fetching a page from a pod on the other over the VXLAN overlay, run a node with pea-shim (CRI)
# where pea-crictl pulls, runs a pod with a busybox container, reads its log, execs and removes
# it, and bring up the control plane's API server (pea-control, embedded store, loopback only)
# for kubectl. It grows into "bring up a
# cluster and run a workload" as the layers land. Idempotent: a pea-control it started before
# keeps running; the network part leaves nothing behind (the root namespace is never touched).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  echo "up.sh: running containers needs root" >&2
  exit 1
fi
# Each step names itself; on failure the exit trap names the step that failed.
current_step="starting"
step() {
  current_step="$*"
  echo "up.sh: $*"
}
step "installing prerequisites"
tests/scripts/prereqs.sh
step "building (release)"
cargo build --release --workspace --bins --locked --quiet

work=$(mktemp -d /tmp/pea-up.XXXXXX)
id="pea-up-$$"
runtime=(target/release/pea-runtime --root "$work/state")
net=pea-up-$$ # prefix of the network namespaces below
cleanup() {
  # Best effort, and never the script's exit status: errexit is off in here.
  local -
  set +e
  cleanup_shim
  "${runtime[@]}" delete --force "$id" >/dev/null 2>&1 || true
  "${runtime[@]}" delete --force "$id-net" >/dev/null 2>&1 || true
  [ -s "$work/httpd.pid" ] && kill "$(cat "$work/httpd.pid")" 2>/dev/null
  for n in 1 2; do # DEL releases the lease, veth and masquerade table; then the namespaces go
    [ -e "/run/netns/$net-p$n" ] && cni "$n" DEL >/dev/null 2>&1
  done
  for ns in p1 p2 n1 n2; do ip netns del "$net-$ns" 2>/dev/null; done
  # `ip netns add` makes /run/netns a mount point the first time; undo that if it was us.
  if [ "${netns_was_mounted:-1}" = 0 ] && mountpoint -q /run/netns &&
    [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns && rmdir /run/netns
  fi
  rm -rf "$work"
  return 0
}
on_exit() {
  local rc=$?
  cleanup
  if [ "$rc" -ne 0 ]; then
    echo "up.sh: FAILED at step: $current_step (exit $rc)" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
# The pea-shim node: its pods (through CRI while the shim runs), the shim, the registry, the
# namespace and the pods' cgroup parent. Best effort, like cleanup.
cleanup_shim() {
  local -
  set +e
  if [ -s "$work/shim.pid" ]; then
    for p in $(target/release/pea-crictl -r "unix://$work/shim/cri.sock" pods 2>/dev/null | awk '{print $1}'); do
      target/release/pea-crictl -r "unix://$work/shim/cri.sock" rmp "$p" >/dev/null 2>&1
    done
    kill "$(cat "$work/shim.pid")" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$(cat "$work/shim.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$work/shim.pid"
  fi
  [ -s "$work/registry.pid" ] && kill "$(cat "$work/registry.pid")" 2>/dev/null && rm -f "$work/registry.pid"
  [ -e "/run/netns/$net-shim" ] && ip netns del "$net-shim" 2>/dev/null
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h}pea-up-$$" ] && find "${h}pea-up-$$" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}
# pea-cni on node N for its pod pN (CNI_COMMAND is $2), config from stdin as a CNI runtime passes it.
cni() {
  ip netns exec "$net-n$1" env CNI_COMMAND="$2" CNI_CONTAINERID="up-pod$1" \
    CNI_NETNS="/run/netns/$net-p$1" CNI_IFNAME=eth0 CNI_PATH="$PWD/target/release" \
    target/release/pea-cni <"$work/n$1/net.json"
}

target/release/pea-fixture bundle "$work/bundle" --hostname pea-up >/dev/null -- \
  /bin/sh -c 'echo "hello from a pea container: hostname $(hostname), pid $$, $(id)"; ls /'
step "running a busybox container with pea-runtime"
"${runtime[@]}" run --bundle "$work/bundle" "$id" </dev/null

# Two nodes, each a network namespace on one underlay link; pea-flanneld gives each its subnet
# (static config, a shared registry directory standing in for the cluster) and the VXLAN routes to
# the other; pea-cni puts a pod on each node.
step "two-node pod network: pea-flanneld (VXLAN) + pea-cni, in namespaces $net-*"
netns_was_mounted=0
mountpoint -q /run/netns && netns_was_mounted=1
for ns in n1 n2 p1 p2; do ip netns add "$net-$ns"; done
ip -n "$net-n1" link add eth0 type veth peer name eth0 netns "$net-n2"
mkdir -p "$work/registry"
for n in 1 2; do
  mkdir -p "$work/n$n"
  ip -n "$net-n$n" addr add "192.168.77.$n/24" dev eth0
  ip -n "$net-n$n" link set eth0 up
  ip -n "$net-n$n" link set lo up
  cat >"$work/n$n/flanneld.json" <<JSON
{"network": "10.244.0.0/16", "nodeName": "up-node$n", "iface": "eth0",
 "subnetSource": {"static": {"subnet": "10.244.$n.0/24", "registryDir": "$work/registry"}},
 "subnetFile": "$work/n$n/subnet.env"}
JSON
  cat >"$work/n$n/net.json" <<JSON
{"cniVersion": "1.1.0", "name": "pea-up", "type": "pea-cni", "subnetFile": "$work/n$n/subnet.env",
 "ipam": {"dataDir": "$work/n$n/leases"}}
JSON
done
# One reconcile each; node 1 again so it learns node 2, which registered after it.
for n in 1 2 1; do
  ip netns exec "$net-n$n" target/release/pea-flanneld --config "$work/n$n/flanneld.json" --once \
    2>>"$work/flanneld.log" || { cat "$work/flanneld.log" >&2; exit 1; }
done
for n in 1 2; do
  ip4=$(cni "$n" ADD | sed -n 's/.*"address": *"\([0-9.]*\)\/.*/\1/p' | head -1)
  [ -n "$ip4" ] || { echo "up.sh: pea-cni ADD on node $n gave no address" >&2; exit 1; }
  eval "pod$n=$ip4"
  echo "up.sh: node $n: subnet $(sed -n 's/^FLANNEL_SUBNET=//p' "$work/n$n/subnet.env"), pod $ip4"
done
mkdir -p "$work/www" && echo "hello from a pod on node 2 ($pod2)" >"$work/www/index.html"
ip netns exec "$net-p2" busybox httpd -f -p 8080 -h "$work/www" &
echo $! >"$work/httpd.pid"
target/release/pea-fixture bundle "$work/bundle-net" --hostname pea-up-pod1 \
  --netns "/run/netns/$net-p1" -- /bin/sh -c \
  "echo \"pod on node 1: \$(ip -4 -o addr show eth0 | awk '{print \$4}')\";
   for i in 1 2 3 4 5; do timeout 2 wget -q -O - http://$pod2:8080/ && exit 0; sleep 0.2; done; exit 1" \
  >/dev/null
step "a pea-runtime container in the pod on node 1 fetches http://$pod2:8080/ over VXLAN"
"${runtime[@]}" run --bundle "$work/bundle-net" "$id-net" </dev/null

# A node with pea-shim: CRI over a unix socket, in a network namespace of its own (CNI's bridge
# lives there), pulling from a registry on that node's loopback. pea-crictl drives it as the
# kubelet would: pull, run a pod, create and start a container, logs, exec, stop, remove.
step "pea-shim (CRI) on a node in namespace $net-shim: a pod with a busybox container, driven by pea-crictl"
shim_ns="$net-shim"
# (Background programs run under nsenter directly: it execs them, so $! is their pid.)
in_node() { nsenter --net="/run/netns/$shim_ns" "$@"; }
ip netns add "$shim_ns"
ip -n "$shim_ns" link set lo up
target/release/pea-fixture image busybox --layout "$work/img-busybox" --tag v1 >/dev/null
target/release/pea-fixture image pause --layout "$work/img-pause" --tag 3.10 >/dev/null
mkdir -p "$work/shim/net.d" "$work/shim/ipam" "$work/shim/logs" "$work/registry-data"
cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry-data
http:
  addr: 127.0.0.1:5000
YML
nsenter --net="/run/netns/$shim_ns" docker-registry serve "$work/registry.yml" \
  >"$work/registry.log" 2>&1 &
echo $! >"$work/registry.pid"
for _ in $(seq 1 100); do
  in_node busybox wget -q -O /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && break
  sleep 0.1
done
for img in "img-busybox:v1 library/busybox:v1" "img-pause:3.10 pea/pause:3.10"; do
  set -- $img
  in_node skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "oci:$work/${1%%:*}:${1#*:}" "docker://127.0.0.1:5000/$2"
done
cat >"$work/shim/net.d/10-pea.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "pea-up-shim", "plugins": [
  {"type": "pea-cni", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "subnet": "10.88.7.0/24", "dataDir": "$work/shim/ipam"}}]}
JSON
nsenter --net="/run/netns/$shim_ns" target/release/pea-shim --socket "$work/shim/cri.sock" --root "$work/shim/root" \
  --state "$work/shim/state" --runtime-root "$work/shim/runtime" \
  --cni-conf-dir "$work/shim/net.d" --cni-bin-dir "$PWD/target/release:/usr/lib/cni" \
  --insecure-registry 127.0.0.1:5000 --pause-image 127.0.0.1:5000/pea/pause:3.10 \
  >"$work/shim.log" 2>&1 &
echo $! >"$work/shim.pid"
crictl=(target/release/pea-crictl -r "unix://$work/shim/cri.sock")
for _ in $(seq 1 100); do
  "${crictl[@]}" version >/dev/null 2>&1 && break
  sleep 0.1
done
"${crictl[@]}" pull 127.0.0.1:5000/library/busybox:v1
cat >"$work/shim/pod.json" <<JSON
{"metadata": {"name": "hello", "namespace": "default", "uid": "pea-up-hello-$$"},
 "hostname": "hello", "log_directory": "$work/shim/logs",
 "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"]},
 "linux": {"cgroup_parent": "/pea-up-$$/hello",
           "security_context": {"namespace_options": {"pid": 1}}}}
JSON
cat >"$work/shim/web.json" <<'JSON'
{"metadata": {"name": "web"}, "image": {"image": "127.0.0.1:5000/library/busybox:v1"},
 "command": ["/bin/sh", "-c",
   "echo \"hello from a pea-shim pod: $(hostname) $(ip -4 -o addr show eth0 | awk '{print $4}')\"; exec sleep 3600"],
 "log_path": "web/0.log",
 "linux": {"security_context": {"namespace_options": {"pid": 1}}}}
JSON
pod=$("${crictl[@]}" runp "$work/shim/pod.json")
ctr=$("${crictl[@]}" create "$pod" "$work/shim/web.json" "$work/shim/pod.json")
"${crictl[@]}" start "$ctr" >/dev/null
"${crictl[@]}" pods
"${crictl[@]}" ps
for _ in $(seq 1 50); do
  [ -s "$work/shim/logs/web/0.log" ] && break
  sleep 0.1
done
echo "up.sh: the container's log (pea-crictl logs):"
"${crictl[@]}" logs "$ctr"
echo "up.sh: pea-crictl exec $ctr cat /etc/resolv.conf:"
"${crictl[@]}" exec "$ctr" cat /etc/resolv.conf
"${crictl[@]}" stopp "$pod" >/dev/null
"${crictl[@]}" rmp "$pod" >/dev/null

cleanup

# The API server runs on as a background service; a second up.sh finds it by its pid file.
step "the API server (pea-control)"
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
