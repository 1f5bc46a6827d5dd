#!/usr/bin/env bash
# Benchmarks of netlb/ (as root; makes its own network namespaces and
# touches nothing outside them). Prints medians with min and max, each next
# to its baseline measured in the same run:
#   - Sync of 1,000 services x 3 endpoints, full and one-endpoint change,
#     against a bare iptables-restore --noflush of the same text and against
#     one iptables call per rule (timed for 400 rules, extrapolated);
#   - AddPod / RemovePod time per pod;
#   - wrk through a cluster IP against straight to the pod IP, alternating.
# Usage: sudo bench/netlb.sh [regexp of benchmarks, default all]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
[ "$(id -u)" = 0 ] || { echo "bench/netlb.sh: run as root" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench/netlb.sh: apt-get install wrk" >&2; exit 1; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -count=1 -run '^$' -bench "${1:-.}" -benchtime 1x -timeout 30m ./netlb/
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
