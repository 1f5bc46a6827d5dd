#!/usr/bin/env bash
# Installs the Debian packages skiff and its tests need, if any is missing.
# Idempotent: does nothing (and needs no network) when all are there.
# DEPS_CHECK=1 only checks: it lists what is missing and fails, installing
# nothing (.ci/run runs it after the install to prove the install worked).
set -euo pipefail

# command -> Debian package
declare -A need=(
	[iptables]=iptables
	[ip]=iproute2
	[nsenter]=util-linux
	[runc]=runc
	[docker-registry]=docker-registry
	[busybox]=busybox-static
	[wrk]=wrk
	[conntrack]=conntrack
	[curl]=curl
	[modprobe]=kmod
	[gcc]=gcc
	[nft]=nftables
	[file]=file
	[git]=git
	[pkg-config]=pkg-config
	# scripts/build.sh and crosstest.sh: arm64 and armv7 builds, their
	# unit tests under qemu-user; deb.sh and debtest.sh: the packages.
	[aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
	[arm-linux-gnueabihf-gcc]=gcc-arm-linux-gnueabihf
	[qemu-aarch64-static]=qemu-user-static
	[qemu-arm-static]=qemu-user-static
	[dpkg-deb]=dpkg
	[chroot]=coreutils
	[chromium]=chromium # the web console's browser tests (orchestrator/ui, chromedp)
)
missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# busybox-static, not the dynamic busybox: tests copy it into images.
if command -v busybox >/dev/null 2>&1 && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q static; then
	dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
fi
# skiff is built with -tags seccomp, which compiles runc's
# libcontainer/seccomp against libseccomp (cgo, found through pkg-config):
# the default seccomp profile of every container needs it.
pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev)
# The static libseccomp of each target architecture (Debian multiarch),
# which scripts/build.sh links into the arm binaries.
foreign=()
# The cross compilers' C library (libc6-dev-*-cross: only Recommended by
# them, and installs here skip recommends): the static link needs libc.a.
for a in arm64:aarch64-linux-gnu:libc6-dev-arm64-cross armhf:arm-linux-gnueabihf:libc6-dev-armhf-cross; do
	arch=${a%%:*} triple=${a#*:} libc=${a##*:}
	triple=${triple%%:*}
	if [ ! -f "/usr/lib/$triple/libseccomp.a" ]; then
		missing+=("libseccomp-dev:$arch")
		foreign+=("$arch")
	fi
	if [ ! -f "/usr/$triple/lib/libc.a" ]; then
		missing+=("$libc")
	fi
done
if [ ${#missing[@]} -gt 0 ] && [ "${DEPS_CHECK:-}" = 1 ]; then
	echo "deps: missing after install: ${missing[*]} (commands: ${!need[*]})" >&2
	exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	for a in "${foreign[@]}"; do
		dpkg --print-foreign-architectures | grep -qx "$a" || dpkg --add-architecture "$a"
	done
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null 2>&1 || { echo "deps: Go 1.26 is required (https://go.dev/dl); not found in PATH" >&2; exit 1; }
