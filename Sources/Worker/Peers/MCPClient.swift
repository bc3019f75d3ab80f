import Foundation
import NIOCore
import Workflow

/// An MCP client over a server's stdio (newline-delimited JSON-RPC 2.0):
/// `initialize`, `notifications/initialized`, `tools/list`, `tools/call`.
///
/// Written here on `LineRPC` rather than with modelcontextprotocol/swift-sdk
/// 0.12.1, which was measured against these servers and does not fit a
/// sandboxed worker: when the server exits during a call its receive loop
/// spins a core and the call never returns; its stdio buffer has no bound;
/// it ignores task cancellation and has no request timeouts; and its module
/// links FoundationNetworking (libcurl) into the one `skelm` binary, which
/// made every exec'd worker start 4-6 ms slower.
struct MCPClient: Sendable {
    /// The protocol revision this client asks for; servers answer with theirs.
    static let protocolVersion = "2025-06-18"

    let rpc: LineRPC

    struct ToolError: Error, CustomStringConvertible {
        let description: String
    }

    /// Connects and initializes; a server's requests (sampling, roots) are declined.
    static func start(input: Int32, output: Int32, loop: any EventLoop, onMalformed: @escaping @Sendable (String) -> Void) async throws -> (MCPClient, JSONValue) {
        let rpc = try await LineRPC.connect(input: input, output: output, loop: loop,
                                            onRequest: { method, _ in
                                                method == "ping" ? .result(.object([:])) : .error(code: -32601, message: "the client does not serve \(method)")
                                            },
                                            onNotification: { _, _ in }, onMalformed: onMalformed)
        let info: JSONValue
        do {
            info = try await rpc.call("initialize", [
                "protocolVersion": .string(protocolVersion), "capabilities": .object([:]),
                "clientInfo": ["name": "skelm", "version": "1"],
            ])
        } catch {
            rpc.close()
            throw error
        }
        rpc.notify("notifications/initialized", .object([:]))
        return (MCPClient(rpc: rpc), info)
    }

    /// Every tool, following `nextCursor` (at most 50 pages).
    func listTools() async throws -> [JSONValue] {
        var tools: [JSONValue] = []
        var cursor: JSONValue?
        for _ in 0..<50 {
            let page = try await rpc.call("tools/list", cursor.map { ["cursor": $0] } ?? .object([:]))
            tools += page["tools"].list
            guard let next = page["nextCursor"], next != .null else { break }
            cursor = next
        }
        return tools
    }

    /// The result of `tools/call` as the server sent it.
    func call(_ tool: String, arguments: JSONValue) async throws -> JSONValue {
        try await rpc.call("tools/call", ["name": .string(tool), "arguments": arguments])
    }

    /// A tool result as a step's output: its structured content when it has
    /// one, else its text blocks joined (parsed as JSON when they are JSON).
    static func output(of result: JSONValue) throws -> JSONValue {
        let text = result["content"].list.compactMap { $0["type"] == "text" ? $0["text"]?.stringValue : nil }.joined(separator: "\n")
        if result["isError"] == .bool(true) { throw ToolError(description: text.isEmpty ? "the tool reported an error" : text) }
        if let structured = result["structuredContent"], structured != .null { return structured }
        if let parsed = JSONValue.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return parsed }
        return .string(text)
    }

    func close() { rpc.close() }
}
