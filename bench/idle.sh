#!/bin/sh
# Idle cost of one `skiff server --agent` (needs root, iptables, runc's
# kernel features; builds skiff and the demo image): CPU (utime+stime of
# the skiff process and its shims over the window, so other work on the
# machine does not count), disk writes (write_bytes) and PSS, with 0, 10
# and 30 pods probed every second and 100 pods probed every 5 s.
# SKIFF_IDLE_WINDOW=5m for the issue's 5-minute windows (default 60s).
# SKIFF_IDLE_CLUSTER=1 runs the server in cluster mode (TLS API, gossip, the store over raft).
# SKIFF_IDLE_PODS=0,30@1s picks the runs (pod counts, each @ a probe period);
# SKIFF_IDLE_BIN=/path/to/skiff measures that build instead (A/B against
# another tree: alternate runs with and without it); SKIFF_IDLE_PPROF=DIR
# takes a CPU profile of skiff over each window into DIR.
set -eu
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg), window ${SKIFF_IDLE_WINDOW:-60s}"
go test -tags seccomp -run '^$' -bench 'BenchmarkIdle$' -benchtime=1x -timeout 60m ./orchestrator/agent/ | grep -E '^probe period|^(ok|FAIL)'
