import Foundation
import PackagePlugin

/// Compiles every `bpf/*.bpf.c` of the package with the toolchain's clang and hands the
/// object to the target as a generated Swift source (the bytes as base64), so that
/// `swift build` alone produces a binary with the BPF object embedded. Only the Swift
/// file is declared as an output: a declared `.o` would be bundled as a resource.
@main
struct BPFObjectPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpfDir = context.package.directoryURL.appending(path: "bpf")
        let names = try FileManager.default.contentsOfDirectory(atPath: bpfDir.path)
            .filter { $0.hasSuffix(".bpf.c") || $0.hasSuffix(".h") }
            .sorted()
        let inputs = names.map { bpfDir.appending(path: $0) }
        let clang = try context.tool(named: "clang").url
        let embed = try context.tool(named: "BPFEmbed").url
        return inputs.filter { $0.lastPathComponent.hasSuffix(".bpf.c") }.map { source in
            let stem = source.lastPathComponent.replacingOccurrences(of: ".bpf.c", with: "")
            let output = context.pluginWorkDirectoryURL.appending(path: "\(stem)_bpf_object.swift")
            return .buildCommand(
                displayName: "Compiling BPF program \(source.lastPathComponent)",
                executable: embed,
                arguments: [
                    "--clang", clang.path, "--source", source.path, "--output", output.path,
                    "--symbol", "\(stem)BPFObjectBase64",
                ],
                inputFiles: inputs,
                outputFiles: [output]
            )
        }
    }
}
