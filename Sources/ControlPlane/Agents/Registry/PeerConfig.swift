import Foundation

/// `agents:`, `mcpServers:` and `skills:` in config, as docs/agents.md and
/// docs/mcp.md describe them key by key.
extension GatewayConfig {
    /// How long a peer lives.
    public enum Lifecycle: String, Codable, Sendable, CaseIterable {
        /// Started for each step that uses it, inside that step's sandbox, and
        /// gone with the step's worker.
        case ephemeral
        /// Started with the gateway in a sandboxed worker of its own and
        /// supervised (restarted with backoff); an agent's sessions are kept.
        case resident
    }

    /// One coding agent a workflow's `agent` steps may name.
    public struct Agent: Codable, Sendable, Equatable {
        public enum ProtocolName: String, Codable, Sendable, CaseIterable { case acp }
        public var id: String
        public var `protocol` = ProtocolName.acp
        /// An absolute path, or a name on the trusted PATH.
        public var command: String
        public var args: [String] = []
        public var env: [String: String] = [:]
        public var lifecycle = Lifecycle.ephemeral
        /// A ceiling of its own: an agent step's permissions are narrowed by it too.
        public var permissions: PermissionConfig?
        /// A provider under `providers:` the agent reaches through its worker's
        /// relay (`OPENAI_BASE_URL`), the provider's key added by the control plane.
        public var provider: String?

        public init(id: String, command: String, args: [String] = [], env: [String: String] = [:], permissions: PermissionConfig? = nil) {
            self.id = id
            self.command = command
            self.args = args
            self.env = env
            self.permissions = permissions
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            command = try c.decode(String.self, forKey: .command)
            `protocol` = try c.value(.protocol, or: .acp)
            args = try c.value(.args, or: [])
            env = try c.value(.env, or: [:])
            lifecycle = try c.value(.lifecycle, or: .ephemeral)
            permissions = try c.decodeIfPresent(PermissionConfig.self, forKey: .permissions)
            provider = try c.decodeIfPresent(String.self, forKey: .provider)
        }
    }

    /// One MCP server that `mcp` steps call and agents may be offered.
    public struct MCPServer: Codable, Sendable, Equatable {
        public enum Transport: String, Codable, Sendable, CaseIterable { case stdio }
        public var id: String
        public var transport = Transport.stdio
        public var command: String
        public var args: [String] = []
        public var env: [String: String] = [:]
        public var lifecycle = Lifecycle.ephemeral
        /// A resident server's ceiling: what its own process may read, write
        /// and run besides its installation (`fsRead`, `fsWrite`,
        /// `allowedExecutables`). An ephemeral server runs under its step's policy.
        public var permissions: PermissionConfig?

        public init(id: String, command: String, args: [String] = [], env: [String: String] = [:]) {
            self.id = id
            self.command = command
            self.args = args
            self.env = env
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            command = try c.decode(String.self, forKey: .command)
            transport = try c.value(.transport, or: .stdio)
            args = try c.value(.args, or: [])
            env = try c.value(.env, or: [:])
            lifecycle = try c.value(.lifecycle, or: .ephemeral)
            permissions = try c.decodeIfPresent(PermissionConfig.self, forKey: .permissions)
        }
    }

    public struct Skills: Codable, Sendable, Equatable {
        /// Folders holding one folder per skill, each with a `SKILL.md`;
        /// relative to the config file.
        public var dirs: [String] = []
        public init() {}
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            dirs = try c.value(.dirs, or: [])
        }
    }

    /// Ids are step-id shaped and unique; commands resolve; env names are
    /// names a step may set.
    func validatePeers(file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: key, message: message) }
        func check(_ key: String, id: String, command: String, env: [String: String], seen: inout Set<String>) throws {
            guard id.range(of: #"^[A-Za-z][A-Za-z0-9_-]{0,63}$"#, options: .regularExpression) != nil else {
                throw bad("\(key).id", "'\(id)' is not a valid id (letters, digits, - and _, starting with a letter)")
            }
            guard seen.insert(id).inserted else { throw bad("\(key).id", "duplicate id '\(id)'") }
            if let problem = PeerResolver.problem(command: command) { throw bad("\(key).command", problem) }
            for name in env.keys where name.isEmpty || name.hasPrefix("LD_") || name == "PATH" || name.contains("=") {
                throw bad("\(key).env.\(name)", "may not be set: the sandbox fixes PATH and forbids loader variables")
            }
        }
        var seen = Set<String>()
        for (i, a) in agents.enumerated() {
            try check("agents[\(i)]", id: a.id, command: a.command, env: a.env, seen: &seen)
            if let p = a.provider, providers[p] == nil {
                throw bad("agents[\(i)].provider", "'\(p)' is not a provider under providers: (\(providers.keys.sorted().joined(separator: ", ")))")
            }
            if a.provider != nil, a.lifecycle == .resident {
                throw bad("agents[\(i)].provider", "the provider relay is for ephemeral agents: a resident agent has no egress")
            }
            for (dim, paths) in [("fsRead", a.permissions?.fsRead ?? []), ("fsWrite", a.permissions?.fsWrite ?? [])] {
                for path in paths where !path.hasPrefix("/") {
                    throw bad("agents[\(i)].permissions.\(dim)", "'\(path)' must be an absolute path")
                }
            }
        }
        seen = []
        for (i, s) in mcpServers.enumerated() {
            try check("mcpServers[\(i)]", id: s.id, command: s.command, env: s.env, seen: &seen)
            guard let p = s.permissions else { continue }
            guard s.lifecycle == .resident else {
                throw bad("mcpServers[\(i)].permissions", "is a resident server's ceiling; an ephemeral server runs under its step's policy")
            }
            let other = [p.networkEgress != nil ? "networkEgress" : nil, p.allowedMcpServers != nil ? "allowedMcpServers" : nil,
                         p.allowedTools != nil ? "allowedTools" : nil, p.allowedSkills != nil ? "allowedSkills" : nil,
                         p.allowedAgents != nil ? "allowedAgents" : nil].compactMap { $0 }
            if let key = other.first {
                throw bad("mcpServers[\(i)].permissions.\(key)", "a resident MCP server's ceiling takes fsRead, fsWrite and allowedExecutables only (it has no network)")
            }
            for (dim, paths) in [("fsRead", p.fsRead ?? []), ("fsWrite", p.fsWrite ?? [])] {
                for path in paths where !path.hasPrefix("/") {
                    throw bad("mcpServers[\(i)].permissions.\(dim)", "'\(path)' must be an absolute path")
                }
            }
        }
        if skills.dirs.contains(where: \.isEmpty) { throw bad("skills.dirs", "must not contain an empty path") }
        // Each resident peer holds one of workers.max for as long as it runs.
        let residents = agents.filter { $0.lifecycle == .resident }.count + mcpServers.filter { $0.lifecycle == .resident }.count
        if residents > 0, residents >= workers.max {
            throw bad("workers.max", "\(residents) resident agents and MCP servers each hold a worker of their own: workers.max (\(workers.max)) must be larger, or no run gets one")
        }
    }
}
