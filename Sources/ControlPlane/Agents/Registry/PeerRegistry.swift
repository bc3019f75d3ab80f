import Foundation
import Wire
import Workflow

/// The agents and MCP servers config registers, resolved to what a worker
/// may start, and the skills found in `skills.dirs`. Built from the config
/// in effect: a reload builds a new one.
public struct PeerRegistry: Sendable {
    public struct Agent: Sendable {
        public let config: GatewayConfig.Agent
        public let launch: PeerLaunch
        /// The agent's own ceiling, normalized like a profile's (nil: none of its own).
        public let ceiling: PermissionSet?
    }

    public struct MCPServer: Sendable {
        public let config: GatewayConfig.MCPServer
        public let launch: PeerLaunch
        /// A resident server's own ceiling (nil: its installation and home only).
        public let ceiling: PermissionSet?
    }

    public let agents: [String: Agent]
    public let mcpServers: [String: MCPServer]
    public let skills: SkillCatalog

    public init(agents: [String: Agent] = [:], mcpServers: [String: MCPServer] = [:], skills: SkillCatalog = SkillCatalog()) {
        self.agents = agents
        self.mcpServers = mcpServers
        self.skills = skills
    }

    /// Commands that no longer resolve (a package removed since the config
    /// was checked) are left out, so a step naming them is refused by name.
    public init(config: GatewayConfig, skillDirs: [String]) {
        var agents: [String: Agent] = [:]
        for a in config.agents {
            guard var launch = try? PeerResolver.launch(id: a.id, command: a.command, args: a.args, env: a.env) else { continue }
            launch.resident = a.lifecycle == .resident
            if let name = a.provider, let p = config.providers[name] {
                launch.provider = name
                launch.providerPath = URLComponents(string: p.baseURL)?.path ?? ""
            }
            agents[a.id] = Agent(config: a, launch: launch,
                                 ceiling: a.permissions.map { PolicyResolver.normalized($0.set, ceiling: false) })
        }
        var servers: [String: MCPServer] = [:]
        for s in config.mcpServers {
            guard var launch = try? PeerResolver.launch(id: s.id, command: s.command, args: s.args, env: s.env) else { continue }
            launch.resident = s.lifecycle == .resident
            servers[s.id] = MCPServer(config: s, launch: launch, ceiling: s.permissions.map { PolicyResolver.normalized($0.set, ceiling: false) })
        }
        self.init(agents: agents, mcpServers: servers, skills: SkillCatalog(dirs: skillDirs))
    }

    /// What workers' base Landlock layer must let peers read: their programs
    /// (wherever they are), their install prefixes, and what agents' and
    /// resident servers' own ceilings grant.
    public var readable: [String] {
        var out = Set<String>()
        for a in agents.values {
            out.formUnion(a.launch.readable + a.launch.executables)
            out.formUnion(a.ceiling?.fsRead ?? [])
        }
        for s in mcpServers.values {
            out.formUnion(s.launch.readable + s.launch.executables)
            out.formUnion(s.ceiling?.fsRead ?? [])
        }
        return out.sorted()
    }

    /// What workers' base Landlock layer must let peers write: what agents'
    /// and resident servers' own ceilings grant.
    public var writable: [String] {
        Set(agents.values.flatMap { $0.ceiling?.fsWrite ?? [] } + mcpServers.values.flatMap { $0.ceiling?.fsWrite ?? [] }).sorted()
    }
}
