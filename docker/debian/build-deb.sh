#!/usr/bin/env bash
# Builds portwatch_VERSION_amd64.deb from the release binary with dpkg-deb, laid out as Debian
# ships prometheus-node-exporter: the binary in /usr/bin, the unit in /lib/systemd/system,
# flags in /etc/default/portwatch, the expected-listener policy in /etc/portwatch (both
# conffiles: an upgrade keeps the operator's edits), the ledger in /var/lib/portwatch.
#   docker/debian/build-deb.sh RELEASE_BINARY OUTPUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=$1
out=$2
version=$("$binary" --version | awk '{print $2}')
[ -n "$version" ] || { echo "build-deb: cannot read the version of $binary" >&2; exit 1; }
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$binary" "$root/usr/bin/portwatch"
# Stripped as Debian strips its binaries (debug symbols would go to a -dbgsym package).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/portwatch"
sed 's#/usr/local/bin/portwatch#/usr/bin/portwatch#g' docker/systemd/portwatch.service > "$root/portwatch.service"
install -D -m 0644 "$root/portwatch.service" "$root/lib/systemd/system/portwatch.service"
rm "$root/portwatch.service"
install -D -m 0644 docker/debian/default "$root/etc/default/portwatch"
install -D -m 0644 docker/policy.yaml "$root/etc/portwatch/policy.yaml"
# 0755 here; the unit's StateDirectoryMode= makes it 0750 when the service starts.
install -d -m 0755 "$root/var/lib/portwatch"
install -d "$root/usr/share/man/man1"
gzip -9n < docker/debian/portwatch.1 > "$root/usr/share/man/man1/portwatch.1.gz"
# libyaml is linked into the binary statically (see the override).
install -D -m 0644 docker/debian/lintian-overrides "$root/usr/share/lintian/overrides/portwatch"
install -D -m 0644 docker/debian/copyright "$root/usr/share/doc/portwatch/copyright"
printf 'portwatch (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- portwatch developers <portwatch@portwatch.dev>  %s\n' \
	"$version" "$version" "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" \
	| gzip -9n > "$root/usr/share/doc/portwatch/changelog.gz"

install -d "$root/DEBIAN"
install -m 0755 docker/debian/postinst docker/debian/prerm docker/debian/postrm "$root/DEBIAN/"
printf '/etc/default/portwatch\n/etc/portwatch/policy.yaml\n' > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" docker/debian/control > "$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)

mkdir -p "$out"
deb="$out/portwatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "$deb"
