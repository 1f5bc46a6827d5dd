#!/usr/bin/env bash
# Runs the unit tests of the packages that need no root on arm64 and armv7,
# under qemu-user-static: each package's test binary is cross-compiled
# (`go test -c`) and run by qemu-aarch64-static / qemu-arm-static.
#
#   scripts/crosstest.sh                 every package below, both archs
#   scripts/crosstest.sh arm64           one architecture
#   PKGS="./configs" scripts/crosstest.sh
#
# The packages are pure Go below skiff's cgo parts (go list shows no runc
# in their dependencies), so they are built with CGO_ENABLED=0: static
# binaries that qemu-user runs without a target sysroot, and no cross link
# step (the slow part of scripts/build.sh). They are where 32-bit and
# alignment faults would show first: the TOML decoder and units (configs),
# the API's wire types, the bbolt store (its mmap and 64-bit atomics on
# armv7), the controllers and scheduler, the client, the cluster PKI.
# scripts/build.sh builds the cgo binaries themselves; scripts/test.sh
# runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
PKGS=${PKGS:-./configs ./orchestrator/api ./orchestrator/store ./orchestrator/controller ./orchestrator/client ./orchestrator/metrics ./cluster/pki}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 armv7)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for arch in "${archs[@]}"; do
	goarm=
	case $arch in
	arm64) goarch=arm64 qemu=qemu-aarch64-static ;;
	armv7) goarch=arm goarm=7 qemu=qemu-arm-static ;;
	*)
		echo "crosstest.sh: unknown architecture $arch (arm64 or armv7)" >&2
		exit 2
		;;
	esac
	command -v "$qemu" >/dev/null || { echo "crosstest.sh: $qemu is missing (run scripts/deps.sh)" >&2; exit 1; }
	for pkg in $PKGS; do
		bin=$work/$arch-$(echo "${pkg#./}" | tr / _).test
		start=$SECONDS
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go test -c -tags seccomp -o "$bin" "$pkg"
		built=$((SECONDS - start))
		# Run in the package's directory, as go test does (testdata/).
		(cd "$pkg" && "$qemu" "$bin" -test.count=1 -test.timeout=10m ${TESTFLAGS:-}) >"$work/out" 2>&1 || {
			cat "$work/out" >&2
			echo "crosstest.sh: $pkg failed on $arch" >&2
			exit 1
		}
		printf 'ok  %-6s %-28s build %3ds  run %3ds\n' "$arch" "$pkg" "$built" $((SECONDS - start - built))
	done
done
