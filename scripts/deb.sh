#!/usr/bin/env bash
# Builds a .deb per architecture from scripts/build.sh's binaries, with
# plain dpkg-deb (Debian's own tool, already on every build and CI machine:
# nothing new to install or trust):
#
#   scripts/deb.sh                dist/skiff_<version>_{amd64,arm64,armhf}.deb
#   scripts/deb.sh arm64          only the architectures named (amd64 arm64 armv7)
#   DEB_COMPRESS=zstd scripts/deb.sh   another dpkg-deb compressor (default xz,
#                                 which every dpkg reads; debtest.sh's arm runs
#                                 use zstd: xz takes 14 s a package)
#
# What a package holds:
#   /usr/bin/skiff                              the static binary
#   /lib/systemd/system/skiff-server.service    deploy/systemd, ExecStart on /usr/bin
#   /lib/systemd/system/skiff-agent.service
#   /etc/skiff/config.toml                      `skiff config default`: every key
#                                               commented; a conffile, so an edited
#                                               one survives upgrades and remove
# Its maintainer scripts start nothing: postinst reloads systemd and prints
# how to enable the role this machine should have; prerm stops the units
# (pods keep running: KillMode=process); purge removes /etc/skiff (dpkg,
# as a conffile) and nothing under /var/lib/skiff: a node's state, images
# and certificates go only with `skiff agent --cleanup` and an rm the user
# types.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
OUT=${OUT:-dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
# A release tag (v1.2.3, 1.2.3-4-gabc) gives its version; a bare commit
# hash (no tag) sorts below every release as 0.0~git<hash>.
debver=${VERSION#v}
[[ $debver =~ ^[0-9]+\.[0-9] ]] || debver=0.0~git${debver}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64 armv7)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The config is the same on every architecture: made by the host's
# binary if there is one, else by go run.
if [ -x "$OUT/skiff-linux-amd64" ] && [ "$(uname -m)" = x86_64 ]; then
	"$OUT/skiff-linux-amd64" config default >"$work/config.toml"
else
	go run -tags seccomp ./cmd/skiff config default >"$work/config.toml"
fi

for arch in "${archs[@]}"; do
	case $arch in
	amd64 | arm64) debarch=$arch ;;
	armv7) debarch=armhf ;;
	*)
		echo "deb.sh: unknown architecture $arch" >&2
		exit 2
		;;
	esac
	bin=$OUT/skiff-linux-$arch
	[ -x "$bin" ] || { echo "deb.sh: $bin is missing (run scripts/build.sh $arch)" >&2; exit 1; }
	root=$work/$arch
	install -D -m 0755 "$bin" "$root/usr/bin/skiff"
	for u in skiff-server skiff-agent; do
		install -D -m 0644 "deploy/systemd/$u.service" "$root/lib/systemd/system/$u.service"
		sed -i 's|/usr/local/bin/skiff|/usr/bin/skiff|' "$root/lib/systemd/system/$u.service"
	done
	install -D -m 0644 "$work/config.toml" "$root/etc/skiff/config.toml"
	mkdir -p "$root/DEBIAN"
	echo /etc/skiff/config.toml >"$root/DEBIAN/conffiles"
	cat >"$root/DEBIAN/control" <<CONTROL
Package: skiff
Version: $debver
Architecture: $debarch
Maintainer: skiff developers <skiff@localhost>
Section: admin
Priority: optional
Depends: iptables, iproute2
Recommends: conntrack
Installed-Size: $(du -sk "$root" | cut -f1)
Homepage: https://github.com/skiff-edge/skiff
Description: lightweight edge orchestrator with a built-in load balancer
 skiff runs pods through runc's libcontainer, gives each an IP, balances
 services in the kernel with iptables and keeps nodes in one cluster with
 serf gossip. One static binary: server, agent and CLI.
CONTROL
	cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
# Starts nothing: which role this machine has is the user's choice.
set -e
if [ "$1" = configure ]; then
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	if [ -z "$2" ]; then
		echo "skiff installed. Edit /etc/skiff/config.toml, then start one role:"
		echo "  systemctl enable --now skiff-server   # server and this node's agent"
		echo "  systemctl enable --now skiff-agent    # agent joining a server (servers, token_file)"
	fi
fi
exit 0
POSTINST
	cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
# Stops the units on remove (pods keep running: KillMode=process; remove
# them first with `skiff agent --cleanup`). Upgrades restart nothing.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	for u in skiff-server skiff-agent; do
		systemctl disable --now "$u.service" >/dev/null 2>&1 || true
	done
fi
exit 0
PRERM
	cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	# dpkg removes the conffile; the directory goes if nothing else is in it
	# (a token file the user put there stays).
	rmdir /etc/skiff 2>/dev/null || true
fi
exit 0
POSTRM
	chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
	deb=$OUT/skiff_${debver}_${debarch}.deb
	dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
	printf '%s  %s bytes\n' "$deb" "$(stat -c %s "$deb")"
done
