#!/usr/bin/env bash
# The Vagrantfile's topology without Vagrant: 1 control plane + 2 workers, Debian 12 VMs under
# qemu with software emulation (TCG; KVM guests hang on pea's build host), wired with tap devices
# on a bridge inside a network namespace this script makes (the root namespace's addresses,
# routes and firewall are never touched). pea is installed from this build's release binaries
# with `pea install` (control plane), `pea token create` and `pea join` (workers), driven over
# ssh from the namespace; then the main job's workload runs across the VMs.
#
#   vagrant/qemu-cluster.sh run      # up + workload + down (default; exits non-zero naming the step)
#   vagrant/qemu-cluster.sh up       # up + workload, leaves the VMs running
#   vagrant/qemu-cluster.sh down     # removes every VM, tap, bridge, netns, process and file it made
#   vagrant/qemu-cluster.sh ssh NAME [CMD...]   # a shell on pea-cp, pea-w1 or pea-w2
#
# Prerequisites: vagrant/vm-prereqs.sh (qemu-system-x86, debootstrap, e2fsprogs); the release
# binaries (cargo build --release, see README "VMs"). The Debian root filesystem is built once with
# debootstrap from the apt mirror and cached in /var/cache/pea-vm (PEA_VM_CACHE); a re-run only
# rebuilds the disk image with the current binaries.
# Environment: PEA_VM_MEM (MiB per VM, default 1792), PEA_VM_WORKERS (default 2),
# PEA_VM_MIRROR (default: the first deb.debian.org URI of apt's sources), PEA_VM_TIMEOUT_SCALE
# (multiplies every wait; default 1), PEA_VM_BIN_DIR (the pea binaries; default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

cache=${PEA_VM_CACHE:-/var/cache/pea-vm}
run=/run/pea-vm                 # pids, sockets, per-VM disks (overlays), logs
ns=pea-vm                       # the network namespace
br=pea-vm-br
subnet=10.77.0
gw=$subnet.1                    # the bridge, the registry, the "outside" of the cluster
mem=${PEA_VM_MEM:-1792}
workers=${PEA_VM_WORKERS:-2}
scale=${PEA_VM_TIMEOUT_SCALE:-1}
suite=bookworm
registry=$gw:5000
bins=(pea pea-control pea-shim pea-runtime pea-monitor pea-kubelet pea-cni pea-flanneld pea-proxy
      pea-dns pea-ingress)
bin_dir=${PEA_VM_BIN_DIR:-target/release}
t0=$(date +%s)

names=(pea-cp)
for i in $(seq 1 "$workers"); do names+=("pea-w$i"); done
ip_of() { # NAME -> address
  case $1 in
    pea-cp) echo "$subnet.10" ;;
    pea-w*) echo "$subnet.$((10 + ${1#pea-w}))" ;;
    *) echo "qemu-cluster: unknown VM $1" >&2; return 1 ;;
  esac
}

current_step=starting
step_start=$t0
step() {
  local now; now=$(date +%s)
  if [ "$current_step" != starting ]; then
    echo "qemu-cluster: [$((now - step_start)) s] done: $current_step" | tee -a "$run/timings" 2>/dev/null || true
  fi
  current_step="$*"; step_start=$now
  echo "qemu-cluster: $(date -u +%H:%M:%S) [+$((now - t0)) s] $*"
}
die() { echo "qemu-cluster: $*" >&2; exit 1; }

# wait_until SECONDS WHAT CMD...: bounded polling (every 3 s).
wait_until() {
  local limit=$(( $1 * scale )) what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "qemu-cluster: timed out after ${limit} s waiting for $what" >&2; return 1; }
    sleep 3
  done
}

in_ns() { ip netns exec "$ns" "$@"; }
key=$cache/id_ed25519
vm_ssh() { # NAME CMD...: runs CMD in the VM as root, for at most ssh_limit (default 300) s
  local name=$1; shift
  timeout $(( ${ssh_limit:-300} * scale )) ip netns exec "$ns" ssh -q -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=10 -o ServerAliveInterval=10 -o ServerAliveCountMax=6 -o LogLevel=ERROR \
    "root@$(ip_of "$name")" "$@"
}

