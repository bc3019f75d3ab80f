import ArgumentParser
import ControlPlane
import Foundation
import Logging
import Wire

struct SandboxExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run one command in a fresh sandboxed worker, exactly as an exec step runs.",
        discussion: """
        The command gets an empty workspace as its working directory and HOME, the
        trusted PATH, the config's limits, no network and no view of the host's
        processes. Its stdout and stderr are printed; the exit status is the command's
        (or 125 when the sandbox stopped it, 126 when it could not start).

          skelm sandbox exec -- python3 -c 'print(open("/etc/hostname").read())'
          skelm sandbox exec --json -- sh -c 'echo hi > out.txt; cat out.txt'
        """)

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Print the whole outcome (result, cause, sandbox layers) as JSON.")
    var json = false
    @Option(help: "Seconds before the command is killed.")
    var timeout: Int?
    @Option(name: .customLong("env"), help: "KEY=VALUE for the command's environment (repeatable).")
    var env: [String] = []
    @Option(help: "Text for the command's standard input.")
    var stdin: String?
    @Flag(help: "Keep the workspace afterwards and print its path.")
    var keepWorkspace = false
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).")
    var command: [String]

    func run() async throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give a command after --") }
        var environment: [String: String] = [:]
        for pair in env {
            guard let eq = pair.firstIndex(of: "=") else { throw ValidationError("--env wants KEY=VALUE, got \(pair)") }
            environment[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        let loaded = try options.load()
        var logger = Logger(label: "skelm.sandbox")
        logger.logLevel = .error
        let scratch = try ScratchGateway(loaded, logger: logger) { $0.workers.minSpare = 0 }
        let exec = ExecSpec(argv: argv, env: environment, stdin: stdin,
                            timeoutMs: (timeout ?? loaded.config.workers.limits.timeoutSeconds) * 1000)
        var jobOptions = WorkerPool.JobOptions()
        jobOptions.keepWorkspace = keepWorkspace
        let outcome = await scratch.gateway.pool.run(exec, options: jobOptions)
        await scratch.finish(keep: keepWorkspace)

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(outcome), as: UTF8.self))
        } else {
            if let result = outcome.result {
                FileHandle.standardOutput.write(Data(result.stdout.utf8))
                FileHandle.standardError.write(Data(result.stderr.utf8))
            }
            if let failure = outcome.failure {
                FileHandle.standardError.write(Data("skelm: \(failure)\n".utf8))
            }
            if keepWorkspace { FileHandle.standardError.write(Data("workspace: \(outcome.workspace)\n".utf8)) }
        }
        throw ExitCode(Self.exitCode(outcome))
    }

    static func exitCode(_ outcome: JobOutcome) -> Int32 {
        guard let result = outcome.result else { return outcome.violation ? 125 : 126 }
        if let code = result.exitCode { return code }
        return 125
    }
}
