#!/usr/bin/env bash
# The idle daemon's resident memory inside Debian's 5.10, 6.1 and 6.12 kernels (QEMU software
# emulation, as run-matrix.sh boots them), this build against a baseline, with both binaries
# on an ext4 disk of their own: the host's root is shared over 9p, which reads no file ahead,
# while a node reads its binary from a block device (read-ahead 128 KiB, the kernel's default).
# Each run: the binary's pages dropped from the page cache, a fresh daemon, ready, then 8 gzip
# scrapes 2 s apart (the heap check every 2 s, so start-up's code is given back), then VmRSS,
# RssFile, RssAnon and the executable's resident code from /proc. Runs alternate the builds.
#   Tests/Kernels/idle-memory.sh BASELINE [THIS]   THIS defaults to the release build
#   KERNELS=6.12 RUNS=3 Tests/Kernels/idle-memory.sh BASELINE
set -uo pipefail
cd "$(dirname "$0")/../.."
baseline=${1:?usage: idle-memory.sh BASELINE [THIS]}
this=${2:-$(swift build -c release --static-swift-stdlib --show-bin-path)/portwatch}
runs=${RUNS:-3}
for b in "$baseline" "$this"; do [ -x "$b" ] || { echo "idle-memory: $b is not an executable" >&2; exit 2; }; done
kernels=$(Tests/Kernels/fetch.sh .build/kernels) || { echo "idle-memory: cannot fetch the kernels" >&2; exit 2; }
if [ -n "${KERNELS:-}" ]; then
	kernels=$(for dir in $kernels; do for k in $KERNELS; do case "$(basename "$dir")" in "$k"*) echo "$dir";; esac; done; done)
fi
# Under the checkout, which the guest sees (the host root is shared read-only).
work=$PWD/.build/idle-memory
rm -rf "$work" && mkdir -p "$work/disk"
cp "$baseline" "$work/disk/baseline"
cp "$this" "$work/disk/this"
# The guest's part: it finds the disk by its size (no udev), mounts it read-only and measures.
cat > "$work/disk/guest.sh" <<'GUEST'
#!/bin/bash
runs=$1
modprobe -a virtio_blk virtio_scsi sd_mod 2>/dev/null
for i in $(seq 50); do
	for b in /sys/block/*; do [ "$(cat "$b/size")" = 262144 ] && dev=$(basename "$b"); done
	[ -n "${dev:-}" ] && break; sleep 0.2
done
[ -n "${dev:-}" ] || { echo "IDLE-ERROR no disk"; exit 1; }
[ -e /dev/$dev ] || mknod /dev/$dev b $(tr ':' ' ' < /sys/block/$dev/dev)
mkdir -p /tmp/disk && mount -t ext4 -o ro /dev/$dev /tmp/disk || { echo "IDLE-ERROR cannot mount /dev/$dev"; exit 1; }
echo "IDLE-READAHEAD $(cat /sys/block/$dev/queue/read_ahead_kb)"
field() { awk -v f="$1:" '$1==f{print $2}' /proc/$2/status; }
measure() {
	bin=/tmp/disk/$1
	python3 -c "import os; fd=os.open('$bin', os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)"
	rm -rf /tmp/pw; mkdir -p /tmp/pw
	PORTWATCH_HEAP_CHECK_SECONDS=2 $bin --db.path /tmp/pw/db --web.listen-address 127.0.0.1:9990 > /tmp/pw/log 2>&1 &
	pid=$!
	for i in $(seq 300); do curl -sf 127.0.0.1:9990/-/ready > /dev/null && break; sleep 0.5; done
	for i in $(seq 8); do curl -s -H 'Accept-Encoding: gzip' 127.0.0.1:9990/metrics > /dev/null; sleep 2; done
	code=$(awk -v b="$bin" '$6==b && $2=="r-xp"{f=1} f && $1=="Rss:"{print $2; f=0}' /proc/$pid/smaps)
	echo "IDLE-RESULT $1 $(field VmRSS $pid) $(field RssFile $pid) $(field RssAnon $pid) $code"
	kill $pid; wait $pid 2> /dev/null
}
for r in $(seq "$runs"); do
	if [ $((r % 2)) = 1 ]; then measure this; measure baseline; else measure baseline; measure this; fi
done
GUEST
chmod +x "$work/disk/guest.sh"
truncate -s 128M "$work/disk.img"
mkfs.ext4 -q -d "$work/disk" "$work/disk.img" || { echo "idle-memory: cannot make the disk image" >&2; exit 2; }

status=0
printf '%-24s %-9s %5s %10s %10s %10s %10s\n' kernel build runs "RSS MiB" "file MiB" "anon MiB" "code MiB"
for dir in $kernels; do
	release=$(basename "$dir")
	log="$work/$release.log"
	timeout 1800 vng -r "$dir/boot/vmlinuz-$release" --disable-kvm -v -m 3G -p 2 --disk "$work/disk.img" \
		-e "dmesg -n 1; echo IDLE-BEGIN; bash $work/disk/guest.sh $runs; echo IDLE-END" > "$log" 2>&1 < /dev/null
	grep -q IDLE-END "$log" && ! grep -q IDLE-ERROR "$log" || { echo "idle-memory: $release: no result (see $log)"; grep IDLE-ERROR "$log"; status=1; continue; }
	for build in this baseline; do
		grep "^IDLE-RESULT $build " "$log" | awk -v k="$release" -v b="$build" '
			{ rss[NR] = $3 / 1024; file[NR] = $4 / 1024; anon[NR] = $5 / 1024; code[NR] = $6 / 1024 }
			function median(a, n,   i, j, t) {
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}
			END { printf "%-24s %-9s %5d %10.1f %10.1f %10.1f %10.1f\n", k, b, NR, median(rss, NR), median(file, NR), median(anon, NR), median(code, NR) }'
	done
	grep "^IDLE-RESULT" "$log" | sed "s/^/$release /"
done
exit $status
