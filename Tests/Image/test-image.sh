#!/usr/bin/env bash
# Proves the container image's runtime stage without a Docker engine: builds a root
# filesystem from exactly the packages docker/Dockerfile's runtime stage installs (Debian
# bookworm, minbase, read from the Dockerfile so the two cannot drift), copies the release
# binary in, applies the Dockerfile's setcap, and runs the daemon in it with chroot as uid
# 65534 holding only the capabilities compose.yaml and the DaemonSet grant. Passes when
# /-/ready answers, a real listener shows in /metrics, and SIGTERM stops it cleanly.
#   Tests/Image/test-image.sh BINARY [WORKDIR]
set -euo pipefail
binary=$1
work=${2:-.build/image}
dockerfile=docker/Dockerfile
mkdir -p "$work"
work=$(cd "$work" && pwd)
rootfs="$work/rootfs"
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }

# The runtime stage: everything after the last FROM.
runtime=$(awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' "$dockerfile")
packages=$(printf '%s' "$runtime" | tr '\\' ' ' | tr '\n' ' ' | grep -oE 'apt-get install [^&]*' \
	| tr ' ' '\n' | grep -vE '^(apt-get|install|-y|--no-install-recommends|)$' | sed 's/=.*//' | sort -u | tr '\n' ',' | sed 's/,$//')
capabilities=$(printf '%s' "$runtime" | grep -oE 'setcap [^ ]+' | awk '{print $2}')
grants=$(grep -oE 'cap_add: \[[^]]*\]' docker/compose.yaml | sed 's/cap_add: \[//; s/\]//; s/ //g' | tr 'A-Z' 'a-z')
k8s=$(python3 -c 'import yaml
d = yaml.safe_load(open("docker/kubernetes/base/daemonset.yaml"))
c = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "portwatch")
print(",".join(x.lower() for x in c["securityContext"]["capabilities"]["add"]))')
[ -n "$packages" ] && [ -n "$capabilities" ] && [ -n "$grants" ] || fail "cannot read the runtime stage from $dockerfile"
[ "$grants" = "$k8s" ] || fail "compose.yaml grants $grants but the DaemonSet grants $k8s"
echo "test-image: runtime packages: $packages"
echo "test-image: file capabilities: $capabilities; granted: $grants"

# The archive the machine uses (deb822 or one-line sources), as tests/Kernels/fetch.sh does.
archive=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
	| grep -E '^[[:space:]]*(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
[ -n "$archive" ] || fail "no Debian archive URI in /etc/apt/sources*"

# The root filesystem, rebuilt when the package list changes.
if [ "$(cat "$work/packages" 2>/dev/null)" != "$packages" ] || [ ! -x "$rootfs/usr/sbin/setcap" ]; then
	rm -rf "$rootfs"
	echo "test-image: debootstrap bookworm (minbase + $packages) from $archive"
	debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$archive" > "$work/debootstrap.log" 2>&1 \
		|| { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
	echo "$packages" > "$work/packages"
fi

# Owned by the daemon's user, read-only, as the Dockerfile installs it (before setcap, which chown clears).
install -D -m 0555 -o 65534 -g 65534 "$binary" "$rootfs/usr/local/bin/portwatch"
chroot "$rootfs" setcap "$capabilities" /usr/local/bin/portwatch
mkdir -p "$rootfs/var/lib/portwatch"
rm -f "$rootfs"/var/lib/portwatch/*
chown 65534:65534 "$rootfs/var/lib/portwatch"

# What a container sees: /proc, /sys (BTF, the cgroup v2 hierarchy), /dev.
mounts=()
cleanup() {
	[ -n "${daemon:-}" ] && kill -9 "$daemon" 2>/dev/null || true
	[ -n "${listener:-}" ] && kill "$listener" 2>/dev/null || true
	for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for m in proc sys dev; do
	mountpoint -q "$rootfs/$m" || { mount --rbind "/$m" "$rootfs/$m"; mount --make-rslave "$rootfs/$m"; mounts+=("$rootfs/$m"); }
done

# The ldd view inside the image: every library resolves from the image's own packages.
if chroot "$rootfs" ldd /usr/local/bin/portwatch | grep -q "not found"; then
	chroot "$rootfs" ldd /usr/local/bin/portwatch
	fail "the binary needs libraries the runtime stage does not install"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bounding=$(echo "$grants" | tr ',' '\n' | sed 's/^/+/' | paste -sd, -)
log="$work/portwatch.log"
chroot "$rootfs" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all,"$bounding" \
	/usr/local/bin/portwatch --web.listen-address="127.0.0.1:$port" --db.path=/var/lib/portwatch/portwatch.db > "$log" 2>&1 &
daemon=$!

ready=""
for _ in $(seq 1 120); do
	if curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; then ready=yes; break; fi
	kill -0 "$daemon" 2>/dev/null || break
	sleep 0.25
done
[ -n "$ready" ] || { cat "$log"; fail "the daemon in the image never became ready"; }
echo "test-image: ready as $(ps -o user= -p "$(pgrep -P "$daemon" -f portwatch || echo "$daemon")" 2>/dev/null || echo '?')"
status=$(cat "/proc/$daemon/status" 2>/dev/null || true)
echo "$status" | grep -E '^(Uid|CapEff|CapBnd):' || true
echo "$status" | grep -qE '^Uid:\s+65534' || fail "the daemon does not run as uid 65534"

python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
' > "$work/listener.port" &
listener=$!
for _ in $(seq 1 40); do [ -s "$work/listener.port" ] && break; sleep 0.1; done
lport=$(cat "$work/listener.port")
shown=""
for _ in $(seq 1 40); do
	if curl -sf "http://127.0.0.1:$port/metrics" | grep -q "^portwatch_port_info{.*port=\"$lport\".*comm=\"python3\""; then shown=yes; break; fi
	sleep 0.25
done
[ -n "$shown" ] || { curl -s "http://127.0.0.1:$port/metrics" | grep port_info; cat "$log"; fail "listener on $lport not in /metrics"; }
echo "test-image: listener $lport shown with its process"

kill -TERM "$daemon"
rc=0; wait "$daemon" || rc=$?
daemon=""
[ "$rc" = 0 ] || { cat "$log"; fail "exit status $rc after SIGTERM"; }
grep -q "BPF programs detached" "$log" || { cat "$log"; fail "no clean stop in the log"; }
echo "test-image: PASS (ready, listener shown, clean stop)"
