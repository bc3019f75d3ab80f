import Workflow

/// The wire of resident agents. A resident agent lives in a long-lived
/// sandboxed worker of its own (`agent.host`, control plane → worker, answered
/// only when the agent stops). That worker asks for turns (`agent.next`),
/// streams each turn's events as `event.emit` (the turn's id as their `step`),
/// and hands each turn's end back (`agent.done`). A run's agent step asks the
/// control plane for a turn (`agent.turn`), which routes it to the agent.

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

/// Control plane → worker: host a resident agent until told to stop.
public enum AgentHost: RPCMethod {
    public static let name = "agent.host"
    public struct Params: Codable, Sendable {
        public var jobId: String
        /// The job's workspace (unused by the agent, which works in `home`).
        public var workspace: String
        /// The agent's working directory and home, kept across restarts.
        public var home: String
        public var agent: PeerLaunch
        /// The agent's ceiling: what its process may ever do.
        public var ceiling: StepPolicy
        public var limits: StepLimits
        public init(jobId: String, workspace: String, home: String, agent: PeerLaunch, ceiling: StepPolicy, limits: StepLimits) {
            self.jobId = jobId
            self.workspace = workspace
            self.home = home
            self.agent = agent
            self.ceiling = ceiling
            self.limits = limits
        }
    }
    public struct Result: Codable, Sendable {
        /// How the agent ended (`stopped`, `exited with status 1`).
        public var ended: String
        public init(ended: String) { self.ended = ended }
    }
}

/// Worker → control plane: the next turn for the hosted agent; nil after
/// `waitMs` without one (ask again), `stop` when the agent is to end.
public enum AgentNext: RPCMethod {
    public static let name = "agent.next"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var waitMs: Int
        public init(jobId: String, waitMs: Int) {
            self.jobId = jobId
            self.waitMs = waitMs
        }
    }
    public struct Result: Codable, Sendable {
        public var turn: AgentTurn?
        public var stop: Bool
        public init(turn: AgentTurn?, stop: Bool = false) {
            self.turn = turn
            self.stop = stop
        }
    }
}

/// Worker → control plane: a turn ended.
public enum AgentDone: RPCMethod {
    public static let name = "agent.done"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var turnId: String
        public var result: AgentTurnResult
        /// Events the turn emitted: the answer can overtake the last of them,
        /// and the turn ends only once that many were recorded.
        public var events: Int
        public init(jobId: String, turnId: String, result: AgentTurnResult, events: Int) {
            self.jobId = jobId
            self.turnId = turnId
            self.result = result
            self.events = events
        }
    }
    public typealias Result = Empty
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
