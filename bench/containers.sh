#!/bin/sh
# Benchmarks of containers/ (needs root, runc, busybox-static):
#  - start latency of a one-container pod whose image is present, against
#    bare `runc run -d` of the same root filesystem and against the same start
#    under the all-Go shim the C shim replaced, 30 alternating runs each
#    (median and p90, in ms, side by side in one run);
#  - the same start under Docker's default seccomp profile against
#    unconfined, 30 alternating pairs per run, 5 runs (medians, p90s, ratio);
#  - pull time of the 3-layer demo image from an in-process loopback registry;
#  - unpack throughput of a 64 MiB uncompressed layer.
set -eu
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# runc: $(runc --version | head -1)"
go test -tags seccomp -run '^$' -bench 'BenchmarkStartLatency' -benchtime=1x ./containers/ | grep -v '^time='
go test -tags seccomp -run '^$' -bench 'BenchmarkPodStart' -benchtime=30x -count=5 ./containers/ | grep -v '^time='
go test -tags seccomp -run '^$' -bench 'BenchmarkPull3Layers|BenchmarkUnpack' -benchtime=10x -count=3 ./containers/images/ | grep -v '^time='
