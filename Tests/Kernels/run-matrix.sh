#!/usr/bin/env bash
# Runs the kernel integration suites inside each of Debian's 5.10, 6.1 and 6.12 kernels
# (booted with virtme-ng under QEMU software emulation, the host's root filesystem shared
# read-only) and prints a table kernel x test. Fails if any test fails or a kernel's run
# does not finish. Build the tests first (swift build --build-tests).
#   Tests/Kernels/run-matrix.sh [FILTER]     FILTER: a Swift Testing --filter (default below)
#   KERNELS=5.10 Tests/Kernels/run-matrix.sh  only the kernels whose release starts so
set -uo pipefail
cd "$(dirname "$0")/../.."
filter=${1:-${KERNEL_TEST_FILTER:-KernelCaptureTests|ListenerFidelityTests|DetachTests|AttributionAndErrorTests|AttributionIntegrationTests|WalkingSkeletonTests|ProcesslessPortTests|ListenerHealthTests|ExecutableTests}}
tests=$PWD/.build/debug/portwatchPackageTests.xctest
[ -x "$tests" ] || { echo "run-matrix: build the tests first (swift build --build-tests)" >&2; exit 2; }
out=$PWD/.build/kernels/results
mkdir -p "$out"
kernels=$(Tests/Kernels/fetch.sh .build/kernels) || { echo "run-matrix: cannot fetch the kernels" >&2; exit 2; }
if [ -n "${KERNELS:-}" ]; then
	kernels=$(for dir in $kernels; do for k in $KERNELS; do case "$(basename "$dir")" in "$k"*) echo "$dir";; esac; done; done)
fi

status=0
names=()
summary=()
# One boot of a kernel running the suites; sets rc (empty if the run did not finish).
boot() {
	local release=$1 dir=$2 log=$3
	# The guest prints between markers on the serial console; vng's own exit code is always 255.
	# The end marker is printed again a second later: once, on a loaded host, the guest
	# powered off before its last line reached the console.
	timeout 1500 vng -r "$dir/boot/vmlinuz-$release" --disable-kvm -v -m 3G -p 2 -e "dmesg -n 1; cd $PWD; echo PWMARK-BEGIN; \
		PORTWATCH_REQUIRE_BPF=1 $tests --testing-library swift-testing --filter '$filter' 2>&1; rc=\$?; \
		echo PWMARK-END rc=\$rc; sleep 1; echo PWMARK-END rc=\$rc" \
		> "$log" 2>&1 < /dev/null
	sed -n '/PWMARK-BEGIN/,/PWMARK-END/p' "$log" | sed 's/\x1b\[[0-9;]*m//g' > "$out/$release.txt"
	rc=$(grep -oE 'PWMARK-END rc=[0-9]+' "$out/$release.txt" | tail -n1 | sed 's/.*rc=//')
}
for dir in $kernels; do
	release=$(basename "$dir")
	names+=("$release")
	log="$out/$release.log"
	started=$(date +%s)
	boot "$release" "$dir" "$log"
	note=""
	if [ -z "$rc" ] && [ $(( $(date +%s) - started )) -lt 300 ]; then
		# A run that ended within minutes without finishing: the emulator or the boot, not a
		# test (a test that hangs runs into the timeout, and is not retried). Its log's end is
		# kept in the output, and the kernel is booted once more; a second such run fails.
		echo "run-matrix: $release: the run did not finish after $(( $(date +%s) - started ))s; its log ends:"
		sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 15 | sed 's/^/    /'
		cp "$log" "$out/$release.first.log"
		boot "$release" "$dir" "$log"
		note=" (second run; the first did not finish, $out/$release.first.log)"
	fi
	elapsed=$(( $(date +%s) - started ))
	if [ -z "$rc" ]; then
		status=1
		summary+=("run-matrix: $release: the run did not finish after ${elapsed}s$note; its log ends:
$(sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 15 | sed 's/^/    /')")
	else
		[ "$rc" = 0 ] || status=1
		summary+=("run-matrix: $release: exit $rc after ${elapsed}s$note")
	fi
	echo "${summary[-1]}"
done

# The table: one row per test, one column per kernel.
printf '\n%-70s' "test"
for n in "${names[@]}"; do printf ' %-22s' "$n"; done
printf '\n'
tests_seen=$(cat "$out"/*.txt 2>/dev/null | grep -oE '(✔|✘) Test [^ (]+\([^)]*\)' | sed -E 's/^(✔|✘) Test //' | sort -u)
while IFS= read -r t; do
	[ -n "$t" ] || continue
	printf '%-70s' "$t"
	for n in "${names[@]}"; do
		f="$out/$n.txt"
		if grep -qF "✘ Test $t" "$f"; then r=FAIL; status=1
		elif grep -qF "✔ Test $t" "$f"; then r=pass
		else r=missing; status=1; fi
		printf ' %-22s' "$r"
	done
	printf '\n'
done <<< "$tests_seen"
[ -n "$tests_seen" ] || { echo "run-matrix: no test ran"; status=1; }
for n in "${names[@]}"; do grep -E '^✘ .*recorded an issue' "$out/$n.txt" | sed "s/^/$n: /" | head -20; done
# Each kernel's outcome again, last, where a truncated log still shows it.
printf '%s\n' "${summary[@]}"
exit $status
