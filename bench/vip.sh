#!/usr/bin/env bash
# VIP failover of a 3-node harness cluster (orchestrator/clustertest): as
# root, on one machine, each node a network namespace running a real skiff,
# plus a LAN client netns on the same test bridge. Prints, for the lan
# gossip profile (baseline) and the edge one, the median, min and max
# seconds from the holder of a load-balancer service's address being cut
# off (link down, then SIGKILL of its skiff) to the first answer through
# the address to the client, which loops on it.
#
#   sudo bench/vip.sh                       5 rounds per profile
#   SKIFF_VIP_ROUNDS=3 sudo -E bench/vip.sh
#
# Target (issue 13): under 1 s with the edge profile (kube-vip about 3 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
[ "$(id -u)" = 0 ] || { echo "bench/vip.sh: run as root (network namespaces, cgroups, iptables)" >&2; exit 1; }
go test -tags seccomp -count=1 -run '^$' -bench 'VIPFailover' -benchtime 1x -timeout 30m ./orchestrator/clustertest/ 2>&1 |
	grep -E '^(Benchmark|--- |    vip_bench_test|ok|FAIL|PASS|goos|cpu)'
