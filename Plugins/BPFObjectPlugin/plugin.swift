import Foundation
import PackagePlugin

/// Compiles every `bpf/*.bpf.c` of the package with the toolchain's clang and hands the
/// object to the target as a generated Swift source (the bytes as base64), so that
/// `swift build` alone produces a binary with the BPF object embedded. Only the Swift
/// file is declared as an output: a declared `.o` would be bundled as a resource.
/// A target with a `bpf` folder of its own (the benchmark's) gets that folder's objects
/// instead; they may include the package's `bpf/` sources and headers.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let packageDir = context.package.directoryURL.appending(path: "bpf")
        // (Target.directoryURL needs tools version 6.1.)
        let ownDir = URL(fileURLWithPath: target.directory.string).appending(path: "bpf")
        let bpfDir = FileManager.default.fileExists(atPath: ownDir.path) ? ownDir : packageDir
        func sources(_ dir: URL) throws -> [URL] {
            try FileManager.default.contentsOfDirectory(atPath: dir.path)
                .filter { $0.hasSuffix(".bpf.c") || $0.hasSuffix(".h") }
                .sorted()
                .map { dir.appending(path: $0) }
        }
        let own = try sources(bpfDir)
        let inputs = own + (bpfDir == packageDir ? [] : try sources(packageDir))
        let clang = try context.tool(named: "clang").url
        let embed = try context.tool(named: "BPFEmbed").url
        return own.filter { $0.lastPathComponent.hasSuffix(".bpf.c") }.map { source in
            let stem = source.lastPathComponent.replacingOccurrences(of: ".bpf.c", with: "")
            let output = context.pluginWorkDirectoryURL.appending(path: "\(stem)_bpf_object.swift")
            return .buildCommand(
                displayName: "Compiling BPF program \(source.lastPathComponent)",
                executable: embed,
                arguments: [
                    "--clang", clang.path, "--source", source.path, "--include", packageDir.path, "--output", output.path,
                    "--symbol", "\(stem)BPFObjectBase64",
                ],
                inputFiles: inputs,
                outputFiles: [output]
            )
        }
    }
}
