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
# scripts/build.sh builds the cgo binaries themselves; if dist/ holds
# them, each must start under qemu and report its architecture
# (`skiff version`). scripts/test.sh runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
PKGS=${PKGS:-./configs ./orchestrator/api ./orchestrator/store ./orchestrator/controller ./orchestrator/client ./orchestrator/metrics ./cluster/pki}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(arm64 armv7)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# serve_under_qemu ARCH QEMU: dist/skiff-linux-ARCH runs `skiff server`
# (store, API, controllers; no agent, which needs the kernel's namespaces)
# under qemu in a private data and run dir and answers /healthz and
# /metrics on its unix socket.
serve_under_qemu() {
	local arch=$1 qemu=$2 d pid ok=
	d=$(mktemp -d "$work/serve-$arch-XXXX")
	printf 'node_name = "crosstest-%s"\n' "$arch" >"$d/config.toml"
	"$qemu" "dist/skiff-linux-$arch" server --config "$d/config.toml" --data-dir "$d/data" --run-dir "$d/run" >"$d/log" 2>&1 &
	pid=$!
	for _ in $(seq 1 300); do # 30 s
		if curl -sf --max-time 2 --unix-socket "$d/run/skiff.sock" http://skiff/healthz >/dev/null &&
			curl -sf --max-time 5 --unix-socket "$d/run/skiff.sock" http://skiff/metrics | grep -q '^skiff_store_revision '; then
			ok=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ -z "$ok" ]; then
		cat "$d/log" >&2
		echo "crosstest.sh: skiff server under $qemu did not answer /healthz and /metrics" >&2
		exit 1
	fi
	echo "ok  $arch   skiff server under $qemu answers /healthz and /metrics"
}

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
	# build.sh's binary (if built) starts on the target and says what it is.
	if [ -f "dist/skiff-linux-$arch" ]; then
		v=$("$qemu" "dist/skiff-linux-$arch" version) || { echo "crosstest.sh: dist/skiff-linux-$arch version failed under $qemu" >&2; exit 1; }
		grep -q "^linux/$arch " <<<"$v" || { echo "crosstest.sh: dist/skiff-linux-$arch says: $v" >&2; exit 1; }
		echo "ok  $arch   dist/skiff-linux-$arch version: $(tr '\n' ' ' <<<"$v")"
		serve_under_qemu "$arch" "$qemu"
	elif [ "${CI:-}" = true ]; then
		echo "crosstest.sh: dist/skiff-linux-$arch is missing (scripts/build.sh runs first in CI)" >&2
		exit 1
	fi
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
