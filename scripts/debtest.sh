#!/usr/bin/env bash
# Installs a skiff .deb into a throw-away root with dpkg --root (dpkg
# chroots into it for the maintainer scripts, which run under busybox's
# sh) and uninstalls it, checking what is left at each step:
#   - install: the package's architecture and the binary's (ELF machine,
#     static), the binary runs (`skiff version` names the architecture),
#     the units and the config are in place, the config is `skiff config
#     default`'s; the maintainer scripts call systemctl only for
#     daemon-reload (a fake systemctl in the root records its calls):
#     nothing is enabled or started;
#   - remove after an edit of the config: only the edited config is left
#     (and prerm stopped and disabled the units);
#   - purge: nothing is left.
# Usage: scripts/debtest.sh [ARCH...]   (amd64 arm64 armv7; default amd64;
# dist/ must hold their binaries, scripts/build.sh). The arm packages are
# installed as foreign architectures (the root's dpkg gets
# --add-architecture) and their binary runs under qemu-user-static, named
# explicitly (qemu-aarch64-static, qemu-arm-static copied into the root):
# no binfmt_misc registration is needed. DEB_COMPRESS (see deb.sh) picks
# the compressor of the packages built for the test (default xz).
set -euo pipefail
cd "$(dirname "$0")/.."
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64)
[ "$(id -u)" = 0 ] || { echo "debtest.sh: run as root (dpkg --root chroots)" >&2; exit 1; }
OUT=$(mktemp -d)
R=
trap 'rm -rf "$OUT" ${R:+"$R"}' EXIT
for arch in "${archs[@]}"; do
	cp "dist/skiff-linux-$arch" "$OUT/"
done
OUT=$OUT scripts/deb.sh "${archs[@]}" >/dev/null
hostarch=$(dpkg --print-architecture)

fail() { echo "debtest.sh: $arch: $*" >&2; exit 1; }
# files lists the root's files and links, but dpkg's database and this
# test's scaffolding.
files() { (cd "$R" && find . \( -path ./var/lib/dpkg -o -path ./bin -o -path ./tmp -o -path ./run -o -path ./dev \) -prune -o \( -type f -o -type l \) -print | sort); }
# skiff runs the installed binary in the root, through qemu-user for a
# foreign architecture.
skiff() {
	if [ -n "$qemu" ]; then
		chroot "$R" "/bin/$qemu" /usr/bin/skiff "$@"
	else
		chroot "$R" /usr/bin/skiff "$@"
	fi
}

for arch in "${archs[@]}"; do
	case $arch in
	amd64) debarch=amd64 qemu= machine=x86-64 ;;
	arm64) debarch=arm64 qemu=qemu-aarch64-static machine="ARM aarch64" ;;
	armv7) debarch=armhf qemu=qemu-arm-static machine="ARM, EABI5" ;;
	*) echo "debtest.sh: unknown architecture $arch" >&2; exit 2 ;;
	esac
	[ "$debarch" = "$hostarch" ] && qemu=
	deb=$(ls "$OUT"/skiff_*_"$debarch".deb)
	[ "$(dpkg-deb -f "$deb" Architecture)" = "$debarch" ] || fail "package architecture $(dpkg-deb -f "$deb" Architecture), want $debarch"

	R=$(mktemp -d)
	mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/bin" "$R/tmp" "$R/run/systemd/system"
	touch "$R/var/lib/dpkg/status"
	mkdir "$R/dev" && mknod -m 666 "$R/dev/null" c 1 3
	cp "$(command -v busybox)" "$R/bin/busybox"
	for c in sh rmdir echo cat; do ln -s busybox "$R/bin/$c"; done
	if [ -n "$qemu" ]; then
		cp "$(command -v "$qemu")" "$R/bin/$qemu"
		dpkg --root="$R" --add-architecture "$debarch"
	fi
	cat >"$R/bin/systemctl" <<'FAKE'
#!/bin/sh
echo "$*" >>/tmp/systemctl.calls
FAKE
	chmod 755 "$R/bin/systemctl"

	dpkg --root="$R" --force-depends -i "$deb" >/dev/null 2>&1 || fail "dpkg -i failed: $(dpkg --root="$R" --force-depends -i "$deb" 2>&1)"
	want="./etc/skiff/config.toml
./lib/systemd/system/skiff-agent.service
./lib/systemd/system/skiff-server.service
./usr/bin/skiff"
	[ "$(files)" = "$want" ] || fail "installed files: $(files)"
	[ "$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Architecture} ${Status}' skiff)" = "$debarch install ok installed" ] ||
		fail "dpkg's record: $(dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Architecture} ${Status}' skiff)"
	elf=$(file -L "$R/usr/bin/skiff")
	[[ $elf == *"$machine"* && $elf == *"statically linked"* ]] || fail "/usr/bin/skiff is not a static $machine binary: $elf"
	skiff version | grep -q "linux/$arch" || fail "skiff version in the root: $(skiff version 2>&1)"
	skiff config default | cmp -s - "$R/etc/skiff/config.toml" || fail "/etc/skiff/config.toml is not skiff config default's"
	grep -q '^ExecStart=/usr/bin/skiff ' "$R/lib/systemd/system/skiff-server.service" || fail "skiff-server.service does not run /usr/bin/skiff"
	[ "$(cat "$R/tmp/systemctl.calls")" = "daemon-reload" ] || fail "postinst called systemctl: $(cat "$R/tmp/systemctl.calls")"
	grep -qx /etc/skiff/config.toml "$R/var/lib/dpkg/info/skiff.conffiles" || fail "config.toml is not a conffile"

	echo 'node_name = "edited"' >>"$R/etc/skiff/config.toml"
	: >"$R/tmp/systemctl.calls"
	dpkg --root="$R" -r skiff >/dev/null 2>&1 || fail "dpkg -r failed"
	[ "$(files)" = "./etc/skiff/config.toml" ] || fail "after remove: $(files)"
	grep -q 'disable --now skiff-server.service' "$R/tmp/systemctl.calls" || fail "prerm did not stop the units: $(cat "$R/tmp/systemctl.calls")"
	dpkg --root="$R" -P skiff >/dev/null 2>&1 || fail "dpkg -P failed"
	[ -z "$(files)" ] || fail "after purge: $(files)"
	[ ! -e "$R/etc/skiff" ] || fail "after purge: /etc/skiff is left"
	rm -rf "$R"
	R=
	echo "debtest: $(basename "$deb") installs (linux/$arch${qemu:+, run under $qemu}), removes (edited config kept) and purges cleanly"
done
