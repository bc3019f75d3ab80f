import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Sandbox
import Synchronization
import Wire
import Workflow

/// How an ephemeral agent reaches the MCP servers its step offers it: not by
/// starting them itself, but through this gate, an MCP server (Streamable
/// HTTP, JSON answers) on the worker's loopback. The gate starts each real
/// server on first use, under the step's sandbox, and relays only what
/// `allowedTools` allows: `tools/list` shows the allowed tools, `tools/call`
/// of any other is refused, and every call is reported (`mcp.call`,
/// `permission.denied`) whether or not the agent asked permission first.
///
/// A resident server is not started here: its calls go to the control plane
/// (`mcp.resident`), which checks them again and hands them to the server's
/// own worker.
///
/// The HTTP side is `LoopbackHTTP`: no listed library serves MCP, and the
/// gate needs only POST of one JSON-RPC message.
final class MCPGate: Sendable {
    let port: UInt16
    /// What the agent sends as `Authorization: Bearer …` (in session/new's `headers`).
    let token: String
    private let server: LoopbackHTTP.Server
    private let servers: Servers

    /// The URL the agent is given for one server. It ends in `/mcp`, the
    /// Streamable HTTP convention, which some clients add when it is missing.
    func url(_ id: String) -> String { "http://127.0.0.1:\(port)/\(id)/mcp" }

    /// A request body larger than this is refused (413).
    static let maxBody = 16 << 20

    static func start(offered: [PeerLaunch], policy: StepPolicy, loop: any EventLoop,
                      spawn: @escaping @Sendable (PeerLaunch) async throws -> PeerProcess,
                      resident: @escaping @Sendable (String, MCPOperation) async throws -> MCPCallResult,
                      emit: @escaping @Sendable (JobEventType, JSONValue) -> Void) async throws -> MCPGate {
        let port = try EgressForwarder.reservePort()
        let token = LoopbackHTTP.newToken()
        let servers = Servers(offered: offered, policy: policy, loop: loop, spawn: spawn, resident: resident, emit: emit)
        do {
            let server = try await LoopbackHTTP.bind(port: port, loop: loop, maxBody: maxBody, token: token) { head, body in
                await serve(servers, head, body)
            }
            return MCPGate(port: port, token: token, server: server, servers: servers)
        } catch {
            EgressForwarder.releasePort(port)
            throw error
        }
    }

    private init(port: UInt16, token: String, server: LoopbackHTTP.Server, servers: Servers) {
        self.port = port
        self.token = token
        self.server = server
        self.servers = servers
    }

    /// Idempotent. After it, nothing more is started, relayed or reported: an
    /// event after the step's end would be a claim the control plane refuses.
    func stop() {
        guard servers.stop() else { return }
        server.stop()
        EgressForwarder.releasePort(port)
    }

    // MARK: The real servers

    /// The offered servers, each started on first use and kept for the step.
    final class Servers: Sendable {
        let offered: [String: PeerLaunch]
        let policy: StepPolicy
        let loop: any EventLoop
        let spawn: @Sendable (PeerLaunch) async throws -> PeerProcess
        let resident: @Sendable (String, MCPOperation) async throws -> MCPCallResult
        let emit: @Sendable (JobEventType, JSONValue) -> Void
        private let running = Mutex<[String: (PeerProcess, MCPClient)]>([:])
        private let starting = SerialGate()
        private let stopped = Mutex(false)
        /// How long a server may take to start and answer `initialize`.
        static let startLimit = Duration.seconds(30)

        private func report(_ type: JobEventType, _ data: JSONValue) {
            if !stopped.withLock({ $0 }) { emit(type, data) }
        }

