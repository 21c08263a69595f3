#!/usr/bin/env bash
# Shared by the deployment tests: a real Docker engine (Debian's docker.io, started here when
# none runs), base images made locally (no registry is reachable: a debootstrap root filesystem
# through `docker import`), and waits on conditions with deadlines.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
DEPLOY_WORK=${DEPLOY_WORK:-$PWD/.build/deploy}
mkdir -p "$DEPLOY_WORK"
DEPLOY_WORK=$(cd "$DEPLOY_WORK" && pwd)

say() { echo "${TEST_NAME:-deploy}: $*"; }
fail() { echo "${TEST_NAME:-deploy}: FAIL: $*" >&2; exit 1; }

# Runs "$@" until it succeeds or SECONDS pass: wait_for SECONDS command...
wait_for() {
	local deadline=$((SECONDS + $1)); shift
	until "$@" > /dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.5
	done
}

# The engine: the one running, or dockerd started now (kept running for the next tests).
ensure_dockerd() {
	if "$DOCKER" info > /dev/null 2>&1; then return; fi
	command -v dockerd > /dev/null || fail "no dockerd: install docker.io"
	say "starting dockerd (log: $DEPLOY_WORK/dockerd.log)"
	nohup dockerd > "$DEPLOY_WORK/dockerd.log" 2>&1 &
	wait_for 60 "$DOCKER" info || { tail -20 "$DEPLOY_WORK/dockerd.log"; fail "dockerd did not start"; }
}

# The archive this machine's apt uses (deb822 or one-line sources).
debian_archive() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
		| grep -E '^[[:space:]]*(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true
}

# base_image TAG [PACKAGES]: a Debian bookworm minbase (plus PACKAGES, comma-separated) as the
# image TAG, with the apt sources Debian's own images carry; made once, then reused.
base_image() {
	local tag=$1 packages=${2:-}
	if "$DOCKER" image inspect "$tag" > /dev/null 2>&1; then return; fi
	local archive rootfs="$DEPLOY_WORK/rootfs-${tag//[:\/]/-}"
	archive=$(debian_archive)
	[ -n "$archive" ] || fail "no Debian archive URI in /etc/apt/sources*"
	say "debootstrap bookworm${packages:+ with $packages} for $tag"
	rm -rf "$rootfs"
	debootstrap --variant=minbase ${packages:+--include="$packages"} bookworm "$rootfs" "$archive" > "$rootfs.log" 2>&1 \
		|| { tail -20 "$rootfs.log"; fail "debootstrap failed"; }
	rm -f "$rootfs/etc/apt/sources.list"
	cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${archive%/}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${archive%/debian*}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | "$DOCKER" import - "$tag" > /dev/null
	rm -rf "$rootfs"
}

# The image of docker/Dockerfile with the release binary given (PORTWATCH_BINARY=prebuilt).
build_image() {
	local binary=$1 tag=$2
	base_image debian:bookworm-slim
	install -D -m 0755 "$binary" docker/prebuilt/portwatch
	say "docker build -f docker/Dockerfile --build-arg PORTWATCH_BINARY=prebuilt -t $tag ."
	DOCKER_BUILDKIT=1 "$DOCKER" build -q -f docker/Dockerfile --build-arg PORTWATCH_BINARY=prebuilt -t "$tag" . > "$DEPLOY_WORK/build.log" 2>&1 \
		|| { tail -30 "$DEPLOY_WORK/build.log"; fail "docker build failed"; }
	local size base
	size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
	base=$("$DOCKER" image inspect -f '{{.Size}}' debian:bookworm-slim)
	say "image $tag: $(awk -v s="$size" -v b="$base" 'BEGIN { printf "%.1f MB over its base image (%.1f MB in all)", (s - b) / 1e6, s / 1e6 }')"
}

# A listener in a container of its own (its own network namespace and cgroup): prints its id.
# listener_container NAME PORT [IMAGE]
listener_container() {
	"$DOCKER" run -d --rm --name "$1" "${3:-debian:bookworm-slim}" \
		perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die $!; sleep' "$2"
}

# metrics URL: one scrape's text (empty when not answered).
scrape() { curl -sf --max-time 5 "$1" || true; }

# shown URL REGEX: whether a scrape has a line matching REGEX. (grep -c reads all its input:
# grep -q would stop at the first match, and the writer's SIGPIPE fail the pipe under pipefail.)
shown() { scrape "$1" | grep -cE "$2" > /dev/null; }

# Whether this machine can give a process an unlimited RLIMIT_MEMLOCK (what the unit and compose
# ask for Linux < 5.11). A machine whose own bounding set lacks CAP_SYS_RESOURCE (a sandboxed
# CI runner) cannot: there the tests hold the deployments to the limit it has, and say so.
memlock_unlimited_possible() { prlimit --memlock=unlimited:unlimited true > /dev/null 2>&1; }
memlock_hard_kib() { ulimit -H -l; }
