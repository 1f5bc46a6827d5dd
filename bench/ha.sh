#!/usr/bin/env bash
# Several servers over raft (issue 12), process-level figures: real skiff
# servers in network namespaces (orchestrator/clustertest BenchmarkHA), as
# root on one machine. In one run, for local (`skiff server` without
# --listen-tcp: the plain store), single (one `--listen-tcp` server) and
# three (3 servers, writes to the leader):
#   - write latency p50/p99 and writes/s of PUT /v1/configs (1 client in
#     sequence, then 8 at once), disk bytes written per acknowledged write
#     (/proc/PID/io write_bytes summed over the servers);
#   - three only: kill -9 of the leader → first write acknowledged by a
#     survivor, median [min-max] over the rounds (target < 2 s);
#   - RSS of each server with 1,000 pods in the store (target < 50 MB).
#
#   sudo bench/ha.sh
#   SKIFF_HA_ROUNDS=9 SKIFF_HA_WRITES=600 sudo -E bench/ha.sh
#
# The store's own figures (in-process, no API) are in bench/ha.md "store"
# (go test -bench Replica ./orchestrator/store).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
[ "$(id -u)" = 0 ] || { echo "bench/ha.sh: run as root (network namespaces, iptables)" >&2; exit 1; }
go test -tags seccomp -count=1 -run '^$' -bench '^BenchmarkHA$' -benchtime 1x -timeout 30m ./orchestrator/clustertest/ 2>&1 |
	grep -E '^(Benchmark|--- |    ha_bench_test|ok|FAIL|PASS|goos|cpu)'
