/// The words both sides use about a job, typed so that the control plane's
/// checks match what the worker sends by construction, not by spelling.

/// What an `event.emit` may say happened. The control plane refuses any other
/// type from a run's worker: a type it does not know is a claim it cannot check.
public enum JobEventType: String, Codable, Sendable, CaseIterable {
    /// A `job.start` program began (one-program jobs only, never in a run).
    case jobStarted = "job.started"
    case stepStarted = "step.started"
    case stepFinished = "step.finished"
    /// `data.willRetry` says whether another attempt follows.
    case stepFailed = "step.failed"
    /// Its `if` was false; it never started.
    case stepSkipped = "step.skipped"
    /// A branch chose a case (`data.case`: its index, or `"otherwise"`).
    case stepBranch = "step.branch"
    /// An approval, wait or invoke step: the segment ends once what runs
    /// beside it has ended, and the run waits (for a decision, an output, a child run).
    case stepParked = "step.parked"
    /// What an agent step's agent says (`data.text`), in pieces as it streams.
    case agentMessage = "agent.message"
    /// Its reasoning, when it shares it (`data.text`).
    case agentThought = "agent.thought"
    /// A tool call it makes or updates (`data.toolCallId`, `title`, `kind`, `status`).
    case agentToolCall = "agent.tool_call"
    /// Its plan (`data.entries`).
    case agentPlan = "agent.plan"
    /// A request of the agent the worker served (`data.method`, `target`, `outcome`).
    case agentRequest = "agent.request"
    /// Something an agent or mcp step asked for that its policy does not
    /// allow (`data.dimension`, `value`); the step goes on without it.
    case permissionDenied = "permission.denied"
    /// A tool called on an MCP server (`data.server`, `tool`, `outcome`).
    case mcpCall = "mcp.call"

    /// Kinds of event that report on a running step without changing its state.
    public var isActivity: Bool {
        switch self {
        case .agentMessage, .agentThought, .agentToolCall, .agentPlan, .agentRequest, .permissionDenied, .mcpCall: true
        case .jobStarted, .stepStarted, .stepFinished, .stepFailed, .stepSkipped, .stepBranch, .stepParked: false
        }
    }
}

/// Every type a run's event log can hold: what its worker claimed (the
/// `JobEventType` cases) and what the control plane itself records.
public enum RunEventType: String, Codable, Sendable, CaseIterable {
    case runQueued = "run.queued"
    case runStarted = "run.started"
    /// A new segment after a park or a restart.
    case runResumed = "run.resumed"
    /// Parked: waiting for an approval, a posted output or a child run.
    case runWaiting = "run.waiting"
    case runSucceeded = "run.succeeded"
    case runFailed = "run.failed"
    case runCancelled = "run.cancelled"
    case stepStarted = "step.started"
    case stepFinished = "step.finished"
    case stepFailed = "step.failed"
    case stepSkipped = "step.skipped"
    case stepBranch = "step.branch"
    case stepParked = "step.parked"
    /// Tokens of an `infer` step's reply as they arrive (`data.text`).
    case inferDelta = "infer.delta"
    /// An `invoke` step started its child run (`data.child`).
    case childStarted = "child.started"
    case agentMessage = "agent.message"
    case agentThought = "agent.thought"
    case agentToolCall = "agent.tool_call"
    case agentPlan = "agent.plan"
    case agentRequest = "agent.request"
    case permissionDenied = "permission.denied"
    case mcpCall = "mcp.call"

    public init(_ claimed: JobEventType) {
        self.init(rawValue: claimed.rawValue)!
    }

    /// The run has ended; nothing follows.
    public var isTerminal: Bool { self == .runSucceeded || self == .runFailed || self == .runCancelled }
}

/// What a step's record says of it.
public enum StepStatus: String, Codable, Sendable, CaseIterable {
    case running
    /// Failed, and another attempt follows.
    case retrying
    /// Parked: waiting for a decision, an output or a child run.
    case waiting
    case succeeded
    case failed
    case skipped
}

extension JobEvent {
    /// Nil for a type no version of the catalogue defines.
    public var kind: JobEventType? { JobEventType(rawValue: type) }
}

/// `StepFailure.code`: why a step or a run failed.
public enum FailureCode: String, Codable, Sendable, CaseIterable {
    case execFailed = "ExecFailed"
    case timeout = "Timeout"
    case expressionError = "ExpressionError"
    case invalidStep = "InvalidStep"
    /// The kernel's sandbox stopped something: seccomp killed a step or a worker.
    case sandboxViolation = "SandboxViolation"
    /// The worker broke the protocol, or claimed something the workflow
    /// definition or the run's state rules out; the control plane killed it.
    case workerViolation = "WorkerViolation"
    case permissionDenied = "PermissionDenied"
    case secretNotFound = "SecretNotFound"
    case cancelled = "Cancelled"
    /// The worker ended without an answer (killed, crashed, timed out).
    case workerFailed = "WorkerFailed"
    /// The job passed a limit the control plane measures (its disk or file budget).
    case resourceLimit = "ResourceLimit"
    case outputInvalid = "OutputInvalid"
    case approvalDenied = "ApprovalDenied"
    case approvalExpired = "ApprovalExpired"
    /// A `wait` step's timeout passed with `onTimeout: fail`.
    case waitExpired = "WaitExpired"
    /// An `http` step's request could not be made or completed (refused,
    /// unreachable, TLS, a redirect it may not follow, a response too large).
    case httpFailed = "HTTPFailed"
    /// An `http` step's response had a status its `expectStatus` does not accept.
    case httpStatus = "HTTPStatus"
    /// An `infer` step's provider could not answer (unreachable, an error status).
    case inferFailed = "InferFailed"
    /// An `invoke` step's child run failed or was cancelled.
    case childFailed = "ChildFailed"
    /// An `agent` step's agent could not be started, broke the protocol,
    /// exited, or ended its turn without an answer (refused, cancelled).
    case agentFailed = "AgentFailed"
    /// An `mcp` step's server could not be started or reached, or its tool
    /// answered with an error.
    case mcpFailed = "MCPFailed"
    /// The step was running when its worker or the gateway died, and may not
    /// run again (not idempotent, no retries left).
    case interrupted = "Interrupted"
    case workflowMissing = "WorkflowMissing"
    case internalError = "InternalError"
}

extension StepFailure {
    public init(_ code: FailureCode, step: String?, message: String, details: [String: String]? = nil) {
        self.init(code: code.rawValue, step: step, message: message, details: details)
    }

    /// Nil for a code this catalogue does not define (a worker may send any text).
    public var failureCode: FailureCode? { FailureCode(rawValue: code) }
}
