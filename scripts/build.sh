#!/usr/bin/env bash
# Builds skiff for Linux on amd64, arm64 and armv7:
#
#   scripts/build.sh              dist/skiff-linux-amd64, -arm64, -armv7
#   scripts/build.sh arm64        only the architectures named (amd64 arm64 armv7)
#   VERSION=1.2.3 scripts/build.sh
#
# skiff needs cgo (runc's libcontainer runs C before the Go runtime starts
# in a container's init, and its seccomp filter is libseccomp), so every
# architecture is built with its C compiler: gcc for amd64, Debian's cross
# compilers gcc-aarch64-linux-gnu and gcc-arm-linux-gnueabihf for the arm
# ones, against libseccomp-dev of that architecture (Debian multiarch:
# libseccomp-dev:arm64, libseccomp-dev:armhf; scripts/deps.sh installs all
# of it). The binaries are linked statically (as runc's own releases are):
# they need no libseccomp or glibc of a given version on the board, and
# the netgo and osusergo tags keep glibc's NSS (which cannot be linked
# statically) out. Version and commit are written into the binary:
# `skiff version` prints them with os/arch.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
OUT=${OUT:-dist}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64 armv7)

mkdir -p "$OUT"
for arch in "${archs[@]}"; do
	goarm=
	case $arch in
	amd64) goarch=amd64 cc=gcc triplet=x86_64-linux-gnu ;;
	arm64) goarch=arm64 cc=aarch64-linux-gnu-gcc triplet=aarch64-linux-gnu ;;
	armv7) goarch=arm goarm=7 cc=arm-linux-gnueabihf-gcc triplet=arm-linux-gnueabihf ;;
	*)
		echo "build.sh: unknown architecture $arch (amd64, arm64 or armv7)" >&2
		exit 2
		;;
	esac
	command -v "$cc" >/dev/null || { echo "build.sh: $cc is missing (run scripts/deps.sh)" >&2; exit 1; }
	[ -f "/usr/lib/$triplet/libseccomp.a" ] || { echo "build.sh: /usr/lib/$triplet/libseccomp.a is missing (run scripts/deps.sh)" >&2; exit 1; }
	out=$OUT/skiff-linux-$arch
	start=$SECONDS
	# PKG_CONFIG_LIBDIR: libseccomp's .pc of the target, never the host's.
	CGO_ENABLED=1 GOOS=linux GOARCH=$goarch GOARM=$goarm CC=$cc \
		PKG_CONFIG_LIBDIR=/usr/lib/$triplet/pkgconfig \
		go build -tags 'seccomp netgo osusergo' -trimpath \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT -linkmode external -extldflags -static" \
		-o "$out" ./cmd/skiff
	printf '%s  %s bytes  %ds\n' "$out" "$(stat -c %s "$out")" $((SECONDS - start))
done
