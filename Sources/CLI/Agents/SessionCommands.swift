import ArgumentParser
import Foundation
import SkelmClient
import Workflow

/// `skelm agents status`, `skelm mcp status` and `skelm sessions`: resident
/// peers as they run, and agents' sessions.
struct AgentsStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Resident agents: state, pid, restarts, turns, last exit.")
    @Argument(help: "One agent's id (default: all).") var id: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await ResidentStatus.show(id, route: "/v1/agents", list: "agents", served: "turns", json: json, client: client)
    }
}

struct MCPStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Resident MCP servers: state, pid, restarts, calls, last exit.")
    @Argument(help: "One server's id (default: all).") var id: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await ResidentStatus.show(id, route: "/v1/mcp-servers", list: "servers", served: "calls", json: json, client: client)
    }
}

enum ResidentStatus {
    static func show(_ id: String?, route: String, list: String, served: String, json: Bool, client: ClientOptions) async throws {
        let reply = try await client.client().get(id.map { route + "/" + ($0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? $0) } ?? route)
        guard reply.status == 200, let body = reply.json else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        let peers = id == nil ? body[list].list : [body]
        Output.table(["ID", "STATE", "PID", "RESTARTS", served.uppercased(), "QUEUED", "LAST EXIT"], peers.map { a in
            [a["id"]?.stringValue ?? "", a["state"]?.stringValue ?? "", a["pid"].map(\.jsonText) ?? "-",
             a["restarts"].map(\.jsonText) ?? "0", a[served].map(\.jsonText) ?? "0", a["queued"].map(\.jsonText) ?? "0",
             a["lastExit"]?.stringValue ?? "-"]
        })
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sessions", abstract: "Resident agents' ACP sessions, by key.",
                                                    subcommands: [SessionsList.self, SessionsShow.self, SessionsClose.self, SessionsPrune.self])
}

struct SessionsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List sessions: id, agent, key, state, turns, last used.")
    @Option(help: "Only this agent's.") var agent: String?
    @Option(help: "open, closed or all (default: all).") var state: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var query: [String] = []
        if let agent { query.append("agent=\(agent.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? agent)") }
        if let state { query.append("state=\(state)") }
        let reply = try await client.client().get("/sessions" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        Output.table(["ID", "AGENT", "KEY", "STATE", "TURNS", "LAST USED"], (reply.json?["sessions"].list ?? []).map { s in
            [s["id"]?.stringValue ?? "", s["agent"]?.stringValue ?? "", s["key"]?.stringValue ?? "", s["state"]?.stringValue ?? "",
             s["turns"].map(\.jsonText) ?? "", s["lastUsedAt"]?.stringValue ?? ""]
        })
    }
}

struct SessionsShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "One session.")
    @Argument(help: "The session's id.") var id: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/sessions/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)")
        guard reply.status == 200 else { throw Output.fail(reply) }
        Output.printJSON(reply.body)
    }
}

struct SessionsClose: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "close", abstract: "Close a session: the next step with its key starts a new one.")
    @Argument(help: "The session's id.") var id: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().send(.DELETE, "/sessions/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)")
        guard reply.status == 200 else { throw Output.fail(reply) }
        print(Output.safe("closed \(id)"))
    }
}

struct SessionsPrune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Close every open session unused for a while.")
    @Option(name: .customLong("older-than"), help: "A duration: 7d, 12h, 30m.") var olderThan: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().post("/sessions/prune", json: ["olderThan": .string(olderThan)])
        guard reply.status == 200 else { throw Output.fail(reply) }
        let closed = reply.json?["closed"].list.compactMap(\.stringValue) ?? []
        print(Output.safe("closed \(closed.count) session\(closed.count == 1 ? "" : "s")\(closed.isEmpty ? "" : ": " + closed.joined(separator: ", "))"))
    }
}
