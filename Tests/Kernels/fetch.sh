#!/usr/bin/env bash
# Downloads and unpacks Debian's stock kernels for the test matrix into $1 (default
# .build/kernels): the newest 5.10 (bullseye), 6.1 (bookworm) and 6.12 (bookworm-backports)
# `-amd64` images. Uses a private apt configuration built from the archive URI in the
# machine's own apt sources; the system's sources and /boot are never touched.
set -euo pipefail
out=${1:-.build/kernels}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/apt"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"

# The archive the machine already uses (deb822 or one-line sources).
archive=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
	| grep -E '^[[:space:]]*(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
archive=${archive%/}
[ -n "$archive" ] || { echo "fetch.sh: no Debian archive URI in /etc/apt/sources*" >&2; exit 1; }
security=${archive%/debian}/debian-security
cat > "$work/sources.list" <<SOURCES
deb $archive bullseye main
deb $security bullseye-security main
deb $archive bookworm main
deb $security bookworm-security main
deb $archive bookworm-backports main
SOURCES
apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Get::List-Cleanup=0)
apt-get "${apt_opts[@]}" update -qq

for series in 5.10 6.1 6.12; do
	package=$(apt-cache "${apt_opts[@]}" search --names-only "^linux-image-${series//./\\.}\.[0-9a-z.+~-]*-amd64$" \
		| awk '{print $1}' | grep -vE -- '-(unsigned|cloud|rt)-|-dbg' | sort -V | tail -n1)
	[ -n "$package" ] || { echo "fetch.sh: no linux-image for $series in the archive" >&2; exit 1; }
	release=${package#linux-image-}
	if [ ! -f "$out/$release/boot/vmlinuz-$release" ]; then
		(cd "$work" && apt-get -o APT::Sandbox::User=root "${apt_opts[@]}" download -qq "$package")
		rm -rf "$out/$release.tmp"
		dpkg -x "$work"/"${package}"_*.deb "$out/$release.tmp"
		mv "$out/$release.tmp" "$out/$release"
		rm -f "$work"/"${package}"_*.deb
	fi
	echo "$out/$release"
done
