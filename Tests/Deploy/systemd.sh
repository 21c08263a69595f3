#!/usr/bin/env bash
# The Debian package under a real systemd as PID 1: a Docker container made from a debootstrap
# root filesystem with systemd, started as FIELD-NOTES measured (host cgroup namespace, the
# cgroup tree mounted read-write). `apt-get install ./portwatch_*.deb` there enables and starts
# the shipped unit with its sandboxing and syscall filter. Passes when the service is ready,
# names a listener's unit and flags it against the packaged policy, survives `systemctl reload`,
# is restarted after a crash, and `systemctl stop` ends it cleanly; reports
# `systemd-analyze security portwatch`.
#   Tests/Deploy/systemd.sh RELEASE_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
TEST_NAME=test-deploy/systemd
. Tests/Deploy/lib.sh
binary=$1
packages=systemd,systemd-sysv,dbus,curl,procps,libbpf1,libelf1,libsqlite3-0,zlib1g,libssl3,libcrypt1
image=portwatch-test/systemd:$(echo "$packages" | md5sum | cut -c1-12)
name=pwtest-systemd
lport=18082

cleanup() { "$DOCKER" rm -f "$name" > /dev/null 2>&1 || true; }
trap cleanup EXIT
inside() { "$DOCKER" exec "$name" "$@"; }
journal() { inside journalctl -u portwatch --no-pager -o cat 2>/dev/null | tail -${1:-30}; }

ensure_dockerd
# The package's dependencies come with the root filesystem: no registry or archive is needed
# to install it.
base_image "$image" "$packages"
deb=$(docker/debian/build-deb.sh "$binary" "$DEPLOY_WORK/deb")
say "package $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
# As Debian checks its own packages: no error and no warning.
lintian --tag-display-limit 0 --fail-on error,warning "$deb" 2>&1 | grep -v "running with root privileges" || true
lintian --fail-on error,warning "$deb" > /dev/null 2>&1 || fail "lintian reports errors or warnings"
say "lintian: clean"

cleanup
"$DOCKER" run -d --name "$name" --cap-add=ALL --cap-drop=SYS_RESOURCE \
	--security-opt seccomp=unconfined --security-opt apparmor=unconfined --cgroupns=host \
	-v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock "$image" /lib/systemd/systemd > /dev/null
booted() { state=$(inside systemctl is-system-running 2>/dev/null || true); [ "$state" = running ] || [ "$state" = degraded ]; }
wait_for 60 booted || fail "systemd did not boot ($(inside systemctl is-system-running 2>&1 || true))"
say "systemd $(inside systemctl --version | awk 'NR==1 {print $2}') is PID 1"

if ! memlock_unlimited_possible; then
	limit=$(inside sh -c 'ulimit -H -l')
	say "this machine cannot raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE): the unit's LimitMEMLOCK=infinity held to $limit KiB by a drop-in"
	inside mkdir -p /etc/systemd/system/portwatch.service.d
	inside sh -c "printf '[Service]\nLimitMEMLOCK=${limit}K\n' > /etc/systemd/system/portwatch.service.d/memlock.conf"
fi
"$DOCKER" cp "$deb" "$name:/tmp/"
inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/tmp/$(basename "$deb")" > "$DEPLOY_WORK/apt-install.log" 2>&1 \
	|| { tail -20 "$DEPLOY_WORK/apt-install.log"; fail "apt-get install"; }
ready() { inside curl -sf --max-time 2 http://127.0.0.1:9976/-/ready; }
wait_for 60 ready || { inside systemctl status portwatch --no-pager || true; journal; fail "the packaged service never became ready"; }
[ "$(inside systemctl is-enabled portwatch)" = enabled ] || fail "the package did not enable the service"
pid=$(inside systemctl show -p MainPID --value portwatch)
say "apt-get install started portwatch.service (pid $pid, enabled), ready"

# A listener in a unit of its own: named by that unit, and unexpected by the packaged policy.
# (systemd expands $VAR in a command line: $$ is a literal $.)
inside systemd-run --unit pwtest-web perl -MIO::Socket::INET -e \
	"\$\$s = IO::Socket::INET->new(LocalPort => $lport, Listen => 5, ReuseAddr => 1) or die; sleep" > /dev/null 2>&1
metrics() { inside curl -sf --max-time 5 http://127.0.0.1:9976/metrics || true; }
has() { metrics | grep -cE "$1" > /dev/null; }
wait_for 20 has "^portwatch_port_info\{[^}]*port=\"$lport\"[^}]*unit=\"pwtest-web.service\"" \
	|| { metrics | grep port_info; journal; fail "the listener is not named with its unit"; }
wait_for 10 has "^portwatch_unexpected_port_info\{[^}]*port=\"$lport\"" || fail "the packaged policy does not flag port $lport"
say "listener $lport named with unit pwtest-web.service and flagged unexpected"

inside systemctl reload portwatch
wait_for 10 sh -c "$DOCKER exec $name journalctl -u portwatch -o cat | grep -c 'policy reloaded' > /dev/null" || { journal; fail "SIGHUP did not reload the policy"; }
[ "$(inside systemctl is-active portwatch)" = active ] && [ "$(inside systemctl show -p MainPID --value portwatch)" = "$pid" ] \
	|| { journal; fail "systemctl reload did not keep the daemon running"; }
say "systemctl reload: policy reloaded, same process"

inside systemctl kill -s SIGSEGV portwatch
restarted() { p=$(inside systemctl show -p MainPID --value portwatch); [ "$p" != 0 ] && [ "$p" != "$pid" ] && ready; }
wait_for 30 restarted || { journal; fail "not restarted after a crash"; }
say "a crash (SIGSEGV) is restarted by Restart=on-failure: pid $pid -> $(inside systemctl show -p MainPID --value portwatch), ready"

inside systemctl stop portwatch
[ "$(inside systemctl show -p Result --value portwatch)" = success ] || { journal; fail "systemctl stop: result $(inside systemctl show -p Result --value portwatch)"; }
journal 5 | grep -c "BPF programs detached" > /dev/null || { journal; fail "no clean stop in the journal"; }
inside journalctl -o cat --no-pager | grep -ciE "SIGSYS|code=killed, status=31" > /dev/null && fail "the syscall filter killed the daemon"
say "systemctl stop: clean (result success)"
say "systemd-analyze security portwatch: $(inside systemd-analyze security portwatch --no-pager 2>/dev/null | tail -1 | sed 's/.*Overall exposure level for portwatch.service: //')"
say "PASS (package installed with apt, unit started by systemd as PID 1, ready, unit named, policy flags, reload, crash restart, clean stop)"
