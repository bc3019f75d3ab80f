import Foundation
import Sandbox
import Wire
import Workflow

/// `mcp` steps: the server starts inside the step's sandbox, answers one
/// `tools/call`, and ends with the step. The call is reported as an `mcp.call`
/// event (server, tool, outcome; never the arguments, which may hold secrets).
extension Interpreter {
    func runMCP(_ mcp: MCPStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> Outcome {
        let policy = spec.policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { throw deny(path, denied) }
        guard let launch = spec.mcpServers[mcp.server] else {
            throw fail(path, .invalidStep, "MCP server \(mcp.server) is not registered in config (mcpServers:)")
        }
        let arguments: JSONValue
        do { arguments = try Template.evaluate(mcp.arguments, in: frame.scope(input: spec.input, env: env)) } catch {
            throw fail(path, .expressionError, "arguments: \(error.message)")
        }
        if launch.resident { return try await runResidentMCP(mcp, step: step, path: path, arguments: arguments, deadline: deadline) }
        let sandbox = try peerSandbox(policy: policy, path: path, env: launch.env)
        defer { sandbox.close() }
        let process: PeerProcess
        do {
            process = try await startPeer(launch.program, argv: launch.argv, env: sandbox.env, cwd: spec.workspace,
                                          sandbox: sandbox)
        } catch {
            throw fail(path, .mcpFailed, "cannot start MCP server \(mcp.server): \(error)")
        }
        let stderr = StderrTail(fd: process.stderr)
        defer { process.kill() }
        let timeoutMs = Int(timeLeft(step, deadline).milliseconds)
        let timedOut = Shared(false)
        let connection = Shared<MCPClient?>(nil)
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(timeoutMs))
            timedOut.set(true)
            process.kill()
            // A descendant may still hold its output open: the call ends here.
            connection.get?.close()
        }
        defer { watchdog.cancel() }
        let started = ContinuousClock.now
        func report(_ outcome: String) {
            emit(.mcpCall, step: path, data: ["server": .string(mcp.server), "tool": .string(mcp.tool), "outcome": .string(outcome),
                                              "durationMs": .number(started.elapsedMs)])
        }
        func failure(_ error: any Error, _ what: String) async -> StepFailure {
            if timedOut.get { return fail(path, .timeout, "timed out after \(timeoutMs) ms \(what)") }
            var message = "MCP server \(mcp.server) \(what): \(error)"
            // A closed pipe is a peer ending: its status and its last words are worth a moment.
            if let status = await process.exitStatus(within: .seconds(1)) { message = "MCP server \(mcp.server) \(PeerProcess.describe(status)) \(what)" }
            return fail(path, .mcpFailed, message + Self.tail(await stderr.settled()))
        }
        let client: MCPClient
        do {
            (client, _) = try await MCPClient.start(input: process.stdout, output: process.stdin, loop: loop, onMalformed: { _ in })
        } catch { throw await failure(error, "while initializing") }
        connection.set(client)
        defer { client.close() }
        let result: JSONValue
        do { result = try await client.call(mcp.tool, arguments: arguments) } catch {
            report("error")
            throw await failure(error, "calling \(mcp.tool)")
        }
        return try outcome(of: result, mcp, path: path, report: report)
    }

    /// The step's output from a tool's result, reported either way.
    private func outcome(of result: JSONValue, _ mcp: MCPStep, path: String, report: (String) -> Void) throws -> Outcome {
        do {
            let output = try MCPClient.output(of: result)
            report("ok")
            return Outcome(output: output, details: ["server": .string(mcp.server), "tool": .string(mcp.tool)])
        } catch {
            report("error")
            throw fail(path, .mcpFailed, "\(mcp.server)/\(mcp.tool): \(error)")
        }
    }

    /// A resident server answers through the control plane, which checks the
    /// call against this step's policy again and hands it to the server's worker.
    private func runResidentMCP(_ mcp: MCPStep, step: Step, path: String, arguments: JSONValue,
                                deadline: ContinuousClock.Instant?) async throws -> Outcome {
        let timeoutMs = Int(timeLeft(step, deadline).milliseconds)
        let started = ContinuousClock.now
        func report(_ outcome: String) {
            emit(.mcpCall, step: path, data: ["server": .string(mcp.server), "tool": .string(mcp.tool), "outcome": .string(outcome),
                                              "durationMs": .number(started.elapsedMs)])
        }
        let answer: MCPCallResult
        do {
            answer = try await calls.residentMCP(.init(jobId: spec.jobId, step: path, server: mcp.server,
                                                       operation: .call(tool: mcp.tool, arguments: arguments), timeoutMs: timeoutMs))
        } catch {
            report("error")
            throw fail(path, .mcpFailed, "MCP server \(mcp.server): \(error)")
        }
        switch answer {
        case .timedOut:
            report("error")
            throw fail(path, .timeout, "timed out after \(timeoutMs) ms calling \(mcp.tool) on resident MCP server \(mcp.server)")
        case let .failed(why):
            report("error")
            throw fail(path, .mcpFailed, "MCP server \(mcp.server) calling \(mcp.tool): \(why)")
        case let .result(result):
            return try outcome(of: result, mcp, path: path, report: report)
        }
    }
}
