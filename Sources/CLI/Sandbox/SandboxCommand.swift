import ArgumentParser

struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox", abstract: "Try the worker sandbox by hand.",
        subcommands: [SandboxExec.self])
}
