import Foundation
import PackagePlugin

/// Stamps the target with the git revision it is built from and the build time. It runs
/// again whenever HEAD or the branch it names moves.
@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let package = context.package.directoryURL
        let git = package.appending(path: ".git")
        var inputs = [git.appending(path: "HEAD"), git.appending(path: "packed-refs")]
        if let head = try? String(contentsOf: git.appending(path: "HEAD"), encoding: .utf8), head.hasPrefix("ref: ") {
            inputs.append(git.appending(path: head.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildStamp.swift")
        return [.buildCommand(
            displayName: "Stamping the build revision",
            executable: try context.tool(named: "BuildStamp").url,
            arguments: ["--package", package.path, "--output", output.path],
            inputFiles: inputs.filter { FileManager.default.fileExists(atPath: $0.path) },
            outputFiles: [output]
        )]
    }
}
