#!/usr/bin/env bash
# Failover figures of a 3-node harness cluster (orchestrator/clustertest):
# as root, on one machine, each node a network namespace running a real
# skiff. Prints, for the lan and the edge gossip profile, the median, min
# and max seconds from the kill of an agent node (SIGKILL of its skiff and
# its link cut) to its endpoints gone from the survivors' iptables, and to
# its replacement pods ready elsewhere; then the RSS of an idle agent with
# node 0's `skiff server --agent` as the baseline of the same run.
#
#   sudo bench/failover.sh                  5 kills per profile
#   SKIFF_FAILOVER_ROUNDS=3 SKIFF_FAILOVER_GRACE=5s sudo -E bench/failover.sh
#
# Targets (issue 6): endpoints gone under 2 s, replacements ready under
# 10 s, idle agent under 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
[ "$(id -u)" = 0 ] || { echo "bench/failover.sh: run as root (network namespaces, cgroups, iptables)" >&2; exit 1; }
go test -count=1 -run '^$' -bench 'Failover|AgentRSS' -benchtime 1x -timeout 30m ./orchestrator/clustertest/ 2>&1 |
	grep -E '^(Benchmark|--- |    bench_test|ok|FAIL|PASS|goos|cpu)' 
