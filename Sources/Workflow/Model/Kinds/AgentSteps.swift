/// Prompts a coding agent registered in config (`agents:`) over the Agent
/// Client Protocol. The worker is the ACP client: it starts the agent inside
/// the step's sandbox, serves the agent's file, terminal and permission
/// requests under the step's policy, and turns the agent's updates into run
/// events. Output: the agent's final message, or with `output` the JSON it
/// produced, checked against that schema.
public struct AgentStep: Codable, Sendable, Equatable {
    /// How the step answers the agent's `session/request_permission`.
    public enum OnPermission: String, Codable, Sendable, CaseIterable {
        /// Allowed when the tool it names is within the step's `allowedTools`
        /// (and its server within `allowedMcpServers`); rejected otherwise.
        case policy
        /// Every request is rejected.
        case deny
        /// What the policy would allow is asked of a person, as a durable
        /// approval (`POST /approvals/:id/approve`); the rest is rejected.
        case ask
    }

    /// An id under `agents:` in config.
    public var agent: String
    /// The prompt; a template.
    public var prompt: String
    /// A JSON Schema the final message must satisfy, as JSON.
    public var output: JSONValue?
    /// Prompts the agent may be sent: the first, then (with `output`) one
    /// more each time its answer does not fit, naming what is wrong.
    public var maxTurns: Int
    public var onPermission: OnPermission
    /// MCP servers (ids under `mcpServers:`) offered to the agent in
    /// `session/new`; each must be within the step's `allowedMcpServers`.
    public var mcpServers: [String]
    /// Skills (names under `skills.dirs`) mounted read-only into the workspace
    /// and named in the prompt; each must be within `allowedSkills`.
    public var skills: [String]
    /// Resident agents only: steps with the same key (a template) continue one
    /// ACP session, across steps, runs and gateway restarts.
    public var sessionKey: String?

    public init(agent: String, prompt: String, output: JSONValue? = nil, maxTurns: Int = 1, onPermission: OnPermission = .policy,
                mcpServers: [String] = [], skills: [String] = []) {
        self.agent = agent
        self.prompt = prompt
        self.output = output
        self.maxTurns = maxTurns
        self.onPermission = onPermission
        self.mcpServers = mcpServers
        self.skills = skills
    }
}

/// Calls one tool of an MCP server registered in config (`mcpServers:`). The
/// server runs inside the step's sandbox for the step's length. Output: the
/// tool's structured content when it has one, else its text (parsed as JSON
/// when it is JSON).
public struct MCPStep: Codable, Sendable, Equatable {
    /// An id under `mcpServers:` in config.
    public var server: String
    public var tool: String
    /// The tool's arguments: an object whose strings are templates.
    public var arguments: JSONValue

    public init(server: String, tool: String, arguments: JSONValue = .object([:])) {
        self.server = server
        self.tool = tool
        self.arguments = arguments
    }
}
