#!/usr/bin/env bash
# Opt-in prerequisites of vagrant/qemu-cluster.sh (not part of tests/scripts/prereqs.sh, which CI
# runs): qemu (software emulation), qemu-img, debootstrap, mkfs.ext4 -d, an ssh client. The
# registry, skopeo, busybox and kubectl it also uses come with tests/scripts/prereqs.sh.
# Idempotent and quiet when everything is installed. ruby: `ruby -c vagrant/Vagrantfile`.
set -euo pipefail
packages=(qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client ruby)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "vm-prereqs: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "vm-prereqs: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq > /dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
