import Foundation
import NIOCore
import Sandbox
import Wire
import Workflow

/// `mcp.tools`: the server runs under a layer that lets it execute only its
/// own program and read its own installation, writes only in the job's
/// workspace, and reaches no network.
enum MCPToolsJob {
    static func run(_ p: MCPTools.Params, loop: any EventLoop) async throws -> MCPTools.Result {
        let ruleset = LandlockRuleset.step(workspace: p.workspace, fsRead: p.server.readable, fsWrite: [], executables: p.server.executables)
        let env = try StepRunner.environment(p.server.env, workspace: p.workspace)
        let launch = p.server
        let process: PeerProcess
        do {
            process = try await spawnConfined(launch.program, argv: launch.argv, env: env, cwd: p.workspace, limits: p.limits,
                                              ruleset: ruleset, loop: loop)
        } catch {
            throw RPCError(code: RPCError.execFailed, message: "cannot start \(launch.id): \(error)")
        }
        let stderr = StderrTail(fd: process.stderr)
        defer { process.kill() }
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(p.timeoutMs))
            process.kill()
        }
        defer { watchdog.cancel() }
        do {
            let (client, info) = try await MCPClient.start(input: process.stdout, output: process.stdin, loop: loop, onMalformed: { _ in })
            defer { client.close() }
            let tools = try await client.listTools()
            return MCPTools.Result(tools: .array(tools),
                                   server: ["serverInfo": info["serverInfo"] ?? .null, "protocolVersion": info["protocolVersion"] ?? .null])
        } catch {
            var message = "\(launch.id): \(error)"
            if let status = process.exitStatus { message = "\(launch.id) \(PeerProcess.describe(status))" }
            throw RPCError(code: RPCError.execFailed, message: message + Interpreter.tail(stderr.text))
        }
    }
}
