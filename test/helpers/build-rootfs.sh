#!/usr/bin/env bash
# The Debian 12 root filesystem the system-container tests boot with systemd as PID 1
# (test/helpers/container.ts): built once per machine with debootstrap from Debian's own archive,
# outside the checkout, never committed; each test run boots a copy of it. Built again when the
# package list below changes. Usage: build-rootfs.sh [DIR] (default /var/lib/hubctl-test/bookworm-base).
set -euo pipefail

dir=${1:-${HUBCTL_TEST_ROOTFS:-/var/lib/hubctl-test/bookworm-base}}
# What a minimal Debian server has beyond minbase: systemd as init, D-Bus and logind (PAM sessions),
# Python 3 (hubctl's JupyterHub environment), ps/kill, the CA certificates, ip.
packages=systemd,systemd-sysv,dbus,libpam-systemd,python3,procps,ca-certificates,iproute2
marker=.hubctl-rootfs

ready() { [ -f "$dir/$marker" ] && [ "$(cat "$dir/$marker")" = "$packages" ]; }
ready && exit 0

for tool in debootstrap flock; do
  command -v "$tool" >/dev/null || {
    echo "build-rootfs: $tool is not installed (apt-get install debootstrap systemd-container)" >&2
    exit 1
  }
done
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
ready && exit 0

# The Debian mirror this machine's apt uses (deb822 or one-line sources), else Debian's own.
mirror=$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*\/debian\)\/\{0,1\}[[:space:]]*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\+\(http[^[:space:]]*\/debian\)\/\{0,1\}[[:space:]]\+bookworm[[:space:]].*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

tmp="$dir.tmp"
rm -rf "$tmp"
start=$(date +%s)
debootstrap --variant=minbase --include="$packages" bookworm "$tmp" "$mirror" >"$dir.log" 2>&1 || {
  tail -20 "$dir.log" >&2
  echo "build-rootfs: debootstrap failed (whole log: $dir.log)" >&2
  exit 1
}
# apt's package lists are fetched again inside (apt-get update); the .debs are not needed.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages
echo "$packages" >"$tmp/$marker"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "build-rootfs: Debian 12 with systemd in $dir from $mirror, in $(($(date +%s) - start))s"
