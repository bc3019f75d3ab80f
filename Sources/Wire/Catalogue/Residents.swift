import Workflow

/// The wire of resident peers: agents and MCP servers that live in a
/// long-lived sandboxed worker of their own (`agent.host`, `mcp.host`, control
/// plane → worker, answered only when the peer stops). That worker asks for
/// work (`resident.next`): a turn for an agent, a call for an MCP server. It
/// streams a turn's events as `event.emit` (the work's id as their `step`) and
/// hands each piece of work back (`resident.done`). A run's worker reaches a
/// resident peer through the control plane (`agent.turn`, `mcp.resident`),
/// which checks the asking step's policy and routes it.

/// One prompt for a resident agent, as the control plane hands it to the agent's worker.
public struct AgentTurn: Codable, Sendable, Equatable {
    public var id: String
    public var prompt: String
    /// The ACP session to continue; nil: a new one.
    public var sessionId: String?
    /// The asking step's policy, which the agent's requests are served under
    /// (narrowed by the agent's own ceiling, which its worker's layer holds).
    public var policy: StepPolicy
    public var onPermission: AgentStep.OnPermission
    /// MCP servers offered when a session is made or loaded.
    public var mcpServers: [PeerLaunch]
    public var timeoutMs: Int

    public init(id: String, prompt: String, sessionId: String?, policy: StepPolicy, onPermission: AgentStep.OnPermission,
                mcpServers: [PeerLaunch], timeoutMs: Int) {
        self.id = id
        self.prompt = prompt
        self.sessionId = sessionId
        self.policy = policy
        self.onPermission = onPermission
        self.mcpServers = mcpServers
        self.timeoutMs = timeoutMs
    }
}

/// How a turn ended.
public struct AgentTurnResult: Codable, Sendable, Equatable {
    public var sessionId: String?
    /// The session was made for this turn (`session/new`) or loaded into a
    /// fresh agent process (`session/load`).
    public var created: Bool
    public var loaded: Bool
    public var message: String
    public var truncated: Bool
    public var stopReason: String?
    /// Why the turn failed (the agent exited, broke the protocol, timed out).
    public var error: String?
    public var timedOut: Bool

    public init(sessionId: String? = nil, created: Bool = false, loaded: Bool = false, message: String = "", truncated: Bool = false,
                stopReason: String? = nil, error: String? = nil, timedOut: Bool = false) {
        self.sessionId = sessionId
        self.created = created
        self.loaded = loaded
        self.message = message
        self.truncated = truncated
        self.stopReason = stopReason
        self.error = error
        self.timedOut = timedOut
    }
}

/// What a resident peer's worker is given: the peer, its home and its ceiling.
public struct HostParams: Codable, Sendable {
    public var jobId: String
    /// The job's workspace (unused by the peer, which works in `home`).
    public var workspace: String
    /// The peer's working directory and home, kept across restarts.
    public var home: String
    public var peer: PeerLaunch
    /// What the peer's process may ever do.
    public var ceiling: StepPolicy
    public var limits: StepLimits
    public init(jobId: String, workspace: String, home: String, peer: PeerLaunch, ceiling: StepPolicy, limits: StepLimits) {
        self.jobId = jobId
        self.workspace = workspace
        self.home = home
        self.peer = peer
        self.ceiling = ceiling
        self.limits = limits
    }
}

/// Control plane → worker: host a resident agent until told to stop.
public enum AgentHost: RPCMethod {
    public static let name = "agent.host"
    public typealias Params = HostParams
    public typealias Result = HostEnded
}

/// One piece of work for a resident peer: exactly what its kind serves.
public enum ResidentWork: Codable, Sendable, Equatable {
    case turn(AgentTurn)
    case call(MCPCall)

    public var id: String {
        switch self {
        case let .turn(t): t.id
        case let .call(c): c.id
        }
    }
}

