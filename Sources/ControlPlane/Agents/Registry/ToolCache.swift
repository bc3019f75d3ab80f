import Foundation
import Wire

/// `tools/list` of each MCP server, asked once (of a resident server's own
/// worker, or of a fresh sandboxed worker that starts an ephemeral one) and
/// kept until the server's launch changes in config or a refresh is asked for.
public actor ToolCache {
    struct Entry {
        let launch: PeerLaunch
        let result: MCPTools.Result
        let listedAt: Date
    }

    private var entries: [String: Entry] = [:]
    /// One listing per server at a time: concurrent requests share it.
    private var inFlight: [String: Task<Result<MCPTools.Result, PeerJobFailure>, Never>] = [:]

    public init() {}

    public func tools(of launch: PeerLaunch, refresh: Bool, pool: WorkerPool, residents: ResidentPeers) async -> Result<(MCPTools.Result, Date), PeerJobFailure> {
        if !refresh, let e = entries[launch.id], e.launch == launch { return .success((e.result, e.listedAt)) }
        let task: Task<Result<MCPTools.Result, PeerJobFailure>, Never>
        var mine = false
        if let running = inFlight[launch.id] {
            task = running
        } else {
            task = Task { launch.resident ? await Self.listResident(launch.id, residents) : await pool.listTools(launch) }
            inFlight[launch.id] = task
            mine = true
        }
        let result = await task.value
        // Only the caller that started the listing ends it: a later one may be running.
        if mine { inFlight[launch.id] = nil }
        switch result {
        case let .success(r):
            let now = Date()
            entries[launch.id] = Entry(launch: launch, result: r, listedAt: now)
            return .success((r, now))
        case let .failure(f):
            return .failure(f)
        }
    }

    static func listResident(_ id: String, _ residents: ResidentPeers) async -> Result<MCPTools.Result, PeerJobFailure> {
        let call = MCPCall(id: "tools_" + UUID().uuidString.lowercased().prefix(12), operation: .listTools, timeoutMs: 30_000)
        do {
            switch try await residents.call(server: id, call, asker: "registry", wanted: { true }) {
            case let .result(r):
                return .success(MCPTools.Result(tools: r["tools"] ?? .array([]),
                                                server: ["serverInfo": r["serverInfo"] ?? .null, "protocolVersion": r["protocolVersion"] ?? .null]))
            case let .failed(why): return .failure(PeerJobFailure(description: why))
            case .timedOut: return .failure(PeerJobFailure(description: "no answer within 30 s"))
            }
        } catch {
            return .failure(PeerJobFailure(description: "\(error)"))
        }
    }
}
