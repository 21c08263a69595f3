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
# One boot of a kernel running the suites; sets rc (empty if the run did not finish) and
# lockup (the guest kernel reported a soft lockup: the run was stopped a little later, with the
# kernel's report in the log).
boot() {
	local release=$1 dir=$2 log=$3 pid
	lockup=""
	# The guest prints between markers on the serial console; vng's own exit code is always 255.
	# The end marker is printed again a second later: once, on a loaded host, the guest
	# powered off before its last line reached the console. Kernel messages of warning level
	# and above reach the console too (a soft lockup's report, with its backtrace).
	timeout 1500 vng -r "$dir/boot/vmlinuz-$release" --disable-kvm -v -m 3G -p 2 -e "dmesg -n 5; cd $PWD; echo PWMARK-BEGIN; \
		PORTWATCH_REQUIRE_BPF=1 $tests --testing-library swift-testing --filter '$filter' 2>&1; rc=\$?; \
		echo PWMARK-END rc=\$rc; sleep 1; echo PWMARK-END rc=\$rc" \
		> "$log" 2>&1 < /dev/null &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		if [ -z "$lockup" ] && grep -aq 'soft lockup' "$log"; then
			# Nothing moves in a guest whose CPUs are stuck: keep the reports of a minute, stop it.
			lockup=1
			sleep ${LOCKUP_GRACE:-60}
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	wait "$pid" 2>/dev/null
	sed -n '/PWMARK-BEGIN/,/PWMARK-END/p' "$log" | sed 's/\x1b\[[0-9;]*m//g' > "$out/$release.txt"
	rc=$(grep -oE 'PWMARK-END rc=[0-9]+' "$out/$release.txt" | tail -n1 | sed 's/.*rc=//')
}
# The guest kernel's soft lockup reports in a log: the first one whole, then the count.
lockups() {
	sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -a -A 40 -m 1 'soft lockup' | sed 's/^/    /'
	echo "    ($(grep -ac 'soft lockup' "$1") soft lockup reports in all, $1)"
}
for dir in $kernels; do
	release=$(basename "$dir")
	names+=("$release")
	log="$out/$release.log"
	started=$(date +%s)
	boot "$release" "$dir" "$log"
	note=""
	if [ -z "$rc" ] && { [ -n "$lockup" ] || [ $(( $(date +%s) - started )) -lt 300 ]; }; then
		# A run that ended within minutes without finishing (the emulator or the boot), or whose
		# kernel locked up: its log's end (or the lockup's report) is kept in the output, and the
		# kernel is booted once more; a second such run fails. A test that hangs runs into the
		# timeout, and is not retried.
		cp "$log" "$out/$release.first.log"
		if [ -n "$lockup" ]; then
			first="the guest kernel locked up"
			echo "run-matrix: $release: $first after $(( $(date +%s) - started ))s; its report:"
			lockups "$out/$release.first.log"
		else
			first="did not finish"
			echo "run-matrix: $release: the run did not finish after $(( $(date +%s) - started ))s; its log ends:"
			sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 15 | sed 's/^/    /'
		fi
		boot "$release" "$dir" "$log"
		note=" (second run; in the first $first, $out/$release.first.log)"
	fi
	elapsed=$(( $(date +%s) - started ))
	if [ -n "$lockup" ]; then
		status=1
		summary+=("run-matrix: $release: the guest kernel locked up after ${elapsed}s$note; its report:
$(lockups "$log")")
	elif [ -z "$rc" ]; then
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