/// How a piece of work ended, in the shape of its kind.
public enum ResidentOutcome: Codable, Sendable, Equatable {
    case turn(AgentTurnResult)
    case call(MCPCallResult)
}

/// Worker → control plane: the next piece of work for the hosted peer; nil
/// after `waitMs` without one (ask again), `stop` when the peer is to end.
public enum ResidentNext: RPCMethod {
    public static let name = "resident.next"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var waitMs: Int
        public init(jobId: String, waitMs: Int) {
            self.jobId = jobId
            self.waitMs = waitMs
        }
    }
    public struct Result: Codable, Sendable {
        public var work: ResidentWork?
        public var stop: Bool
        public init(work: ResidentWork?, stop: Bool = false) {
            self.work = work
            self.stop = stop
        }
    }
}

/// Worker → control plane: a piece of work ended.
public enum ResidentDone: RPCMethod {
    public static let name = "resident.done"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var workId: String
        public var outcome: ResidentOutcome
        /// Events the work emitted: the answer can overtake the last of them,
        /// and the work ends only once that many were recorded.
        public var events: Int
        public init(jobId: String, workId: String, outcome: ResidentOutcome, events: Int) {
            self.jobId = jobId
            self.workId = workId
            self.outcome = outcome
            self.events = events
        }
    }
    public typealias Result = Empty
}

/// How a resident peer's worker ended (`stopped`, `exited with status 1`).
public struct HostEnded: Codable, Sendable {
    public var ended: String
    public init(ended: String) { self.ended = ended }
}

/// Worker → control plane, from a run's worker: a turn of a resident agent for
/// the asking agent step. Its events are recorded by the control plane.
public enum AgentTurnRequest: RPCMethod {
    public static let name = "agent.turn"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        public var prompt: String
        /// Evaluated `sessionKey`: turns with one key share one ACP session.
        public var sessionKey: String?
        public var timeoutMs: Int
        public init(jobId: String, step: String, prompt: String, sessionKey: String?, timeoutMs: Int) {
            self.jobId = jobId
            self.step = step
            self.prompt = prompt
            self.sessionKey = sessionKey
            self.timeoutMs = timeoutMs
        }
    }
    public typealias Result = AgentTurnResult
}

// MARK: Resident MCP servers

/// What a step asks of an MCP server.
public enum MCPOperation: Codable, Sendable, Equatable {
    case listTools
    case call(tool: String, arguments: JSONValue)
}

/// One operation for a resident MCP server, as the control plane hands it to the server's worker.
public struct MCPCall: Codable, Sendable, Equatable {
    public var id: String
    public var operation: MCPOperation
    public var timeoutMs: Int
    public init(id: String, operation: MCPOperation, timeoutMs: Int) {
        self.id = id
        self.operation = operation
        self.timeoutMs = timeoutMs
    }
}

/// How an operation on an MCP server ended: the server's result (a
/// `tools/call` result, or `{tools: [...]}`), or why there is none.
public enum MCPCallResult: Codable, Sendable, Equatable {
    case result(JSONValue)
    /// The server answered with a JSON-RPC error, broke the protocol, or ended.
    case failed(String)
    case timedOut
}

/// Control plane → worker: host a resident MCP server until told to stop. Its
/// ceiling is its `permissions`, its own program and installation.
public enum MCPHost: RPCMethod {
    public static let name = "mcp.host"
    public typealias Params = HostParams
    public typealias Result = HostEnded
}

/// Worker → control plane, from a run's worker: an operation on a resident
/// MCP server, for an `mcp` step or for the MCP gate of an agent step.
public enum MCPResidentRequest: RPCMethod {
    public static let name = "mcp.resident"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        public var server: String
        public var operation: MCPOperation
        public var timeoutMs: Int
        public init(jobId: String, step: String, server: String, operation: MCPOperation, timeoutMs: Int) {
            self.jobId = jobId
            self.step = step
            self.server = server
            self.operation = operation
            self.timeoutMs = timeoutMs
        }
    }
    public typealias Result = MCPCallResult
}
