import Workflow

/// The permission keys as config and workflow files write them (with
/// `networkEgress: {allowHosts: […]}` nested), decoded into a `PermissionSet`.
public struct PermissionConfig: Codable, Sendable, Equatable {
    public struct NetworkEgress: Codable, Sendable, Equatable {
        public var allowHosts: [String]?
    }

    public var allowedExecutables: [String]?
    public var fsRead: [String]?
    public var fsWrite: [String]?
    public var networkEgress: NetworkEgress?
    public var allowedMcpServers: [String]?
    public var allowedTools: [String]?
    public var allowedSkills: [String]?
    public var allowedAgents: [String]?

    public init() {}

    public var set: PermissionSet {
        PermissionSet(allowedExecutables: allowedExecutables, fsRead: fsRead, fsWrite: fsWrite,
                      allowHosts: networkEgress?.allowHosts, allowedMcpServers: allowedMcpServers,
                      allowedTools: allowedTools, allowedSkills: allowedSkills, allowedAgents: allowedAgents)
    }

    static let keys: Set<String> = ["allowedExecutables", "fsRead", "fsWrite", "networkEgress", "allowedMcpServers",
                                    "allowedTools", "allowedSkills", "allowedAgents"]
}