        init(offered: [PeerLaunch], policy: StepPolicy, loop: any EventLoop, spawn: @escaping @Sendable (PeerLaunch) async throws -> PeerProcess,
             resident: @escaping @Sendable (String, MCPOperation) async throws -> MCPCallResult,
             emit: @escaping @Sendable (JobEventType, JSONValue) -> Void) {
            self.offered = Dictionary(offered.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            self.policy = policy
            self.loop = loop
            self.spawn = spawn
            self.resident = resident
            self.emit = emit
        }

        func client(_ id: String) async throws -> (MCPClient, JSONValue?) {
            if let (_, c) = running.withLock({ $0[id] }) { return (c, nil) }
            guard let launch = offered[id] else { throw MCPClient.ToolError(description: "no MCP server \(id) is offered to this step") }
            let result: Result<(MCPClient, JSONValue?), any Error> = await starting.run { [self] in
                if let (_, c) = running.withLock({ $0[id] }) { return .success((c, nil)) }
                guard !stopped.withLock({ $0 }) else { return .failure(MCPClient.ToolError(description: "the step has ended")) }
                var started: PeerProcess?
                do {
                    let process = try await spawn(launch)
                    started = process
                    _ = StderrTail(fd: process.stderr)
                    // A server that never answers initialize holds no one up for long.
                    let watchdog = Task {
                        try await Task.sleep(for: Self.startLimit)
                        process.kill()
                    }
                    defer { watchdog.cancel() }
                    let (client, info) = try await MCPClient.start(input: process.stdout, output: process.stdin, loop: loop, onMalformed: { _ in })
                    let kept = running.withLock { r -> Bool in
                        guard !stopped.withLock({ $0 }) else { return false }
                        r[id] = (process, client)
                        return true
                    }
                    guard kept else {
                        client.close()
                        process.kill()
                        return .failure(MCPClient.ToolError(description: "the step has ended"))
                    }
                    return .success((client, info))
                } catch {
                    started?.kill()
                    return .failure(error)
                }
            }
            return try result.get()
        }

        /// An operation on server `id`: on the process started here, or, for a
        /// resident server, through the control plane.
        func perform(_ id: String, _ operation: MCPOperation) async throws -> JSONValue {
            if offered[id]?.resident == true {
                guard !stopped.withLock({ $0 }) else { throw MCPClient.ToolError(description: "the step has ended") }
                switch try await resident(id, operation) {
                case let .result(value): return value
                case let .failed(why): throw MCPClient.ToolError(description: why)
                case .timedOut: throw MCPClient.ToolError(description: "MCP server \(id) did not answer in time")
                }
            }
            let (c, _) = try await client(id)
            switch operation {
            case .listTools: return ["tools": .array(try await c.listTools())]
            case let .call(tool, arguments): return try await c.call(tool, arguments: arguments)
            }
        }

        /// True the first time: the servers are stopped and nothing more starts.
        func stop() -> Bool {
            guard stopped.withLock({ s -> Bool in defer { s = true }; return !s }) else { return false }
            for (process, client) in running.withLock({ r -> [(PeerProcess, MCPClient)] in defer { r = [:] }; return Array(r.values) }) {
                client.close()
                process.kill()
            }
            return true
        }

        /// One JSON-RPC message from the agent for server `id`; nil for a notification.
        func handle(_ id: String, _ message: JSONValue) async -> JSONValue? {
            guard case let .string(method)? = message["method"] else {
                return Self.error(message["id"], -32600, "not a JSON-RPC request")
            }
            let requestId = message["id"]
            guard requestId != nil else { return nil }  // notifications: nothing to relay
            let params = message["params"] ?? .null
            switch method {
            case "initialize":
                if offered[id]?.resident == true {
                    return Self.result(requestId, [
                        "protocolVersion": params["protocolVersion"] ?? .string(MCPClient.protocolVersion),
                        "capabilities": ["tools": ["listChanged": false]], "serverInfo": ["name": .string(id), "version": "1"],
                    ])
                }
                do {
                    let (_, info) = try await client(id)
                    return Self.result(requestId, [
                        "protocolVersion": params["protocolVersion"] ?? .string(MCPClient.protocolVersion),
                        "capabilities": ["tools": ["listChanged": false]],
                        "serverInfo": info?["serverInfo"] ?? ["name": .string(id), "version": "1"],
                    ])
                } catch {
                    return Self.error(requestId, -32603, "MCP server \(id) could not start: \(error)")
                }
            case "ping":
                return Self.result(requestId, .object([:]))
            case "tools/list":
                do {
                    let tools = try await perform(id, .listTools)["tools"].list.filter { policy.allowsTool(server: id, tool: $0["name"]?.stringValue ?? "") }
                    return Self.result(requestId, ["tools": .array(tools)])
                } catch {
                    return Self.error(requestId, -32603, "\(error)")
                }
            case "tools/call":
                let tool = params["name"]?.stringValue ?? ""
                guard policy.allowsTool(server: id, tool: tool) else {
                    report(.permissionDenied, ["dimension": "allowedTools", "value": .string("\(id)/\(tool)".prefix(1000).description),
                                             "method": "tools/call"])
                    report(.mcpCall, ["server": .string(id), "tool": .string(String(tool.prefix(200))), "outcome": "denied"])
                    return Self.error(requestId, -32000, "PermissionDenied: allowedTools does not allow \(id)/\(tool)")
                }
                let started = ContinuousClock.now
                do {
                    let result = try await perform(id, .call(tool: tool, arguments: params["arguments"] ?? .object([:])))
                    report(.mcpCall, ["server": .string(id), "tool": .string(tool), "outcome": result["isError"] == .bool(true) ? "error" : "ok",
                                    "durationMs": .number((ContinuousClock.now - started).milliseconds)])
                    return Self.result(requestId, result)
                } catch {
                    report(.mcpCall, ["server": .string(id), "tool": .string(tool), "outcome": "error"])
                    return Self.error(requestId, -32603, "\(error)")
                }
            default:
                // Resources, prompts, sampling: not relayed. Tools are what a policy can name.
                return Self.error(requestId, -32601, "the gate relays tools only, not \(String(method.prefix(100)))")
            }
        }

        static func result(_ id: JSONValue?, _ value: JSONValue) -> JSONValue { ["jsonrpc": "2.0", "id": id ?? .null, "result": value] }
        static func error(_ id: JSONValue?, _ code: Int, _ message: String) -> JSONValue {
            ["jsonrpc": "2.0", "id": id ?? .null, "error": ["code": .number(Double(code)), "message": .string(message)]]
        }
    }

    // MARK: HTTP

    static func serve(_ servers: Servers, _ head: HTTPRequestHead, _ body: ByteBuffer?) async -> LoopbackHTTP.Reply {
        let parts = head.uri.split(separator: "?").first.map { $0.split(separator: "/") } ?? []
        guard parts.count == 2, parts[1] == "mcp" else { return .init(.notFound) }
        guard head.method == .POST else { return .init(.methodNotAllowed) }
        guard let body, let message = JSONValue.parse(String(buffer: body)) else {
            return .init(.badRequest, json: Servers.error(nil, -32700, "parse error"))
        }
        let answer = await servers.handle(String(parts[0]), message)
        return answer.map { .init(.ok, json: $0) } ?? .init(.accepted)
    }
}
