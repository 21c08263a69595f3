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

listener_container "$listener" "$lport" > /dev/null
id=$("$DOCKER" inspect -f '{{.Id}}' "$listener")
line="portwatch_port_info\{[^}]*port=\"$lport\"[^}]*container=\"$listener\""
wait_for 20 shown "$url/metrics" "$line" || { scrape "$url/metrics" | grep port_info; "$DOCKER" logs "$container" 2>&1 | tail; fail "the listener in $listener is not named with its container"; }
scrape "$url/metrics" | grep -E "^portwatch_port_info\{[^}]*port=\"$lport\"" | grep -c "container_id=\"$id\"" > /dev/null || fail "no container_id $id"
wait_for 10 shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"$lport\"" || fail "the policy does not flag port $lport"
shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"9976\"" && fail "the policy flags portwatch's own port"
say "listener $lport in container $listener named (container_id ${id:0:12}) and flagged unexpected"

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
