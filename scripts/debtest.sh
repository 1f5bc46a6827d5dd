#!/usr/bin/env bash
# Installs a skiff .deb into a throw-away root with dpkg --root (dpkg
# chroots into it for the maintainer scripts, which run under busybox's
# sh) and uninstalls it, checking what is left at each step:
#   - install: the binary runs (`skiff version`), the units and the config
#     are in place, the config is `skiff config default`'s; the maintainer
#     scripts call systemctl only for daemon-reload (a fake systemctl in the
#     root records its calls): nothing is enabled or started;
#   - remove after an edit of the config: only the edited config is left
#     (and prerm stopped and disabled the units);
#   - purge: nothing is left.
# Usage: scripts/debtest.sh [ARCH]   (default amd64; dist/ must hold the
# binary of ARCH, scripts/build.sh; arm ones run through qemu-user's
# binfmt only if the host has it registered, so the CI checks amd64).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-amd64}
[ "$(id -u)" = 0 ] || { echo "debtest.sh: run as root (dpkg --root chroots)" >&2; exit 1; }
OUT=$(mktemp -d)
R=$(mktemp -d)
trap 'rm -rf "$R" "$OUT"' EXIT
cp "dist/skiff-linux-$arch" "$OUT/"
OUT=$OUT scripts/deb.sh "$arch" >/dev/null
deb=$(ls "$OUT"/skiff_*.deb)

fail() { echo "debtest.sh: $*" >&2; exit 1; }
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/bin" "$R/tmp" "$R/run/systemd/system"
touch "$R/var/lib/dpkg/status"
mkdir "$R/dev" && mknod -m 666 "$R/dev/null" c 1 3
cp "$(command -v busybox)" "$R/bin/busybox"
for c in sh rmdir echo cat; do ln -s busybox "$R/bin/$c"; done
cat >"$R/bin/systemctl" <<'FAKE'
#!/bin/sh
echo "$*" >>/tmp/systemctl.calls
FAKE
chmod 755 "$R/bin/systemctl"
# files lists the root's files and links, but dpkg's database and this
# test's scaffolding.
files() { (cd "$R" && find . \( -path ./var/lib/dpkg -o -path ./bin -o -path ./tmp -o -path ./run -o -path ./dev \) -prune -o \( -type f -o -type l \) -print | sort); }

dpkg --root="$R" --force-depends -i "$deb" >/dev/null 2>&1 || fail "dpkg -i failed: $(dpkg --root="$R" --force-depends -i "$deb" 2>&1)"
want="./etc/skiff/config.toml
./lib/systemd/system/skiff-agent.service
./lib/systemd/system/skiff-server.service
./usr/bin/skiff"
[ "$(files)" = "$want" ] || fail "installed files: $(files)"
chroot "$R" /usr/bin/skiff version | grep -q "linux/$arch" || fail "skiff version in the root: $(chroot "$R" /usr/bin/skiff version 2>&1)"
chroot "$R" /usr/bin/skiff config default | cmp -s - "$R/etc/skiff/config.toml" || fail "/etc/skiff/config.toml is not skiff config default's"
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
echo "debtest: $(basename "$deb") installs, removes (edited config kept) and purges cleanly"
