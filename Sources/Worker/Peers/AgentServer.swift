import Foundation
import Sandbox
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// What the worker serves an agent, as the ACP client: its `fs/*`,
/// `terminal/*` and `session/request_permission` requests, each decided under
/// the step's policy and reported as an event (which the control plane audits).
/// A refusal is a JSON-RPC error to the agent and a `permission.denied` event;
/// the step goes on, and the agent may try something else.
struct AgentServer: Sendable {
    let policy: StepPolicy
    let paths: PathRules
    let onPermission: AgentStep.OnPermission
    /// The MCP servers offered to the agent: a tool call it asks about is
    /// theirs when its title reads `server/tool`.
    let servers: Set<String>
    /// Spawns a terminal's command under the step's layer (on a thread of its own).
    let spawn: @Sendable (_ program: String, _ argv: [String], _ env: [String: String], _ cwd: String) async throws -> PeerProcess
    let environment: @Sendable ([String: String]) throws -> [String: String]
    let terminals: Terminals
    let workspace: String
    let emit: @Sendable (JobEventType, JSONValue) -> Void
    /// `onPermission: ask`: asks the control plane for a person's decision on a title.
    let ask: @Sendable (String) async -> Bool
    /// Runs a file operation on a thread that took the step's Landlock layer:
    /// the path checks below give the agent a clear answer, and the kernel
    /// holds the operation itself to the same policy, so a directory swapped
    /// for a symlink between the check and the open leads nowhere.
    let confine: @Sendable (@escaping @Sendable () -> LineRPC.Reply) async -> LineRPC.Reply

    /// Permission questions, one at a time.
    let asking = SerialGate()

    /// Largest file `fs/read_text_file` returns.
    static let maxRead = 16 << 20

    /// JSON-RPC codes of the answers: ACP's "resource not found", and the
    /// server-error range for a refusal.
    static let notFound = -32002
    static let refused = -32000

    func serve(_ method: String, _ params: JSONValue) async -> LineRPC.Reply {
        switch method {
        case "fs/read_text_file": return await confine { read(params) }
        case "fs/write_text_file": return await confine { write(params) }
        case "terminal/create": return await createTerminal(params)
        case "terminal/output", "terminal/wait_for_exit", "terminal/kill", "terminal/release": return await terminal(method, params)
        case "session/request_permission": return await permission(params)
        default: return .error(code: -32601, message: "method not found: \(String(method.prefix(100)))")
        }
    }

    private func served(_ method: String, _ target: String, _ outcome: String) {
        emit(.agentRequest, ["method": .string(method), "target": .string(String(target.prefix(1000))), "outcome": .string(outcome)])
    }

    private func denied(_ method: String, dimension: String, value: String) -> LineRPC.Reply {
        served(method, value, "denied")
        emit(.permissionDenied, ["dimension": .string(dimension), "value": .string(String(value.prefix(1000))), "method": .string(method)])
        return .error(code: Self.refused, message: "PermissionDenied: \(dimension) does not allow \(value)")
    }

    // MARK: fs

