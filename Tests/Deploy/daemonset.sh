#!/usr/bin/env bash
# The DaemonSet's pod as the kubelet runs it, on a real Docker engine: the pod template rendered
# by `kubectl kustomize docker/kubernetes/base` (not a copy) is turned into `docker run`s by
# podrun.py (hostPath directories created root:root 0755, runAsUser, capabilities,
# readOnlyRootFilesystem, hostPID, hostNetwork, / read-only at /host, the policy ConfigMap in the
# kubelet's ..data layout). Passes when the init container hands the state directory over and
# the daemon is ready, names a listener in another container by its container, flags it against
# the ConfigMap's policy and reloads the policy when the ConfigMap is updated, refuses a second
# pod on the same ledger, keeps its ledger across a pod restart and stops cleanly on SIGTERM.
#   Tests/Deploy/daemonset.sh RELEASE_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
TEST_NAME=test-deploy/daemonset
. Tests/Deploy/lib.sh
binary=$1
node="$DEPLOY_WORK/node"          # STATE_PREFIX: the node's hostPath directories live under it
listener=pwtest-pod-web
lport=18083
url=http://127.0.0.1:9976
rendered="$DEPLOY_WORK/daemonset.yaml"
pod() { python3 Tests/Deploy/podrun.py "$rendered" "$node" "$DEPLOY_WORK/volumes" "$@"; }

cleanup() { "$DOCKER" rm -f pwtest-pod-portwatch pwtest-pod-state-owner pwtest-pod-second "$listener" > /dev/null 2>&1 || true; }
trap cleanup EXIT

ensure_dockerd
"$DOCKER" image inspect portwatch:latest > /dev/null 2>&1 || build_image "$binary" portwatch:latest
kubectl kustomize docker/kubernetes/base > "$rendered"
cleanup
rm -rf "$node" "$DEPLOY_WORK/volumes"
pod start || { "$DOCKER" logs pwtest-pod-portwatch 2>&1 | tail; fail "the pod did not start"; }
state="$node/var/lib/portwatch"
wait_for 60 curl -sf "$url/-/ready" || { "$DOCKER" logs pwtest-pod-portwatch 2>&1 | tail -20; fail "never ready"; }
say "ready; state directory made by the kubelet's rules and handed over: $(stat -c '%U:%G %a' "$state")"
[ "$(stat -c %u "$state")" = 65534 ] || fail "the state directory is not the daemon's"

listener_container "$listener" "$lport" > /dev/null
wait_for 20 shown "$url/metrics" "^portwatch_port_info\{[^}]*port=\"$lport\"[^}]*container=\"$listener\"" \
	|| { scrape "$url/metrics" | grep port_info; fail "the listener in $listener is not named with its container"; }
wait_for 10 shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"$lport\"" || fail "the ConfigMap's policy does not flag $lport"
say "listener $lport in container $listener named and flagged unexpected"

# A ConfigMap update as the kubelet delivers it: the policy now allows the port.
allowing="$DEPLOY_WORK/policy-allowing.yaml"
{ cat docker/policy.yaml; echo "  - { port: $lport, container: $listener }"; } > "$allowing"
pod publish portwatch-policy "$allowing"
gone() { ! shown "$url/metrics" "^portwatch_unexpected_port_info\{[^}]*port=\"$lport\""; }
wait_for 5 gone || { "$DOCKER" logs pwtest-pod-portwatch 2>&1 | tail; fail "the ConfigMap update was not picked up"; }
say "ConfigMap update (..data swap) reloaded: $lport no longer unexpected"

# A second pod on the node's ledger (a surge) refuses, naming the first.
second=$(timeout 30 "$DOCKER" run --rm --name pwtest-pod-second --pid host --network host --user 65534:65534 --cap-drop=ALL \
	--cap-add=NET_ADMIN --cap-add=SYS_ADMIN --cap-add=SYS_PTRACE --cap-add=DAC_READ_SEARCH --read-only --security-opt seccomp=unconfined \
	-v "$state:/var/lib/portwatch" -v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /sys/kernel/btf:/sys/kernel/btf:ro portwatch:latest \
	--web.listen-address=127.0.0.1:19977 --db.path=/var/lib/portwatch/portwatch.db 2>&1) && fail "a second daemon on the ledger ran: $second"
echo "$second" | grep -c "already written by another portwatch (pid" > /dev/null || fail "the second daemon did not name the first: $second"
say "a second pod on the same ledger refuses: $(echo "$second" | cut -c1-100)..."

opens() { scrape "$url/metrics" | awk '/^portwatch_events_total\{kind="open"\}/ {print $2}'; }
before=$(opens)
"$DOCKER" restart pwtest-pod-portwatch > /dev/null
wait_for 60 curl -sf "$url/-/ready" || fail "not ready after the pod restarted"
after=$(opens)
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a >= b && b > 0) }' || fail "counters did not survive a restart ($before -> $after)"
say "pod restart: the ledger stayed in the hostPath (opens $before -> $after)"

"$DOCKER" stop pwtest-pod-portwatch > /dev/null
status=$("$DOCKER" inspect -f '{{.State.ExitCode}}' pwtest-pod-portwatch)
"$DOCKER" logs pwtest-pod-portwatch 2>&1 | grep -c "BPF programs detached" > /dev/null || fail "no clean stop in the log"
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
say "PASS (kustomize output run with kubelet semantics: init container, ready, container named, ConfigMap policy and its update, one writer, ledger kept, clean stop)"