mirror() {
  if [ -n "${PEA_VM_MIRROR:-}" ]; then echo "$PEA_VM_MIRROR"; return; fi
  local m
  m=$(grep -hoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# --- the Debian root filesystem (cached) ----------------------------------------------------
# Packages a node needs: systemd, ssh for the driver, the kernel (its initrd has virtio), and
# what pea's programs call: ip, nft, iptables, conntrack (pea-proxy), curl (pea join),
# the CNI loopback plugin.
packages=systemd-sysv,udev,kmod,dbus,openssh-server,iproute2,nftables,iptables,conntrack,curl,ca-certificates,procps,util-linux,mount,e2fsprogs,linux-image-amd64,containernetworking-plugins,busybox-static,less

rootfs() {
  local dir=$cache/rootfs
  if [ -e "$cache/rootfs.done" ]; then
    echo "qemu-cluster: cached Debian $suite root filesystem in $dir"
    return
  fi
  mkdir -p "$cache"
  rm -rf "$dir" "$cache/rootfs.tmp"
  [ -e "$key" ] || ssh-keygen -q -t ed25519 -N '' -C pea-vm -f "$key"
  echo "qemu-cluster: debootstrap $suite from $(mirror) into $dir (once; a few minutes)"
  # debootstrap mounts proc/sys inside the target while it runs and unmounts them itself.
  debootstrap --variant=minbase --include="$packages" "$suite" "$cache/rootfs.tmp" "$(mirror)" \
    > "$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log"; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  local r=$cache/rootfs.tmp
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  echo "/dev/vda / ext4 rw,discard,errors=remount-ro 0 1" > "$r/etc/fstab"
  : > "$r/etc/hostname"  # set per VM from the kernel command line (systemd.hostname=)
  echo "nameserver $gw" > "$r/etc/resolv.conf"
  install -d -m 0700 "$r/root/.ssh"
  install -m 0600 "$key.pub" "$r/root/.ssh/authorized_keys"
  # The VM's address from the kernel command line (pea.ip=), before network-online.target.
  cat > "$r/usr/local/sbin/pea-vm-net" <<'EOF'
#!/bin/sh
set -e
for a in $(cat /proc/cmdline); do
  case $a in pea.ip=*) addr=${a#pea.ip=} ;; pea.gw=*) gw=${a#pea.gw=} ;; esac
done
ip link set lo up
ip link set eth0 up
ip addr replace "$addr" dev eth0
ip route replace default via "$gw"
EOF
  chmod 0755 "$r/usr/local/sbin/pea-vm-net"
  cat > "$r/etc/systemd/system/pea-vm-net.service" <<'EOF'
[Unit]
Description=pea VM: address from the kernel command line
DefaultDependencies=no
Wants=network-pre.target
After=network-pre.target systemd-udevd.service
Before=network.target network-online.target ssh.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/pea-vm-net
[Install]
WantedBy=network-online.target multi-user.target
EOF
  ln -sf /etc/systemd/system/pea-vm-net.service "$r/etc/systemd/system/multi-user.target.wants/pea-vm-net.service"
  # No login prompts or timers that compete for the one emulated CPU.
  for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer; do
    ln -sf /dev/null "$r/etc/systemd/system/$u"
  done
  sed -i 's/^#\?UseDNS.*/UseDNS no/' "$r/etc/ssh/sshd_config"
  mv "$r" "$dir"
  touch "$cache/rootfs.done"
}

# --- the disk image: the cached root filesystem + this build's binaries ----------------------
image() {
  local stage=$cache/stage img=$cache/base.img
  for b in "${bins[@]}" pea-fixture; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing: build the release binaries first (README \"VMs\")"
  done
  rm -rf "$stage"
  cp -a "$cache/rootfs" "$stage"
  # Every VM boots an overlay of this one image: an empty machine-id makes systemd generate one
  # per VM at first boot (as cloud images ship it). A shared one gave every node the same
  # udev-derived MAC on its virtual devices, and the same identity wherever machine-id is used.
  : > "$stage/etc/machine-id"
  rm -f "$stage/var/lib/dbus/machine-id"
  for b in "${bins[@]}"; do install -s -m 0755 "$bin_dir/$b" "$stage/usr/local/bin/$b"; done
  # kubectl for `pea token create` / `pea join` (they drive the API with it): the host's.
  install -m 0755 "$(command -v kubectl)" "$stage/usr/local/bin/kubectl"
  rm -f "$img"
  mkfs.ext4 -q -F -L pea-vm -d "$stage" "$img" 6G
  rm -rf "$stage"
  ls "$cache"/rootfs/boot/vmlinuz-* >/dev/null 2>&1 || die "no kernel in the root filesystem"
}

# --- the network: a namespace with a bridge and one tap per VM ------------------------------
network() {
  ip netns add "$ns"
  in_ns ip link set lo up
  in_ns ip link add "$br" type bridge
  in_ns ip addr add "$gw/24" dev "$br"
  in_ns ip link set "$br" up
  local i=0
  for name in "${names[@]}"; do
    in_ns ip tuntap add dev "pea-vm-tap$i" mode tap
    in_ns ip link set "pea-vm-tap$i" master "$br" up
    i=$((i + 1))
  done
}

# --- the image registry on the bridge: pause and busybox, as `pea up` serves them -------------
registry_up() {
  mkdir -p "$run/registry"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$run/registry" "$registry" > "$run/registry.yml"
  # Not through the in_ns function: a backgrounded function is a subshell, and its pid (what `$!`
  # gives) is not the registry's, so `down` could not find and stop the registry. ip netns exec
  # and setsid (not a group leader here) both exec, so `$!` is docker-registry itself.
  ip netns exec "$ns" setsid docker-registry serve "$run/registry.yml" > "$run/registry.log" 2>&1 < /dev/null &
  echo $! > "$run/registry.pid"
  wait_until 20 "docker-registry on $registry" in_ns busybox wget -q -O /dev/null "http://$registry/v2/"
  local kind tag repo extra
  for spec in busybox:v1:library/busybox:v1 pause:3.10:pea/pause:3.10 programs:vm:pea/addons:vm; do
    IFS=: read -r kind tag repo rtag <<< "$spec"
    extra=()
    # The add-ons' image, as `pea up` builds it: pea-dns and pea-ingress in /usr/local/bin.
    [ "$kind" != programs ] || extra=(--bin "$bin_dir/pea-dns" --bin "$bin_dir/pea-ingress")
    "$bin_dir/pea-fixture" image "$kind" --layout "$run/images/$kind" --tag "$tag" "${extra[@]}" > /dev/null
    in_ns skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
      "oci:$run/images/$kind:$tag" "docker://$registry/$repo:$rtag"
  done
  rm -rf "$run/images"
}

# --- the VMs ---------------------------------------------------------------------------------
boot() { # NAME INDEX
  local name=$1 i=$2 ip; ip=$(ip_of "$1")
  local kernel initrd
  kernel=$(ls "$cache"/rootfs/boot/vmlinuz-* | sort -V | tail -1)
  initrd=$(ls "$cache"/rootfs/boot/initrd.img-* | sort -V | tail -1)
  qemu-img create -q -f qcow2 -b "$cache/base.img" -F raw "$run/$name.qcow2"
  # cgroup v1 hybrid, as on the host pea is tested on; eth0 by name; the address from pea.ip=.
  in_ns qemu-system-x86_64 -name "$name" -accel tcg -smp 1 -m "$mem" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.hostname=$name pea.ip=$ip/24 pea.gw=$gw systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=0 systemd.show_status=1" \
    -drive "file=$run/$name.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
    -netdev "tap,id=n0,ifname=pea-vm-tap$i,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:$((10 + i))" \
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
    -display none -monitor none -serial "file:$run/$name.console" \
    -daemonize -pidfile "$run/$name.pid"
}

# Every node's pea-shim pulls its pause image and the workload's from the registry on the bridge
# (plain HTTP), as `pea up` configures it.
registry_flags="--insecure-registry $registry --pause-image $registry/pea/pause:3.10"

kubectl_() { in_ns kubectl --kubeconfig "$run/admin.kubeconfig" --request-timeout=60s "$@"; }
ready_nodes() {
  [ "$(kubectl_ get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)" -ge "$1" ]
}

up() {
  [ "$(id -u)" -eq 0 ] || die "makes a network namespace, taps and VMs: run it as root"
  [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists (a cluster is up or was left): $0 down first"
  for c in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 docker-registry skopeo kubectl busybox ssh; do
    command -v "$c" > /dev/null || die "$c not found: run vagrant/vm-prereqs.sh (and tests/scripts/prereqs.sh)"
  done
  mkdir -p "$run"; : > "$run/timings"
  step "Debian $suite root filesystem (debootstrap, cached in $cache)"
  rootfs
  step "disk image: root filesystem + release binaries ($cache/base.img)"
  image
  step "network namespace $ns: bridge $br $gw/24, ${#names[@]} taps"
  network
  step "booting ${names[*]} (qemu TCG, 1 vCPU, $mem MiB each); registry on $registry meanwhile"
  local i=0
  for name in "${names[@]}"; do boot "$name" "$i"; i=$((i + 1)); done
  registry_up
  for name in "${names[@]}"; do
    ssh_limit=30 wait_until 600 "$name to boot and answer ssh (console: $run/$name.console)" vm_ssh "$name" true
    echo "qemu-cluster: $name up ($(vm_ssh "$name" uptime))"
  done
  step "pea install --role control-plane on pea-cp (add-ons: pea-dns and pea-ingress Deployments from $registry/pea/addons:vm)"
  vm_ssh pea-cp "pea install --role control-plane --node-name pea-cp --node-ip $(ip_of pea-cp) $registry_flags --addons-image $registry/pea/addons:vm"
  wait_until 300 "pea-control's admin kubeconfig" vm_ssh pea-cp test -s /var/lib/pea/control/admin.kubeconfig
  vm_ssh pea-cp cat /var/lib/pea/control/admin.kubeconfig > "$run/admin.kubeconfig"
  chmod 0600 "$run/admin.kubeconfig"
  wait_until 300 "the API on https://$(ip_of pea-cp):6443" kubectl_ get --raw /readyz
  step "pea token create; pea join on ${names[*]:1}"
  local join
  join=$(vm_ssh pea-cp pea token create --ttl 1h --print-join-command | grep '^pea join' | tail -1)
  [ -n "$join" ] || die "pea token create printed no join command"
  echo "qemu-cluster: $join"
  for name in "${names[@]:1}"; do
    ssh_limit=900 vm_ssh "$name" "$join --discovery-timeout 600 --node-ip $(ip_of "$name") --node-name $name $registry_flags"
  done
  step "waiting for ${#names[@]} nodes Ready"
  wait_until 600 "${#names[@]} nodes Ready" ready_nodes "${#names[@]}" || { kubectl_ get nodes -o wide || true; return 1; }
  kubectl_ get nodes -o wide
  step "the add-ons: Deployments kube-system/pea-dns and kube-system/pea-ingress available on pea-cp"
  local d
  for d in pea-dns pea-ingress; do
    kubectl_ -n kube-system rollout status "deployment/$d" --timeout=$((300 * scale))s \
      || { kubectl_ -n kube-system get pods -o wide || true; return 1; }
  done
  kubectl_ -n kube-system get pods -o wide
  workload
  step "done"
}

workload() {
  step "workload: Deployment web (3 replicas, one per node), Service web, Ingress web.pea.test"
  sed "s|@REGISTRY@|$registry|" tests/scripts/web-workload.yaml | kubectl_ apply -f -
  kubectl_ rollout status deployment/web --timeout=$((600 * scale))s
  kubectl_ get pods -o wide
  step "the pods run on several VMs"
  local nodes
  nodes=$(kubectl_ get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
  echo "qemu-cluster: web pods are on $nodes VMs"
  [ "$nodes" -ge 2 ]
  step "every pod reaches the Service by its DNS name (pea-dns + pea-proxy, across the VXLAN overlay between VMs)"
  local pod seen
  seen=$run/answers # in the run directory: `down` removes it whatever happens
  : > "$seen"
  for pod in $(kubectl_ get pods -l app=web -o jsonpath='{.items[*].metadata.name}'); do
    for _ in 1 2 3; do
      in_ns timeout $((60 * scale)) kubectl --kubeconfig "$run/admin.kubeconfig" exec "$pod" -- \
        wget -q -O - http://web.default.svc.cluster.local/hostname | tee -a "$seen"
      echo " (asked from $pod)"
    done
  done
  echo "qemu-cluster: the Service answered from $(sort -u "$seen" | wc -l) pods"
  step "the Ingress answers from outside the VMs (the bridge's namespace), from pods on several VMs"
  : > "$seen"
  for _ in 1 2 3 4 5 6; do
    in_ns timeout $((60 * scale)) busybox wget -q -O - --header 'Host: web.pea.test' "http://$(ip_of pea-cp)/hostname" | tee -a "$seen"
    echo
  done
  # pea-ingress runs on pea-cp: answers from two or more pods mean it reached another VM's pod.
  local answered
  answered=$(sort -u "$seen" | wc -l)
  echo "qemu-cluster: the Ingress answered from $answered pods"
  [ "$answered" -ge 2 ]
  step "kubectl logs and kubectl exec"
  kubectl_ logs deployment/web --tail=3
  kubectl_ exec deployment/web -- sh -c 'echo "exec in $(hostname): $(id)"'
}

down() {
  local name pid
  for name in pea-cp pea-w1 pea-w2 pea-w3 pea-w4 pea-w5 pea-w6 pea-w7 pea-w8 pea-w9; do
    [ -e "$run/$name.pid" ] || continue
    pid=$(cat "$run/$name.pid")
    # Only the qemu this script started (its pid file, its -name).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-name $name "; then
      kill "$pid" 2> /dev/null || true
      for _ in $(seq 1 20); do [ -e "/proc/$pid" ] || break; sleep 0.5; done
      kill -9 "$pid" 2> /dev/null || true
    fi
    rm -f "$run/$name.pid"
  done
  if [ -e "$run/registry.pid" ]; then
    pid=$(cat "$run/registry.pid")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "docker-registry serve $run/registry.yml"; then
      kill "$pid" 2> /dev/null || true
    fi
    rm -f "$run/registry.pid"
  fi
  if [ -e "/run/netns/$ns" ]; then
    # The taps and the bridge live in the namespace: deleting it removes them; explicitly first,
    # so a process still holding the namespace open cannot keep them.
    for l in $(ip netns exec "$ns" ip -o link show 2> /dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      case $l in pea-vm-*) ip netns exec "$ns" ip link del "$l" 2> /dev/null || true ;; esac
    done
    ip netns del "$ns"
  fi
  rm -rf "$run" "$cache/stage"
  echo "qemu-cluster: down (cached root filesystem and image kept in $cache; remove it by hand)"
}

on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "qemu-cluster: FAILED at step: $current_step (exit $rc)" >&2
    for name in "${names[@]}"; do
      [ -e "$run/$name.console" ] && { echo "--- last console lines of $name"; tail -5 "$run/$name.console"; } >&2
    done
  fi
  if [ "${mode:-}" = run ]; then
    [ -d "$run" ] && cp "$run/timings" "/tmp/pea-vm-timings.$$" 2> /dev/null || true
    down || true
  fi
  exit "$rc"
}

mode=${1:-run}
case $mode in
  run) trap on_exit EXIT; up ;;
  up) trap on_exit EXIT; up; echo "qemu-cluster: VMs left running; export KUBECONFIG=$run/admin.kubeconfig and run kubectl with ip netns exec $ns; $0 down removes them" ;;
  down) down ;;
  rootfs) rootfs ;;
  ssh) shift; [ $# -ge 1 ] || die "usage: $0 ssh NAME [CMD...]"; vm_ssh "$@" ;;
  *) die "usage: $0 [run|up|down|ssh NAME [CMD...]]" ;;
esac
