#!/usr/bin/env bash
# Benchmark of the node resolver (orchestrator/agent/dns.go), no root
# needed: the resolver and a tiny upstream both on loopback, the resolver
# fed from the load balancer's view as an agent without a server feeds it.
# Prints queries/s and p99 of one client asking in a loop, for cluster
# names, upstream names from the cache, and the upstream asked directly
# (the baseline), 5 runs each.
# Usage: bench/names.sh [count, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -tags seccomp -count="${1:-5}" -run '^$' -bench BenchmarkResolver -benchtime 20000x ./orchestrator/agent/
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
