/// Permission dimensions, as config, a workflow or a step states them. A
/// dimension left out (nil) does not narrow; an empty list allows nothing.
public struct PermissionSet: Codable, Sendable, Equatable {
    public var allowedExecutables: [String]?
    public var fsRead: [String]?
    public var fsWrite: [String]?
    /// `networkEgress.allowHosts`: exact hosts or `*.suffix`, each optionally `:port`.
    public var allowHosts: [String]?
    public var allowedMcpServers: [String]?
    public var allowedTools: [String]?
    public var allowedSkills: [String]?
    public var allowedAgents: [String]?

    public init(allowedExecutables: [String]? = nil, fsRead: [String]? = nil, fsWrite: [String]? = nil,
                allowHosts: [String]? = nil, allowedMcpServers: [String]? = nil, allowedTools: [String]? = nil,
                allowedSkills: [String]? = nil, allowedAgents: [String]? = nil) {
        self.allowedExecutables = allowedExecutables
        self.fsRead = fsRead
        self.fsWrite = fsWrite
        self.allowHosts = allowHosts
        self.allowedMcpServers = allowedMcpServers
        self.allowedTools = allowedTools
        self.allowedSkills = allowedSkills
        self.allowedAgents = allowedAgents
    }

    public static let dimensions = ["allowedExecutables", "fsRead", "fsWrite", "networkEgress", "allowedMcpServers",
                                    "allowedTools", "allowedSkills", "allowedAgents"]
}

/// What one step may do, as the control plane computed it: the intersection of
/// the config's ceiling, the workflow's and the step's own permissions. The
/// worker checks it, and its kernel (Landlock) enforces the executables and paths.
public struct StepPolicy: Codable, Sendable, Equatable {
    /// Real paths of the programs the step may execute.
    public var executables: [String]
    public var fsRead: [String]
    public var fsWrite: [String]
    public var allowHosts: [String]
    /// The step asked for, and was granted, the unrestricted bypass.
    public var unrestricted: Bool
    /// A denial the control plane already decided (the step fails with it).
    public var denied: PermissionDenial?
    /// `allowedMcpServers` and `allowedTools`, for what an agent asks at run
    /// time (`session/request_permission`). A tool entry is `tool`,
    /// `server/tool`, `server/*` or `*`.
    public var mcpServers: [String] = []
    public var tools: [String] = []

    public init(executables: [String] = [], fsRead: [String] = [], fsWrite: [String] = [], allowHosts: [String] = [],
                unrestricted: Bool = false, denied: PermissionDenial? = nil) {
        self.executables = executables
        self.fsRead = fsRead
        self.fsWrite = fsWrite
        self.allowHosts = allowHosts
        self.unrestricted = unrestricted
        self.denied = denied
    }
}

extension StepPolicy {
    /// Whether `tool` of `server` is within `allowedMcpServers` and `allowedTools`.
    public func allowsTool(server: String, tool: String) -> Bool {
        if unrestricted { return true }
        guard mcpServers.contains(server) else { return false }
        return tools.contains { $0 == "*" || $0 == tool || $0 == "\(server)/\(tool)" || $0 == "\(server)/*" }
    }
}

public struct PermissionDenial: Codable, Sendable, Equatable {
    public var dimension: String
    public var value: String
    public init(dimension: String, value: String) {
        self.dimension = dimension
        self.value = value
    }
    public var message: String { "PermissionDenied: \(dimension) does not allow \(value)" }
}
