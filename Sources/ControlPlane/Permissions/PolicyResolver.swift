import Foundation
import Sandbox
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Computes each step's effective permissions: the ceiling (a named profile, or
/// `defaults.permissions`), narrowed by the workflow's permissions, narrowed by
/// each enclosing step's and the step's own. Narrowing is always an
/// intersection: a lower level can take away, never add.
public struct PolicyResolver: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    let defaults: PermissionSet
    let profiles: [String: PermissionSet]
    let grants: Set<String>
    /// The agents, MCP servers and skills steps may name.
    public let peers: PeerRegistry

    public init(defaults: PermissionSet, profiles: [String: PermissionSet], unrestrictedGrants: [String], peers: PeerRegistry = PeerRegistry()) {
        self.defaults = Self.normalized(defaults, ceiling: true)
        self.profiles = profiles.mapValues { Self.normalized($0, ceiling: true) }
        self.grants = Set(unrestrictedGrants)
        self.peers = peers
    }

    /// Every path any ceiling grants, and what registered peers must read to
    /// start: the worker's base Landlock layer must allow at least these, and
    /// each step's own layer narrows from there.
    public var ceilingPaths: (read: [String], write: [String]) {
        let all = [defaults] + Array(profiles.values)
        let read = Set(all.flatMap { $0.fsRead ?? [] }).union(peers.readable)
        return (Array(read).sorted(), Array(Set(all.flatMap { $0.fsWrite ?? [] }).union(peers.writable)).sorted())
    }

    public func isGranted(_ workflow: String) -> Bool { grants.contains(workflow) || grants.contains("*") }

    /// Policies of every step of `workflow`, by step id.
    public func policies(for workflow: WorkflowDefinition) throws -> [String: StepPolicy] {
        var ceiling = defaults
        if let name = workflow.permissionProfile {
            guard let profile = profiles[name] else {
                throw Failure(description: "permissions.profile '\(name)' is not defined in config (permissionProfiles: \(profiles.keys.sorted().joined(separator: ", ")))")
            }
            ceiling = profile
        }
        let top = narrow(ceiling, by: workflow.permissions)
        var out: [String: StepPolicy] = [:]
        func walk(_ steps: [Step], _ inherited: PermissionSet) {
            for step in steps {
                var own = narrow(inherited, by: step.permissions)
                // An agent's own ceiling narrows what its steps may do.
                if case let .agent(a) = step.kind, let ceiling = peers.agents[a.agent]?.ceiling { own = narrow(own, by: ceiling) }
                var policy = StepPolicy(executables: own.allowedExecutables ?? [], fsRead: own.fsRead ?? [],
                                        fsWrite: own.fsWrite ?? [], allowHosts: own.allowHosts ?? [])
                policy.mcpServers = own.allowedMcpServers ?? []
                policy.tools = own.allowedTools ?? []
                if step.unrestricted == true {
                    if isGranted(workflow.id) { policy.unrestricted = true } else {
                        policy.denied = PermissionDenial(dimension: "unrestricted", value: workflow.id)
                    }
                }
                if policy.denied == nil, !policy.unrestricted {
                    // Decided here, before any worker sees the step.
                    policy.denied = Self.refusal(of: step.kind, policy) ?? peerRefusal(of: step.kind, own, policy)
                }
                grantPeers(of: step.kind, to: &policy)
                out[step.id] = policy
                walk(step.children, own)
            }
        }
        walk(workflow.steps, top)
        return out
    }

    /// What a step's own fields ask for that its policy already rules out.
    static func refusal(of kind: StepKind, _ policy: StepPolicy) -> PermissionDenial? {
        switch kind {
        case let .exec(exec):
            guard let program = exec.script != nil ? (exec.interpreter ?? ["sh"]).first : exec.argv?.first,
                  !program.contains("${{"), let real = resolve(program), !policy.executables.contains(real) else { return nil }
            return PermissionDenial(dimension: "allowedExecutables", value: real)
        case let .http(http):
            // A literal URL's host is known now; a templated one is checked per request.
            guard !http.url.contains("${{"), let c = URLComponents(string: http.url), let host = c.host?.lowercased() else { return nil }
            let port = c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80)
            guard !policy.allowHosts.contains(where: { HostPattern.matches($0, host: host, port: port) }) else { return nil }
            return PermissionDenial(dimension: "networkEgress", value: "\(host):\(port)")
        case .parallel, .forEach, .branch, .loop, .approval, .wait, .invoke, .infer, .agent, .mcp:
            // Containers hold steps with policies of their own; parking kinds
            // run nothing; an infer step's host comes from config, checked per
            // request; agents and MCP servers are the registry's (peerRefusal).
            return nil
        }
    }

    /// The agent, the servers and the skills an agent or mcp step names, against
    /// its `allowedAgents`, `allowedMcpServers`, `allowedTools` and `allowedSkills`.
    func peerRefusal(of kind: StepKind, _ own: PermissionSet, _ policy: StepPolicy) -> PermissionDenial? {
        switch kind {
        case let .agent(a):
            guard (own.allowedAgents ?? []).contains(a.agent) else { return PermissionDenial(dimension: "allowedAgents", value: a.agent) }
            if let server = a.mcpServers.first(where: { !policy.mcpServers.contains($0) }) {
                return PermissionDenial(dimension: "allowedMcpServers", value: server)
            }
            if let skill = a.skills.first(where: { !(own.allowedSkills ?? []).contains($0) }) {
                return PermissionDenial(dimension: "allowedSkills", value: skill)
            }
            return nil
        case let .mcp(m):
            guard policy.mcpServers.contains(m.server) else { return PermissionDenial(dimension: "allowedMcpServers", value: m.server) }
            guard policy.allowsTool(server: m.server, tool: m.tool) else {
                return PermissionDenial(dimension: "allowedTools", value: "\(m.server)/\(m.tool)")
            }
            return nil
        case .exec, .parallel, .forEach, .branch, .loop, .approval, .wait, .invoke, .http, .infer:
            return nil
        }
    }

    /// What a resident agent's own process may ever do: its ceiling (or, with
    /// none, `defaults.permissions`), plus its program and the MCP servers that
    /// ceiling allows. Each turn is narrowed further by the asking step's policy.
    public func residentCeiling(_ agent: PeerRegistry.Agent) -> StepPolicy {
        let c = agent.ceiling.map { Self.normalized($0, ceiling: true) } ?? defaults
        var policy = StepPolicy(executables: c.allowedExecutables ?? [], fsRead: c.fsRead ?? [], fsWrite: c.fsWrite ?? [],
                                allowHosts: c.allowHosts ?? [])
        policy.mcpServers = c.allowedMcpServers ?? []
        policy.tools = c.allowedTools ?? []
        let servers = policy.mcpServers.compactMap { peers.mcpServers[$0]?.launch }
        for launch in [agent.launch] + servers {
            for e in launch.executables where !policy.executables.contains(e) { policy.executables.append(e) }
            for r in launch.readable where !policy.fsRead.contains(r) { policy.fsRead.append(r) }
        }
        policy.executables.sort()
        policy.fsRead.sort()
        return policy
    }

    /// What a resident MCP server's own process may ever do: its installation,
    /// and what its `permissions` name. It has no network. Each call is
    /// checked against the asking step's policy before it reaches the server.
    public func serverCeiling(_ server: PeerRegistry.MCPServer) -> StepPolicy {
        let c = server.ceiling.map { Self.normalized($0, ceiling: true) } ?? PermissionSet()
        var policy = StepPolicy(executables: c.allowedExecutables ?? [], fsRead: c.fsRead ?? [], fsWrite: c.fsWrite ?? [])
        for e in server.launch.executables where !policy.executables.contains(e) { policy.executables.append(e) }
        for r in server.launch.readable where !policy.fsRead.contains(r) { policy.fsRead.append(r) }
        policy.executables.sort()
        policy.fsRead.sort()
        return policy
    }

    /// Every resident peer config asks for, with its ceiling.
    public var residents: [ResidentPeers.Key: ResidentPeers.Wanted] {
        var out: [ResidentPeers.Key: ResidentPeers.Wanted] = [:]
        for a in peers.agents.values where a.launch.resident {
            out[.init(.agent, a.launch.id)] = .init(launch: a.launch, ceiling: residentCeiling(a))
        }
        for s in peers.mcpServers.values where s.launch.resident {
            out[.init(.mcpServer, s.launch.id)] = .init(launch: s.launch, ceiling: serverCeiling(s))
        }
        return out
    }

    /// A peer the step may start may run its own program and read its own
    /// installation: configuring it is the operator's grant, naming it in
    /// `allowedAgents`/`allowedMcpServers` the workflow's.
    func grantPeers(of kind: StepKind, to policy: inout StepPolicy) {
        var launches: [PeerLaunch] = []
        switch kind {
        case let .agent(a):
            launches = [peers.agents[a.agent]?.launch].compactMap { $0 } + a.mcpServers.compactMap { peers.mcpServers[$0]?.launch }
        case let .mcp(m):
            launches = [peers.mcpServers[m.server]?.launch].compactMap { $0 }
        case .exec, .parallel, .forEach, .branch, .loop, .approval, .wait, .invoke, .http, .infer:
            return
        }
        // A resident peer runs in a worker of its own: the step never starts it.
        for launch in launches where !launch.resident {
            for e in launch.executables where !policy.executables.contains(e) { policy.executables.append(e) }
            for r in launch.readable where !policy.fsRead.contains(r) { policy.fsRead.append(r) }
        }
    }

    func narrow(_ ceiling: PermissionSet, by lower: PermissionSet?) -> PermissionSet {
        guard let lower = lower.map({ Self.normalized($0, ceiling: false) }) else { return ceiling }
        func exact(_ c: [String]?, _ l: [String]?) -> [String]? {
            guard let l else { return c }
            let allowed = Set(c ?? [])
            return l.filter(allowed.contains)
        }
        func paths(_ c: [String]?, _ l: [String]?) -> [String]? {
            guard let l else { return c }
            return l.filter { p in (c ?? []).contains { p == $0 || p.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") } }
        }
        func hosts(_ c: [String]?, _ l: [String]?) -> [String]? {
            guard let l else { return c }
            return l.filter { h in (c ?? []).contains { HostPattern.covers($0, h) } }
        }
        return PermissionSet(allowedExecutables: exact(ceiling.allowedExecutables, lower.allowedExecutables),
                             fsRead: paths(ceiling.fsRead, lower.fsRead), fsWrite: paths(ceiling.fsWrite, lower.fsWrite),
                             allowHosts: hosts(ceiling.allowHosts, lower.allowHosts),
                             allowedMcpServers: exact(ceiling.allowedMcpServers, lower.allowedMcpServers),
                             allowedTools: exact(ceiling.allowedTools, lower.allowedTools),
                             allowedSkills: exact(ceiling.allowedSkills, lower.allowedSkills),
                             allowedAgents: exact(ceiling.allowedAgents, lower.allowedAgents))
    }

    /// Executables become real paths (so `../` and symlinks cannot get around a
    /// check), paths are made absolute and clean. In a ceiling, a dimension left
    /// out allows nothing: default-deny.
    static func normalized(_ p: PermissionSet, ceiling: Bool) -> PermissionSet {
        var n = p
        n.allowedExecutables = p.allowedExecutables.map { Array(Set($0.compactMap(resolve))).sorted() }
        n.fsRead = p.fsRead.map { $0.map(cleanPath) }
        n.fsWrite = p.fsWrite.map { $0.map(cleanPath) }
        if ceiling {
            n.allowedExecutables = n.allowedExecutables ?? []
            n.fsRead = n.fsRead ?? []
            n.fsWrite = n.fsWrite ?? []
            n.allowHosts = n.allowHosts ?? []
            n.allowedMcpServers = n.allowedMcpServers ?? []
            n.allowedTools = n.allowedTools ?? []
            n.allowedSkills = n.allowedSkills ?? []
            n.allowedAgents = n.allowedAgents ?? []
        }
        return n
    }

    /// A bare name on the trusted PATH or an absolute path, to its real path; nil
    /// when there is no such executable.
    static func resolve(_ program: String) -> String? {
        guard program.hasPrefix("/") || !program.contains("/") else { return nil }
        return try? StepRunner.resolveProgram(program, cwd: "/")
    }

    static func cleanPath(_ path: String) -> String {
        let standard = URL(fileURLWithPath: path).standardizedFileURL.path
        guard let real = realpath(standard, nil) else { return standard }
        defer { free(real) }
        return String(cString: real)
    }
}

/// `example.com`, `*.example.com`, each optionally with `:port`.
enum HostPattern {
    static func split(_ p: String) -> (host: String, port: String?) {
        if let i = p.lastIndex(of: ":"), !p.hasSuffix("]") { return (String(p[..<i]).lowercased(), String(p[p.index(after: i)...])) }
        return (p.lowercased(), nil)
    }

    /// The pattern's host, without an IPv6 literal's brackets.
    static func host(of pattern: String) -> String {
        split(pattern).host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }

    /// The ports a pattern allows: its own, or without one the web's (80 and 443).
    static func ports(of pattern: String) -> Set<Int> {
        guard let p = split(pattern).port else { return [80, 443] }
        return Int(p).map { [$0] } ?? []
    }

    /// Whether `pattern` allows a connection to `host`:`port` (`host` canonical,
    /// as `HostName` writes it).
    static func matches(_ pattern: String, host: String, port: Int) -> Bool {
        guard ports(of: pattern).contains(port) else { return false }
        let p = Self.host(of: pattern)
        if p == host { return true }
        if p.hasPrefix("*.") { return host.hasSuffix(String(p.dropFirst(1))) }
        return false
    }

    /// Whether every host:port that `narrow` allows is also allowed by `broad`.
    /// A broad pattern without a port covers 80 and 443 only: a lower level
    /// cannot widen `api.example.com` to `api.example.com:8080`.
    static func covers(_ broad: String, _ narrow: String) -> Bool {
        guard ports(of: narrow).isSubset(of: ports(of: broad)) else { return false }
        let b = host(of: broad), n = host(of: narrow)
        if b == n { return true }
        if b.hasPrefix("*.") { return n.hasSuffix(String(b.dropFirst(1))) }
        return false
    }
}
