import Workflow

/// A program the worker starts for a step and talks to over its stdio: a
/// coding agent (ACP) or an MCP server. The control plane resolves it from
/// config, so a worker never chooses what it runs.
public struct PeerLaunch: Codable, Sendable, Equatable {
    /// The registry id (`agents[].id`, `mcpServers[].id`).
    public var id: String
    /// Real path of the program.
    public var program: String
    public var args: [String]
    public var env: [String: String]
    /// Files the peer may execute: its program, and the interpreter its `#!` names.
    public var executables: [String]
    /// Directories the peer must read to start at all: the prefix each of
    /// its executables is installed in (the directory above its `bin/`).
    public var readable: [String]
    /// A resident peer: it runs in a worker of its own, and steps reach it
    /// through the control plane (`agent.turn`, `mcp.resident`) instead of starting it.
    public var resident = false
    /// The provider an agent reaches through its worker's relay, and the path
    /// its base URL has (`/v1`): the agent's base URL is the relay's plus that path.
    public var provider: String?
    public var providerPath: String?

    public init(id: String, program: String, args: [String] = [], env: [String: String] = [:], executables: [String] = [],
                readable: [String] = []) {
        self.id = id
        self.program = program
        self.args = args
        self.env = env
        self.executables = executables
        self.readable = readable
    }
}

/// A skill offered to an agent step: copied read-only beside the job's
/// workspace, at `path` (absolute), before the job starts.
public struct SkillMount: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    public var path: String

    public init(name: String, description: String, path: String) {
        self.name = name
        self.description = description
        self.path = path
    }
}