    private func read(_ params: JSONValue) -> LineRPC.Reply {
        let method = "fs/read_text_file"
        guard case let .string(path)? = params["path"] else { return .error(code: -32602, message: "path is required") }
        switch paths.read(path) {
        case let .invalid(why):
            served(method, path, "invalid")
            return .error(code: -32602, message: why)
        case let .denied(dimension, real): return denied(method, dimension: dimension, value: real)
        case let .allowed(real):
            guard let handle = FileHandle(forReadingAtPath: real) else {
                served(method, real, "missing")
                return .error(code: Self.notFound, message: "Resource not found: \(real)")
            }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: Self.maxRead + 1)) ?? Data()
            guard data.count <= Self.maxRead else {
                served(method, real, "too large")
                return .error(code: -32603, message: "\(real) is larger than \(Self.maxRead >> 20) MiB")
            }
            var text = String(decoding: data, as: UTF8.self)
            // Clamped: numbers are the agent's, and arithmetic on them must not trap.
            let line = params["line"].flatMap { if case let .number(n) = $0, n.isFinite { Int(max(1, min(n, 1e9))) } else { nil } }
            let limit = params["limit"].flatMap { if case let .number(n) = $0, n.isFinite { Int(max(0, min(n, 1e9))) } else { nil } }
            if line != nil || limit != nil {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                let start = max(0, (line ?? 1) - 1)
                let end = limit.map { min(lines.count, start + max(0, $0)) } ?? lines.count
                text = start < end ? lines[start..<end].joined(separator: "\n") + (end < lines.count ? "\n" : "") : ""
            }
            served(method, real, "allowed")
            return .result(["content": .string(text)])
        }
    }

    private func write(_ params: JSONValue) -> LineRPC.Reply {
        let method = "fs/write_text_file"
        guard case let .string(path)? = params["path"], case let .string(content)? = params["content"] else {
            return .error(code: -32602, message: "path and content are required")
        }
        switch paths.write(path) {
        case let .invalid(why):
            served(method, path, "invalid")
            return .error(code: -32602, message: why)
        case let .denied(dimension, real): return denied(method, dimension: dimension, value: real)
        case let .allowed(real):
            // Never through a symlink planted at the target: O_NOFOLLOW.
            let fd = open(real, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let why = String(cString: strerror(errno))
                served(method, real, "failed")
                return .error(code: -32603, message: "cannot write \(real): \(why)")
            }
            defer { close(fd) }
            let bytes = Array(content.utf8)
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else {
                    let why = String(cString: strerror(errno))
                    served(method, real, "failed")
                    return .error(code: -32603, message: "cannot write \(real): \(why)")
                }
                done += n
            }
            served(method, real, "allowed")
            return .result(.null)
        }
    }

    // MARK: terminal

    private func createTerminal(_ params: JSONValue) async -> LineRPC.Reply {
        let method = "terminal/create"
        guard case let .string(command)? = params["command"] else { return .error(code: -32602, message: "command is required") }
        let args = (params["args"].list).compactMap(\.stringValue)
        var declared: [String: String] = [:]
        for item in params["env"].list {
            if case let .string(name)? = item["name"], case let .string(value)? = item["value"] { declared[name] = value }
        }
        guard terminals.reserve() else {
            return .error(code: -32603, message: "this step already holds \(Terminals.maxOpen) terminals; release one first")
        }
        var reserved = true
        defer { if reserved { terminals.unreserve() } }
        let cwd: String, program: String
        do {
            cwd = try StepRunner.resolveCwd(params["cwd"]?.stringValue, workspace: workspace)
            program = try StepRunner.resolveProgram(command, cwd: cwd)
        } catch {
            return .error(code: -32602, message: "\(error)")
        }
        if !policy.unrestricted, !policy.executables.contains(program) {
            return denied(method, dimension: "allowedExecutables", value: program)
        }
        do {
            let env = try environment(declared)
            let process = try await spawn(program, [command] + args, env, cwd)
            process.closeStdin()
            let limit = params["outputByteLimit"].flatMap { if case let .number(n) = $0 { Int(exactly: n) } else { nil } }
            reserved = false
            let id = terminals.add(process, limit: limit)
            served(method, ([program] + args).joined(separator: " "), "allowed")
            return .result(["terminalId": .string(id)])
        } catch {
            return .error(code: -32603, message: "\(error)")
        }
    }

    private func terminal(_ method: String, _ params: JSONValue) async -> LineRPC.Reply {
        guard case let .string(id)? = params["terminalId"] else { return .error(code: -32602, message: "terminalId is required") }
        if method == "terminal/release" {
            return terminals.release(id) ? .result(.object([:])) : .error(code: Self.notFound, message: "no terminal \(id)")
        }
        guard let entry = terminals.entry(id) else { return .error(code: Self.notFound, message: "no terminal \(id)") }
        switch method {
        case "terminal/kill":
            entry.process.kill()
            return .result(.object([:]))
        case "terminal/wait_for_exit":
            let status = await entry.process.waitForExit()
            await entry.settle()
            return .result(Terminals.exitStatus(status))
        default:
            if entry.process.exitStatus != nil { await entry.settle() }
            let (bytes, truncated) = entry.output.withLock { ($0.bytes, $0.truncated) }
            var out: [String: JSONValue] = ["output": .string(String(decoding: bytes, as: UTF8.self)), "truncated": .bool(truncated)]
            if let status = entry.process.exitStatus { out["exitStatus"] = Terminals.exitStatus(status) }
            return .result(.object(out))
        }
    }

    // MARK: permission

    /// The tool call's title says which tool it is: `server/tool` for a tool of
    /// an MCP server offered to the agent, which `allowedTools` decides. Any
    /// other tool is the agent's own: its effects are held by the sandbox and by
    /// the `fs/*` and `terminal/*` checks above, so it is let through unless the
    /// step says `onPermission: deny`. `allow_always` is never chosen: an agent
    /// may remember it beyond this step (fast-agent writes it into the workspace).
    private func permission(_ params: JSONValue) async -> LineRPC.Reply {
        let method = "session/request_permission"
        let title = params["toolCall"]?["title"]?.stringValue ?? params["toolCall"]?["toolCallId"]?.stringValue ?? "?"
        let options = params["options"].list
        var allow = onPermission != .deny
        var dimension = "onPermission"
        let parts = title.split(separator: "/", maxSplits: 1).map(String.init)
        if allow, parts.count == 2, servers.contains(parts[0]) || policy.mcpServers.contains(parts[0]) {
            allow = policy.allowsTool(server: parts[0], tool: parts[1])
            dimension = "allowedTools"
        }
        func option(_ kinds: [String]) -> String? {
            for kind in kinds {
                if let o = options.first(where: { $0["kind"]?.stringValue == kind }), case let .string(id)? = o["optionId"] { return id }
            }
            return nil
        }
        if allow, onPermission == .ask {
            // Only what the policy allows is asked: a person can narrow, never widen.
            // One question at a time: an agent cannot pile up requests on the control plane.
            allow = await asking.run { await ask(title) }
            if !allow { dimension = "approval" }
        }
        if allow, let id = option(["allow_once"]) {
            served(method, title, "allowed")
            return .result(["outcome": ["outcome": "selected", "optionId": .string(id)]])
        }
        served(method, title, "rejected")
        emit(.permissionDenied, ["dimension": .string(dimension), "value": .string(String(title.prefix(1000))), "method": .string(method)])
        if let id = option(["reject_once", "reject_always"]) {
            return .result(["outcome": ["outcome": "selected", "optionId": .string(id)]])
        }
        return .result(["outcome": ["outcome": "cancelled"]])
    }
}
