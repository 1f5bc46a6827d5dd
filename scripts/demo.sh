#!/usr/bin/env bash
# The README's first command: on a fresh Debian or Ubuntu machine, as root,
#
#   sudo scripts/demo.sh          install what is missing, build skiff and the
#                                 demo image, start a single-node skiff, deploy
#                                 examples/web.toml and show the service
#                                 answering from every replica
#   sudo scripts/demo.sh stop     delete the demo, stop that skiff and remove
#                                 what it made on this node (links, rules,
#                                 cgroups); its data dir stays
#
# It is idempotent: a second run reuses the running server and the apply
# reports "unchanged". skiff is built into bin/skiff of this checkout; the
# server runs in the background (not under systemd) with its log in
# $LOG and its pid in $PIDFILE. Default paths: data /var/lib/skiff, API
# socket /run/skiff/skiff.sock (so that `bin/skiff get pods` just works).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
RUN_DIR=${SKIFF_RUN_DIR:-/run/skiff}
export SKIFF_API=unix://$RUN_DIR/skiff.sock
# SKIFF_CONFIG: a node config to use instead of /etc/skiff/config.toml.
CONFIG_ARGS=()
[ -z "${SKIFF_CONFIG:-}" ] || CONFIG_ARGS=(--config "$SKIFF_CONFIG")
LOG=${SKIFF_DEMO_LOG:-/var/log/skiff-demo.log}
PIDFILE=${SKIFF_DEMO_PIDFILE:-/run/skiff-demo.pid}
TIMEOUT=${SKIFF_DEMO_TIMEOUT:-60} # seconds for each wait
SKIFF=$ROOT/bin/skiff
MANIFEST=$ROOT/examples/web.toml
IMAGE_ARCHIVE=$DATA_DIR/images/skiff-demo.tar

step() { printf '\n==> %s\n' "$*"; }
die() {
	echo "demo: $*" >&2
	if [ -s "$LOG" ]; then
		echo "--- last lines of $LOG:" >&2
		tail -n 25 "$LOG" >&2
	fi
	exit 1
}

# wait_for SECONDS WHAT CMD...: runs CMD every half second until it
# succeeds, or fails with "WHAT after SECONDSs".
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			return 1
		fi
		sleep 0.5
	done
	echo "   $what"
}

server_pid() {
	local pid
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

api_up() { "$SKIFF" get nodes -o json; }
node_ready() { "$SKIFF" get nodes | awk 'NR>1 && $2 ~ /^Ready/ {ok=1} END {exit !ok}'; }
# app_ready: the web app has 3/3 ready replicas.
app_ready() { "$SKIFF" get apps web | awk 'NR==2 && $3 == "3/3" {ok=1} END {exit !ok}'; }

[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh: run as root: sudo scripts/demo.sh (skiff makes namespaces, cgroups and iptables rules)" >&2; exit 1; }

stop() {
	if [ -x "$SKIFF" ] && api_up >/dev/null 2>&1; then
		step "deleting the demo app"
		"$SKIFF" delete -f "$MANIFEST" --ignore-not-found
		if ! wait_for "$TIMEOUT" "pods gone" sh -c "! '$SKIFF' get pods | awk 'NR>1 && \$2==\"web\"' | grep -q ."; then
			echo "   demo pods still there after ${TIMEOUT}s; stopping anyway" >&2
		fi
	fi
	if pid=$(server_pid); then
		step "stopping skiff (pid $pid)"
		kill -TERM "$pid"
		wait_for 30 "stopped" sh -c "! kill -0 $pid" || { echo "   still running after 30s: kill -9 $pid" >&2; kill -KILL "$pid" || true; }
		rm -f "$PIDFILE"
	else
		echo "no skiff started by this script is running ($PIDFILE)"
	fi
	if [ -x "$SKIFF" ]; then
		step "removing what skiff made on this node (skiff agent --cleanup)"
		"$SKIFF" agent --cleanup "${CONFIG_ARGS[@]}" --data-dir "$DATA_DIR" --run-dir "$RUN_DIR" || echo "   cleanup failed (see above)" >&2
	fi
	echo "done; skiff's state stays in $DATA_DIR (rm -rf it to start afresh)"
}

case "${1:-start}" in
stop)
	stop
	exit 0
	;;
start) ;;
*)
	echo "usage: sudo scripts/demo.sh [start|stop]" >&2
	exit 2
	;;
esac

step "checking dependencies (Debian packages)"
source scripts/deps.sh
export PATH=$PATH:/usr/local/go/bin
echo "   ok"

