#!/usr/bin/env bash
# Installs every Debian package pea's build, tests, benchmarks and main job need.
# Idempotent and quiet: when everything is installed it only asks dpkg (a few ms) and prints nothing.
set -euo pipefail

packages=(
  # build
  protobuf-compiler libprotobuf-dev libc6-dev gcc  # libprotobuf-dev: the well-known .proto files (a Recommends)
  # fixtures and tests
  busybox-static docker-registry skopeo umoci iproute2 nftables iptables util-linux procps
  conntrack  # pea-proxy flushes stale UDP flows with it
  containernetworking-plugins
  # anchors for conformance tests and benchmarks
  runc crun hyperfine strace etcd-server
  # pea-shim's CheckpointContainer answer quotes `criu check` (CRIU fails on this kernel)
  criu
  # drop-in proof for pea-runtime (containerd runc.v2 shim, podman + conmon)
  containerd podman
  # cluster DNS and ingress: checks and benchmark anchors
  bind9-dnsutils dnsperf unbound wrk nginx-light
  # cluster observability: Prometheus scrapes every component (its own service never starts:
  # policy-rc.d below; tests run their own on loopback). systemd: `systemd-analyze verify` of
  # the units `pea install` writes
  prometheus systemd
  # `pea join` fetches cluster-info (kube-public) without credentials, as kubeadm's discovery
  curl
  # pea-dashboard's browser tests (WebDriver) and screenshots; the browser's client
  # certificate goes into an NSS database (certutil, pk12util) from a PKCS#12 file (openssl)
  chromium chromium-driver libnss3-tools openssl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "prereqs: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "prereqs: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  apt-get update -qq >/dev/null
fi
# Services some packages ship (docker-registry, containerd) must not start on install: tests start
# their own instances on free loopback ports.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
