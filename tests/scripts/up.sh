#!/usr/bin/env bash
# pea's main job: install prerequisites, build everything, bring up a 3-node cluster on this host
# with `pea up` (every node a network namespace running pea-agent: pea-shim, pea-kubelet,
# pea-flanneld and pea-proxy in one process, as k3s's agent; node 0 also pea-control, and the add-ons pea-dns and pea-ingress as Deployments;
# the root namespace is never touched), then run a workload through real kubectl: a Deployment spread over the nodes, a
# Service reached by its DNS name from a pod, an Ingress answering from outside the nodes,
# `kubectl logs` and `kubectl exec`. The cluster is left running and its KUBECONFIG printed
# (`target/release/pea down --name pea` removes all of it). Idempotent: a second run finds the
# cluster up and re-applies the workload. Exits 0 only when every step worked; otherwise non-zero,
# naming the step that failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  echo "up.sh: a cluster makes namespaces, mounts and cgroups: run it as root" >&2
  exit 1
fi
current_step="starting"
step() {
  current_step="$*"
  echo "up.sh: $*"
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "up.sh: FAILED at step: $current_step (exit $rc)" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT

step "installing prerequisites"
tests/scripts/prereqs.sh
step "building (release)"
cargo build --release --workspace --bins --locked --quiet

cluster=pea
step "pea up: a 3-node cluster named $cluster"
target/release/pea up --nodes 3 --name "$cluster"
export KUBECONFIG=/var/lib/pea/clusters/$cluster/admin.kubeconfig
kubectl wait --for=condition=Ready nodes --all --timeout=120s

# The workload (tests/scripts/web-workload.yaml) pulls busybox from the cluster's registry.
registry=172.30.0.1:5000
step "workload: Deployment web (3 replicas, one per node), Service web, Ingress web.pea.test"
sed "s|@REGISTRY@|$registry|" tests/scripts/web-workload.yaml | kubectl apply -f -
kubectl rollout status deployment/web --timeout=120s
kubectl get pods -o wide

step "the pods run on several nodes"
nodes=$(kubectl get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
echo "up.sh: web pods are on $nodes nodes"
[ "$nodes" -ge 2 ]

step "a pod reaches the Service by its DNS name (pea-dns + pea-proxy, across the VXLAN overlay)"
# The rollout ends when the pods are Ready; the EndpointSlice and each node's pea-proxy follow
# within a sync (--min-sync-period 1 s, as kube-proxy), so the first answer is waited for (≤ 30 s).
for _ in $(seq 60); do
  if timeout 10 kubectl exec deployment/web -- wget -q -O /dev/null http://web.default.svc.cluster.local/hostname 2>/dev/null; then
    break
  fi
  sleep 0.5
done
for _ in 1 2 3; do
  timeout 20 kubectl exec deployment/web -- wget -q -O - http://web.default.svc.cluster.local/hostname
done

step "the Ingress answers from outside the nodes (the cluster's underlay namespace)"
for _ in 1 2 3; do
  timeout 20 ip netns exec "pea-$cluster" busybox wget -q -O - --header 'Host: web.pea.test' \
    http://172.30.0.10/hostname
done

step "kubectl logs and kubectl exec"
kubectl logs deployment/web --tail=3
kubectl exec deployment/web -- sh -c 'echo "exec in $(hostname): $(id)"'

step "done"
kubectl get nodes -o wide
echo "up.sh: the cluster is up: export KUBECONFIG=$KUBECONFIG  (remove it with: target/release/pea down --name $cluster)"
