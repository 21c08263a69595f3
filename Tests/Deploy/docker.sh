#!/usr/bin/env bash
# The container image as users run it: built from docker/Dockerfile by a real Docker engine
# (Debian's docker.io; the release binary goes in through the Dockerfile's prebuilt stage,
# since no registry serves the Swift image here), then started by docker-compose from
# docker/compose.yaml itself. Passes when the daemon is ready, names a listener in another
# container by its container and flags it against docker/policy.yaml, keeps its ledger in the
# named volume across a restart, and stops cleanly on SIGTERM.
#   Tests/Deploy/docker.sh RELEASE_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
TEST_NAME=test-deploy/docker
. Tests/Deploy/lib.sh
binary=$1
project=portwatch-test
compose=(docker-compose -f docker/compose.yaml -p "$project")
listener=pwtest-web
lport=18081
url=http://127.0.0.1:9976

cleanup() {
	"${compose[@]}" down -v > /dev/null 2>&1 || true
	"$DOCKER" rm -f "$listener" > /dev/null 2>&1 || true
}
trap cleanup EXIT

ensure_dockerd
build_image "$binary" portwatch:latest
# An image just built has its files' pages dirty in the page cache (reclaim leaves those to
# writeback); a node runs an image pulled or built earlier.
sync
if ! memlock_unlimited_possible; then
	limit=$(( $(memlock_hard_kib) * 1024 ))
	say "this machine cannot raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE): compose's memlock -1 held to its $limit bytes"
	printf 'services:\n  portwatch:\n    ulimits:\n      memlock: {soft: %s, hard: %s}\n' "$limit" "$limit" > "$DEPLOY_WORK/compose.memlock.yaml"
	compose+=(-f "$DEPLOY_WORK/compose.memlock.yaml")
fi
cleanup
# Only portwatch: the Prometheus and Grafana services need their images from a registry.
"${compose[@]}" up -d --no-build portwatch > "$DEPLOY_WORK/compose.log" 2>&1 || { cat "$DEPLOY_WORK/compose.log"; fail "docker-compose up"; }
container=$("${compose[@]}" ps -q portwatch)
wait_for 60 curl -sf "$url/-/ready" || { "$DOCKER" logs "$container" 2>&1 | tail -20; fail "never ready"; }
say "ready: $("$DOCKER" inspect -f 'user {{.Config.User}}, caps {{.HostConfig.CapAdd}}' "$container")"
# KiB resident of the executable's code and constants (read-only mappings), from /proc/PID/smaps.
code_kib() { awk '/^[0-9a-f]+-[0-9a-f]+ r-[-x]p .*\/portwatch$/ {c = 1; next} /^[0-9a-f]+-/ {c = 0} c && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps"; }
pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$container")
# Sampled from ready on, while the checks below run.
( while [ -e "/proc/$pid/smaps" ]; do code_kib "$pid" || true; sleep 0.2; done > "$DEPLOY_WORK/code-kib" 2> /dev/null ) &
sampler=$!

listener_container "$listener" "$lport" > /dev/null
id=$("$DOCKER" inspect -f '{{.Id}}' "$listener")
line="portwatch_port_info\{[^}]*port=\"$lport\"[^}]*container=\"$listener\""
wait_for 20 shown "$url/metrics" "$line" || { scrape "$url/metrics" | grep port_info; "$DOCKER" logs "$container" 2>&1 | tail; fail "the listener in $listener is not named with its container"; }
scrape "$url/metrics" | grep -E "^portwatch_port_info\{[^}]*port=\"$lport\"" | grep -c "container_id=\"$id\"" > /dev/null || fail "no container_id $id"
wait_for 10 shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"$lport\"" || fail "the policy does not flag port $lport"
shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"9976\"" && fail "the policy flags portwatch's own port"
say "listener $lport in container $listener named (container_id ${id:0:12}) and flagged unexpected"

# Once ready, at its first heap check (30 s after start), the daemon gives back the pages of the
# code only start-up ran: the kernel reclaims them for the file's owner, which the image makes
# the daemon's user. Its executable's resident code falls below half of the most it had.
fell() { awk '{ if ($1 > most) most = $1; now = $1 } END { exit !(now > 0 && now < most / 2) }' "$DEPLOY_WORK/code-kib"; }
wait_for 60 fell || fail "the daemon's start-up code stayed resident (KiB resident, sampled from ready on: $(sort -n "$DEPLOY_WORK/code-kib" | uniq | tr '\n' ' '))"
kill "$sampler" 2> /dev/null || true
say "start-up's code given back: at most $(sort -n "$DEPLOY_WORK/code-kib" | tail -1) KiB of the executable resident, $(tail -1 "$DEPLOY_WORK/code-kib") KiB after the first heap check"

opens() { scrape "$url/metrics" | awk '/^portwatch_events_total\{kind="open"\}/ {print $2}'; }
before=$(opens)
"${compose[@]}" restart portwatch > /dev/null 2>&1
wait_for 60 curl -sf "$url/-/ready" || fail "not ready after a restart"
after=$(opens)
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a >= b && b > 0) }' || fail "counters did not survive a restart ($before -> $after): the ledger is not in the volume"
say "restart: the ledger stayed in the named volume (opens $before -> $after)"

"${compose[@]}" stop -t 30 portwatch > /dev/null 2>&1
status=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$container")
"$DOCKER" logs "$container" 2>&1 | grep -c "BPF programs detached" > /dev/null \
	|| { "$DOCKER" logs "$container" 2>&1 | tail -8; fail "no clean stop in the log (exit status $status)"; }
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
say "PASS (image built by Docker $("$DOCKER" version -f '{{.Server.Version}}'), compose.yaml run by docker-compose, ready, container named, policy flags, ledger kept, clean stop)"
