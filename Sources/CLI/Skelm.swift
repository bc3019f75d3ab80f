import ArgumentParser
import ControlPlane
import Foundation

struct Skelm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skelm",
        abstract: "Run agentic workflows in sandboxed workers behind one audited gateway.",
        subcommands: [GatewayCommand.self, RunCommand.self, RunsCommand.self, WorkflowsCommand.self, WorkersCommand.self, AgentsCommand.self, SessionsCommand.self, MCPCommand.self, SkillsCommand.self, ApprovalsCommand.self, ScheduleCommand.self, AuditCommand.self, ConfigCommand.self, StoreCommand.self,
                      SandboxCommand.self, Doctor.self, WorkerCommand.self])
}

/// Options every command that reads the config shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Config file (default: ./skelm.config.yaml when present).")
    var config: String?

    /// Loads and validates the config; a bad one is reported on stderr with exit 2.
    func load() throws -> ConfigLoader.Loaded {
        do {
            return try ConfigLoader.load(path: path)
        } catch {
            FileHandle.standardError.write(Data("skelm: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    var path: String? {
        if let config { return config }
        return FileManager.default.fileExists(atPath: "skelm.config.yaml") ? "skelm.config.yaml" : nil
    }
}


/// Hidden: the worker entry point (handled in main.swift before parsing).
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Internal: a sandboxed worker.",
                                                    shouldDisplay: false)
    @Option var fd: Int32 = 3
    @Option var sandbox: String = ""
    func run() throws {
        throw ValidationError("skelm worker is started by the gateway, not by hand")
    }
}
