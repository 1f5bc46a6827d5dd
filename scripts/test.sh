#!/usr/bin/env bash
# Runs every skiff test, as root: installs what the tests need, vets, runs
# the unit, kernel and end-to-end tests, and fuzzes the manifest decoder and
# the layer unpacker a little. Usage: sudo scripts/test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (the tests make namespaces, cgroups and iptables rules)" >&2; exit 1; }
source scripts/deps.sh
export PATH=$PATH:/usr/local/go/bin

# -tags seccomp: runc's libcontainer loads the containers' seccomp filter
# only when built with it (and libseccomp); without it every container with
# the default profile refuses to start (containers.ErrSeccompUnsupported).
go vet -tags seccomp ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || { echo "gofmt wants to rewrite: $unformatted" >&2; exit 1; }

go test -tags seccomp -count=1 -timeout 15m "$@" ./...
go test -run='^$' -fuzz=FuzzParseManifest -fuzztime=20s ./configs
go test -tags seccomp -run='^$' -fuzz=FuzzAPIBodies -fuzztime=15s ./orchestrator/apiserver
# A layer tar is KiBs (512-byte headers), and the fuzzer's minimizer tries
# every subset of an input's bytes: left on, it would spend the whole run
# minimizing the first inputs that find new coverage.
go test -run='^$' -fuzz=FuzzUnpack -fuzztime=15s -fuzzminimizetime=0 ./containers/images

# Edge builds (docs/edge.md): the three architectures' static binaries,
# the no-root packages' unit tests on arm64 and armv7 under qemu-user, and
# the .deb installed, removed and purged in a dpkg --root chroot.
bash scripts/build.sh
bash scripts/crosstest.sh
bash scripts/debtest.sh amd64
# The arm packages too, their binaries run under qemu-user; built with
# zstd for the test (xz takes 14 s a package; the content is the same).
DEB_COMPRESS=zstd bash scripts/debtest.sh arm64 armv7
