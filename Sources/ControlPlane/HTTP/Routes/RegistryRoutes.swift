import Foundation
import Hummingbird
import Wire
import Workflow

/// `GET /v1/registry/{agents,mcp-servers,skills}`: what config registers, as
/// the gateway resolved it. Environment values are not shown (only their
/// names): config may hold a token there.
extension API {
    func addRegistryRoutes(_ router: Router<GatewayContext>) {
        router.get("/v1/registry/agents") { _, _ -> Response in
            let peers = runs.policies.peers
            let configured = gateway.running.agents
            return JSONResponse.make(["agents": configured.map { a in Self.describe(agent: a, resolved: peers.agents[a.id]) }])
        }
        router.get("/v1/registry/agents/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let a = gateway.running.agents.first(where: { $0.id == id }) else { throw APIError.notFound("no agent \(id) in config (agents:)") }
            return JSONResponse.make(Self.describe(agent: a, resolved: runs.policies.peers.agents[id]))
        }
        router.get("/v1/registry/mcp-servers") { _, _ -> Response in
            let peers = runs.policies.peers
            return JSONResponse.make(["mcpServers": gateway.running.mcpServers.map { Self.describe(server: $0, resolved: peers.mcpServers[$0.id]) }])
        }
        router.get("/v1/registry/mcp-servers/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let s = gateway.running.mcpServers.first(where: { $0.id == id }) else { throw APIError.notFound("no MCP server \(id) in config (mcpServers:)") }
            return JSONResponse.make(Self.describe(server: s, resolved: runs.policies.peers.mcpServers[id]))
        }
        // Listing asks a resident server, or starts an ephemeral one in a
        // sandboxed worker: a read gets the cached list (made once), asking
        // the server again changes state (operator).
        router.get("/v1/registry/mcp-servers/:id/tools") { _, context -> Response in
            try await tools(try context.parameters.require("id"), refresh: false)
        }
        router.post("/v1/registry/mcp-servers/:id/tools/refresh") { _, context -> Response in
            try await tools(try context.parameters.require("id"), refresh: true)
        }
        router.get("/v1/registry/skills") { _, _ -> Response in
            let catalog = runs.policies.peers.skills
            return JSONResponse.make(SkillList(skills: catalog.skills.values.sorted { $0.name < $1.name }.map { SkillInfo($0, text: false) },
                                               problems: catalog.problems.sorted { $0.key < $1.key }.map { .init(directory: $0.key, problem: $0.value) }))
        }
        router.get("/v1/registry/skills/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let skill = runs.policies.peers.skills.skills[name] else { throw APIError.notFound("no skill \(name) in skills.dirs") }
            return JSONResponse.make(SkillInfo(skill, text: true))
        }
    }

    func tools(_ id: String, refresh: Bool) async throws -> Response {
        guard let server = runs.policies.peers.mcpServers[id] else {
            throw APIError.notFound("no MCP server \(id) in config (mcpServers:), or its command no longer resolves")
        }
        switch await gateway.tools.tools(of: server.launch, refresh: refresh, pool: pool, residents: runs.residents) {
        case let .success((result, at)):
            struct Tools: Encodable {
                let server: String
                let tools: JSONValue
                let serverInfo: JSONValue
                let listedAt: Date
            }
            return JSONResponse.make(Tools(server: id, tools: result.tools, serverInfo: result.server, listedAt: at))
        case let .failure(f):
            throw APIError(status: .badGateway, code: .peerFailed, message: "MCP server \(id) could not list its tools: \(f.description)")
        }
    }

    struct SkillList: Encodable {
        struct Problem: Encodable {
            let directory: String
            let problem: String
        }
        let skills: [SkillInfo]
        let problems: [Problem]
    }

    struct SkillInfo: Encodable {
        let name: String
        let description: String
        let directory: String
        let frontMatter: [String: String]
        let text: String?
        init(_ s: SkillCatalog.Skill, text: Bool) {
            name = s.name
            description = s.description
            directory = s.directory
            frontMatter = s.frontMatter
            self.text = text ? s.text : nil
        }
    }

    struct PeerInfo: Encodable {
        let id: String
        let `protocol`: String?
        let transport: String?
        let command: String
        let args: [String]
        /// Names only: values may be credentials.
        let env: [String]
        let lifecycle: String
        /// The program as resolved, what it may execute and read; nil when the
        /// command no longer resolves (`error` says why).
        let program: String?
        let executables: [String]?
        let readable: [String]?
        let permissions: PermissionConfig?
        let error: String?
    }

    static func describe(agent a: GatewayConfig.Agent, resolved: PeerRegistry.Agent?) -> PeerInfo {
        PeerInfo(id: a.id, protocol: a.protocol.rawValue, transport: nil, command: a.command, args: a.args, env: a.env.keys.sorted(),
                 lifecycle: a.lifecycle.rawValue, program: resolved?.launch.program, executables: resolved?.launch.executables,
                 readable: resolved?.launch.readable, permissions: a.permissions,
                 error: resolved == nil ? PeerResolver.problem(command: a.command) ?? "not resolved" : nil)
    }

    static func describe(server s: GatewayConfig.MCPServer, resolved: PeerRegistry.MCPServer?) -> PeerInfo {
        PeerInfo(id: s.id, protocol: nil, transport: s.transport.rawValue, command: s.command, args: s.args, env: s.env.keys.sorted(),
                 lifecycle: s.lifecycle.rawValue, program: resolved?.launch.program, executables: resolved?.launch.executables,
                 readable: resolved?.launch.readable, permissions: s.permissions,
                 error: resolved == nil ? PeerResolver.problem(command: s.command) ?? "not resolved" : nil)
    }
}
