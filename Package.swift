// swift-tools-version:6.0
import PackageDescription

// Layers, in the order data flows (see docs/design.md, "Architecture"):
//   kernel (bpf/) -> PortwatchCapture (+ PortwatchAttribution: who holds it)
//     -> PortwatchPipeline (the capture loop: PortwatchCore's reconciler) -> PortwatchStore (the ledger)
//     -> PortwatchScrape (+ PortwatchPolicy) -> PortwatchExporter (HTTP, metrics)
// PortwatchSystem (system calls, descriptors, clocks) is beneath them all; `portwatch` wires
// the live parts together. Sources/C holds the system libraries' module maps, Sources/Tools the
// build plugins' tools, the benchmark and a test helper.
let package = Package(
    name: "portwatch",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "portwatch", targets: ["portwatch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries from the system (libbpf-dev, libsqlite3-dev, zlib1g-dev, libyaml-dev).
        .systemLibrary(name: "CBPF", path: "Sources/C/CBPF", pkgConfig: "libbpf"),
        // The system calls and kernel headers Swift's Glibc does not reach (capabilities, setns,
        // file handles, netlink and sock_diag structs); wrapped by PortwatchSystem.
        .systemLibrary(name: "CSystem", path: "Sources/C/CSystem"),
        .systemLibrary(name: "CSQLite", path: "Sources/C/CSQLite", pkgConfig: "sqlite3"),
        .systemLibrary(name: "CZlib", path: "Sources/C/CZlib", pkgConfig: "zlib"),
        // libyaml's header; the library is linked statically by PortwatchYAML.
        .systemLibrary(name: "CYAML", path: "Sources/C/CYAML"),
        .systemLibrary(name: "CCrypt", path: "Sources/C/CCrypt"),
        // OpenSSL headers only: the library is loaded when TLS is configured (see its shim.h).
        .systemLibrary(name: "COpenSSL", path: "Sources/C/COpenSSL"),

        // Compiles bpf/*.bpf.c with the toolchain's clang and emits it as a Swift source.
        .executableTarget(name: "BPFEmbed", path: "Sources/Tools/BPFEmbed"),
        .plugin(name: "BPFObjectPlugin", capability: .buildTool(), dependencies: ["BPFEmbed"]),
        // Stamps the daemon with its git revision and build time (`portwatch --version`).
        .executableTarget(name: "BuildStamp", path: "Sources/Tools/BuildStamp"),
        .plugin(name: "BuildInfoPlugin", capability: .buildTool(), dependencies: ["BuildStamp"]),

        // Every raw system call, errno as a typed error, one owner per file descriptor.
        .target(name: "PortwatchSystem", dependencies: ["CSystem"]),
        // Pure domain: events, bindings, the truth-table reconciler. No kernel, no SQLite.
        .target(name: "PortwatchCore"),
        // A YAML document as a tree of nodes (libyaml): the policy file and the web configuration.
        .target(name: "PortwatchYAML", dependencies: ["CYAML"],
                linkerSettings: [.linkedLibrary(":libyaml.a")]),
        // Which listeners are expected: the policy file and its matching.
        .target(name: "PortwatchPolicy", dependencies: ["PortwatchCore", "PortwatchSystem", "PortwatchYAML"]),
        // The reconciled table and counters in SQLite.
        .target(name: "PortwatchStore", dependencies: ["PortwatchCore", "PortwatchSystem", "CSQLite"]),
        // Who holds a port: cgroup id or path -> systemd unit, container, Kubernetes pod.
        .target(name: "PortwatchAttribution", dependencies: ["PortwatchCore", "PortwatchSystem"]),
        // Kernel capture: load + attach BPF, drain the ring buffer, snapshot sockets.
        .target(
            name: "PortwatchCapture",
            dependencies: ["PortwatchCore", "PortwatchSystem", "CBPF", "CSystem", .product(name: "Logging", package: "swift-log")],
            plugins: ["BPFObjectPlugin"]
        ),
        // HTTP listener on POSIX sockets and the Prometheus/OpenMetrics renderer.
        .target(
            name: "PortwatchExporter",
            dependencies: ["PortwatchCore", "PortwatchSystem", "PortwatchYAML", "CZlib", "CCrypt", "COpenSSL",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The capture loop (kernel -> reconciler -> ledger, resyncs, readiness) on its thread,
        // and the seams it runs behind (kernel events, socket lister, ledger, owner lookup):
        // the composition root plugs in the live ones, tests plug in fakes.
        .target(
            name: "PortwatchPipeline",
            dependencies: ["PortwatchCore", "PortwatchSystem", .product(name: "Logging", package: "swift-log")]
        ),
        // The read side: the policy file, watched and reloaded, and the scrape source (ledger +
        // policy + the pipeline's health -> the exporter's state).
        .target(
            name: "PortwatchScrape",
            dependencies: ["PortwatchCore", "PortwatchStore", "PortwatchExporter", "PortwatchPolicy", "PortwatchPipeline",
                           "PortwatchSystem", .product(name: "Logging", package: "swift-log")]
        ),
        // The daemon: flags, wiring, and the ledger commands.
        .executableTarget(
            name: "portwatch",
            dependencies: [
                "PortwatchCore", "PortwatchStore", "PortwatchCapture", "PortwatchExporter", "PortwatchPolicy", "PortwatchPipeline",
                "PortwatchScrape", "PortwatchAttribution", "PortwatchSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Release: the toolchain's lld packs the ~77,000 relative relocations of the static
            // runtime into a few KiB of RELR (glibc 2.36+), so start-up does not page in 1.8 MiB
            // of relocation records and keeps 2 MiB of RSS off the daemon's idle footprint.
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                                          .when(configuration: .release))],
            plugins: ["BuildInfoPlugin"]
        ),

        // Helpers for tests and benchmarks, not shipped.
        .target(name: "PortwatchTestSupport", path: "Tests/Support"),
        .executableTarget(name: "StoreCrashWriter", dependencies: ["PortwatchStore", "PortwatchCore"], path: "Sources/Tools/StoreCrashWriter"),
        // `make bench`: every figure measured side by side with its baseline in one run.
        .executableTarget(name: "portwatch-bench", dependencies: ["PortwatchCore", "PortwatchStore", "PortwatchExporter", "PortwatchCapture",
                                                            "PortwatchScrape", "PortwatchTestSupport", "CSQLite", "CBPF",
                                                            .product(name: "Logging", package: "swift-log")],
                         path: "Sources/Tools/portwatch-bench",
                         // bpf/parts.bpf.c: the bind path taken apart, compiled by the plugin.
                         exclude: ["bpf"], plugins: ["BPFObjectPlugin"]),
        .testTarget(name: "PortwatchCoreTests", dependencies: ["PortwatchCore"]),
        .testTarget(name: "PortwatchPolicyTests", dependencies: ["PortwatchPolicy", "PortwatchYAML", "PortwatchCore"]),
        .testTarget(name: "PortwatchAttributionTests", dependencies: ["PortwatchAttribution", "PortwatchCore"]),
        .testTarget(name: "PortwatchPipelineTests", dependencies: ["PortwatchPipeline", "PortwatchScrape", "PortwatchPolicy", "PortwatchCore", "PortwatchStore",
                                                                   "PortwatchExporter", "PortwatchSystem", "PortwatchTestSupport",
                                                                   .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PortwatchStoreTests", dependencies: ["PortwatchStore", "PortwatchCore", "StoreCrashWriter", "PortwatchTestSupport"]),
        .testTarget(name: "PortwatchCLITests", dependencies: ["portwatch", "PortwatchStore", "PortwatchCore", "PortwatchTestSupport"]),
        .testTarget(name: "PortwatchExporterTests", dependencies: ["PortwatchExporter", "PortwatchCore", "PortwatchTestSupport"]),
        // Start the real daemon (real BPF, needs root); built first through the dependency.
        .testTarget(name: "PortwatchIntegrationTests", dependencies: ["portwatch", "PortwatchTestSupport", "CBPF"]),
    ]
)
