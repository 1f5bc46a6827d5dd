#!/bin/sh
# Memory per container: the PSS of each container's shim (what skiff adds
# per container beyond the container itself) for 1, 10 and 30 running
# one-container pods, the C shim beside the all-Go shim it replaced, in the
# same run (BenchmarkShimPSS; both are a skiff binary built here and
# re-executed, as on a node). Then the start latency of a one-container pod
# with each shim beside bare `runc run -d` (BenchmarkStartLatency, 30
# alternating triples per run, RUNS runs). Needs root, runc, busybox-static.
#   RUNS=3 bench/pss.sh
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# runc: $(runc --version | head -1)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -tags seccomp -o "$tmp/skiff" ./cmd/skiff
echo "# skiff binary: $(stat -c %s "$tmp/skiff") bytes"
SKIFF_BENCH_SHIM_PATH="$tmp/skiff" go test -tags seccomp -run '^$' -bench 'BenchmarkShimPSS' -benchtime=1x -v ./containers/ |
	grep -E 'shim, |^Benchmark'
go test -tags seccomp -run '^$' -bench 'BenchmarkStartLatency' -benchtime=1x -count="$RUNS" -v ./containers/ |
	grep -E 'runs each|^Benchmark'
