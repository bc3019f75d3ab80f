import Foundation
import Hummingbird
import Workflow

/// Resident agents' and MCP servers' state (`/v1/agents`, `/v1/mcp-servers`)
/// and the agents' ACP sessions (`/sessions`).
extension API {
    func addSessionRoutes(_ router: Router<GatewayContext>) {
        router.get("/v1/agents") { _, _ -> Response in
            struct List: Encodable { let agents: [ResidentPeers.Status] }
            return JSONResponse.make(List(agents: await runs.residents.statuses(.agent)))
        }
        router.get("/v1/agents/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let status = await runs.residents.status(.agent, id) else { throw APIError.notFound("no resident agent \(id) (lifecycle: resident in agents:)") }
            return JSONResponse.make(status)
        }
        router.get("/v1/mcp-servers") { _, _ -> Response in
            struct List: Encodable { let servers: [ResidentPeers.Status] }
            return JSONResponse.make(List(servers: await runs.residents.statuses(.mcpServer)))
        }
        router.get("/v1/mcp-servers/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let status = await runs.residents.status(.mcpServer, id) else {
                throw APIError.notFound("no resident MCP server \(id) (lifecycle: resident in mcpServers:)")
            }
            return JSONResponse.make(status)
        }

        router.get("/sessions") { request, _ -> Response in
            var state: AgentSessionRecord.State?
            if let s = request.query("state"), s != "all" {
                guard let parsed = AgentSessionRecord.State(rawValue: s) else {
                    throw APIError.badRequest("state must be all, open or closed")
                }
                state = parsed
            }
            let limit = try request.intQuery("limit", default: 100, range: 1...1000)
            struct Page: Encodable { let sessions: [AgentSessionRecord] }
            return JSONResponse.make(Page(sessions: try await store.sessions(agent: request.query("agent"), state: state, limit: limit)))
        }
        router.get("/sessions/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let s = try await store.session(id) else { throw APIError.notFound("no session \(id)") }
            return JSONResponse.make(s)
        }
        router.delete("/sessions/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let (s, changed) = try await store.closeSession(id) else { throw APIError.notFound("no session \(id)") }
            if changed {
                try await audit.append(actor: context.caller.name, action: "acp.session.closed", details: ["session": id, "agent": s.agent, "key": s.key])
            }
            return JSONResponse.make(s)
        }
        router.post("/sessions/:id/resume") { _, context -> Response in
            let id = try context.parameters.require("id")
            switch try await store.reopenSession(id) {
            case .notFound: throw APIError.notFound("no session \(id)")
            case let .alreadyOpen(s): return JSONResponse.make(s)
            case let .keyTaken(other):
                throw APIError.conflict("session \(other.id) is open for agent \(other.agent) and key '\(other.key)'; close it first")
            case let .reopened(s):
                try await audit.append(actor: context.caller.name, action: "acp.session.reopened", details: ["session": id, "agent": s.agent, "key": s.key])
                return JSONResponse.make(s)
            }
        }
        router.post("/sessions/prune") { request, context -> Response in
            var request = request
            let body = try await request.jsonObject(limit: maxBodyBytes)
            if let extra = body.keys.first(where: { $0 != "olderThan" }) { throw APIError.badRequest("unknown field '\(extra)' (expected olderThan)") }
            guard let text = body["olderThan"]?.stringValue, let ms = NodeReader.parseDuration(text), ms >= 1000, Double(ms) <= NodeReader.maxDurationMs else {
                throw APIError.badRequest("olderThan is required: a duration such as 7d, 12h or 30m")
            }
            let closed = try await store.pruneSessions(before: Date().addingTimeInterval(-Double(ms) / 1000))
            for s in closed {
                try await audit.append(actor: context.caller.name, action: "acp.session.closed",
                                       details: ["session": s.id, "agent": s.agent, "key": s.key, "reason": "pruned: unused for \(text)"])
            }
            struct Pruned: Encodable { let closed: [String] }
            return JSONResponse.make(Pruned(closed: closed.map(\.id)))
        }
    }
}
