#!/usr/bin/env bash
# Benchmarks of the autoscaler (as root). Prints each figure per run and the
# median, min and max, each next to its baseline from the same run:
#   - step to ready: a step load of 90 new connections/s (target 25 per
#     replica) to 4 ready replicas through the autoscaler (TestAutoscaleE2E),
#     against `skiff scale` 1 -> 4 of the same pods by hand in the same run
#     (the pods' start alone);
#   - scale down: the decision's delay after the load fell, window 8 s;
#   - cold start from zero: 50 concurrent requests to an app at zero pods,
#     held by the activator; first and last answer (TestScaleToZeroE2E);
#   - the cost of measuring: CPU (process + children) of one load sample
#     with 30 services of 3 endpoints, against 0 services (the fork of
#     the counters and the conntrack dump alone), with counters or conntrack
#     alone, and the share of a core
#     at the agent's 2 s interval.
# Usage: sudo bench/autoscale.sh [runs of the e2e test, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
[ "$(id -u)" = 0 ] || { echo "bench/autoscale.sh: run as root" >&2; exit 1; }
runs=${1:-3}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
lines=$(mktemp)
trap 'rm -f "$out" "$lines"' EXIT
for i in $(seq "$runs"); do
	go test -tags seccomp -count=1 -run '^TestAutoscaleE2E$' -v ./orchestrator/agent/ >"$out" 2>&1 || { tail -40 "$out"; exit 1; }
	grep -o 'baseline: skiff scale 1 → 4, ready in [0-9.]*m\?s' "$out" | sed "s/^/run $i: /"
	grep -o 'step: autoscaled 1 → 4 replicas ready in [0-9.]*m\?s' "$out" | sed "s/^/run $i: /"
	grep -o 'scale down decided [0-9.]*m\?s after the load fell' "$out" | sed "s/^/run $i: /"
	go test -tags seccomp -count=1 -run '^TestScaleToZeroE2E$' -v ./orchestrator/agent/ >"$out" 2>&1 || { tail -40 "$out"; exit 1; }
	grep -o 'cold start from zero: .*failed' "$out" | sed "s/^/run $i: /"
done >"$lines"
cat "$lines"
awk '
	function secs(v) { sub(/,$/, "", v); return v ~ /ms$/ ? substr(v, 1, length(v)-2)/1000 : substr(v, 1, length(v)-1) }
	/baseline/ { b[nb++] = secs($NF) }
	/step:/    { s[ns++] = secs($NF) }
	/scale down/ { d[nd++] = secs($(NF-4)) }
	/cold start/ { for (k = 1; k <= NF; k++) { if ($k == "first") f[nf++] = secs($(k+3)); if ($k == "last") l[nl++] = secs($(k+2)) } }
	function med(a, n,   i, j, t) { for (i = 0; i < n; i++) for (j = i+1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return sprintf("median %.2fs (min %.2fs, max %.2fs, n=%d)", a[int(n/2)], a[0], a[n-1], n) }
	END {
		print "step load to 4 ready replicas (autoscaled): " med(s, ns)
		print "baseline, skiff scale 1 -> 4 by hand:         " med(b, nb)
		print "scale down decision after the load fell (window 8s): " med(d, nd)
		print "cold start from zero, first of 50 answered:   " med(f, nf)
		print "cold start from zero, last of 50 answered:    " med(l, nl)
	}' "$lines"
go test -tags seccomp -count=1 -run "^$" -bench BenchmarkLoadSample -benchtime 3s ./netlb/ | grep -E "Benchmark|ok"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