step "building bin/skiff"
mkdir -p bin
go build -tags seccomp -o "$SKIFF" ./cmd/skiff
echo "   $SKIFF"

step "building the demo image from examples/demo"
mkdir -p "$DATA_DIR/images"
chmod 700 "$DATA_DIR"
go run ./examples/mkimage -o "$IMAGE_ARCHIVE" | sed 's/^/   /'

step "importing it into this node's image store"
out=$("$SKIFF" images import "$IMAGE_ARCHIVE" "${CONFIG_ARGS[@]}" --data-dir "$DATA_DIR" 2>&1) || die "$out"
echo "$out" | sed 's/^/   /'

step "starting skiff server --agent"
if pid=$(server_pid); then
	echo "   already running (pid $pid), reusing it"
elif api_up >/dev/null 2>&1; then
	echo "   a skiff server already answers at $SKIFF_API, reusing it"
else
	mkdir -p "$(dirname "$LOG")"
	echo "--- $(date -u +%FT%TZ) scripts/demo.sh starts skiff" >>"$LOG"
	# setsid: the server outlives this script and a Ctrl-C in its terminal.
	setsid "$SKIFF" server --agent "${CONFIG_ARGS[@]}" --data-dir "$DATA_DIR" --run-dir "$RUN_DIR" >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	echo "   pid $(cat "$PIDFILE"), log $LOG"
	wait_for 30 "API up" api_up || {
		server_pid >/dev/null || die "skiff exited at start"
		die "the API did not answer within 30s"
	}
fi

step "deploying examples/web.toml (3 replicas, a cluster service, a node-port service)"
out=$("$SKIFF" apply -f "$MANIFEST" 2>&1) || die "skiff apply -f examples/web.toml failed: $out"
echo "$out" | sed 's/^/   /'

step "waiting for this node to be Ready"
wait_for "$TIMEOUT" "node Ready" node_ready || {
	"$SKIFF" get nodes >&2 || true
	die "no node Ready after ${TIMEOUT}s (does this skiff run the agent? see $LOG)"
}
"$SKIFF" get nodes | sed 's/^/   /'

step "waiting for the 3 pods to be ready"
wait_for "$TIMEOUT" "3/3 ready" app_ready || {
	"$SKIFF" get pods -o wide >&2 || true
	"$SKIFF" get events >&2 || true
	die "pods not ready after ${TIMEOUT}s; see 'bin/skiff describe app web' and $LOG"
}
"$SKIFF" get pods | sed 's/^/   /'

step "calling the service web through its cluster IP"
ip=$("$SKIFF" get services web | awk 'NR==2 {print $3}')
[ -n "$ip" ] && [ "$ip" != "-" ] || die "service web has no cluster IP"
pods=$("$SKIFF" get pods | awk 'NR>1 && $2=="web" && $4=="Running" {print $1}' | sort)
declare -A seen=()
answers=()
for i in $(seq 1 40); do
	a=$(curl -s --max-time 2 "http://$ip/" || true)
	who=${a#hello from }
	if [ -n "$a" ]; then
		seen[$who]=$((${seen[$who]:-0} + 1))
		answers+=("$who")
	fi
	# At least 12 calls, and on until every pod has answered.
	if [ "$i" -ge 12 ] && [ ${#seen[@]} -ge 3 ]; then
		break
	fi
done
echo "   $i calls to http://$ip/:"
for p in $pods; do
	printf '   %-24s answered %d times\n' "$p" "${seen[$p]:-0}"
done
missing=0
for p in $pods; do [ "${seen[$p]:-0}" -gt 0 ] || missing=1; done
[ ${#answers[@]} -gt 0 ] || die "no answer from http://$ip/"
[ $missing = 0 ] || die "not every pod answered through the cluster IP"

step "the node-port service web-public"
addr=$("$SKIFF" get nodes | awk 'NR==2 {print $3}')
# Asked on loopback here: a node port answers on 127.0.0.1 as on the node's
# own addresses, and other machines reach it at http://$addr:30080/.
if a=$(curl -s --max-time 2 "http://127.0.0.1:30080/"); then
	echo "   http://127.0.0.1:30080/ -> $a   (other machines: http://$addr:30080/)"
else
	echo "   http://127.0.0.1:30080/ did not answer; see $LOG"
fi

cat <<EOF

skiff is running (log: $LOG). Try:
   export PATH=\$PATH:$ROOT/bin
   skiff get pods -o wide
   skiff describe app web
   skiff scale app web --replicas 5
   skiff logs <pod>
   skiff exec <pod> -- hostname
Stop it and clean up: sudo scripts/demo.sh stop
EOF
