import Workflow

/// A run segment: interpret `workflow` from its checkpoints onward. The control
/// plane sends it; the worker answers when the segment ends.
public struct RunJobSpec: Codable, Sendable {
    public var jobId: String
    public var runId: String
    /// Absolute path of the job's private directory; the only place it may write.
    public var workspace: String
    public var fsRead: [String]
    public var fsWrite: [String]
    public var limits: StepLimits
    public var workflow: WorkflowDefinition
    public var input: JSONValue
    /// Outputs of top-level steps that already completed (checkpoints): they are
    /// not run again.
    public var completed: [String: JSONValue]
    /// Timeout of an exec step that sets none, in milliseconds.
    public var defaultStepTimeoutMs: Int
    /// Each step's effective permissions, by step id.
    public var policies: [String: StepPolicy]

    public init(jobId: String, runId: String, workspace: String, fsRead: [String] = [], fsWrite: [String] = [],
                limits: StepLimits = StepLimits(), workflow: WorkflowDefinition, input: JSONValue,
                completed: [String: JSONValue] = [:], defaultStepTimeoutMs: Int = 60_000, policies: [String: StepPolicy] = [:]) {
        self.jobId = jobId
        self.runId = runId
        self.workspace = workspace
        self.fsRead = fsRead
        self.fsWrite = fsWrite
        self.limits = limits
        self.workflow = workflow
        self.input = input
        self.completed = completed
        self.defaultStepTimeoutMs = defaultStepTimeoutMs
        self.policies = policies
    }
}

/// How a run segment ended.
public struct RunJobResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case succeeded, failed, parked }
    public var status: Status
    public var output: JSONValue?
    public var error: StepFailure?
    /// Set when the segment stopped at a step that waits for a human.
    public var parked: Parked?
    /// Events the worker emitted before answering: the control plane has seen
    /// the whole segment once it has handled this many.
    public var events: Int

    public init(status: Status, output: JSONValue? = nil, error: StepFailure? = nil, parked: Parked? = nil, events: Int) {
        self.status = status
        self.output = output
        self.error = error
        self.parked = parked
        self.events = events
    }
}

/// Where a segment stopped to wait: the approval step and what it asks.
public struct Parked: Codable, Sendable, Equatable, Error {
    public var step: String
    public var message: String
    public var timeoutMs: Int?
    public var onTimeout: String

    public init(step: String, message: String, timeoutMs: Int?, onTimeout: String) {
        self.step = step
        self.message = message
        self.timeoutMs = timeoutMs
        self.onTimeout = onTimeout
    }
}

/// Why a step failed: which step, what kind of failure, in words.
public struct StepFailure: Codable, Sendable, Equatable, Error {
    /// One of `FailureCode` (Vocabulary.swift) when the control plane set it; a
    /// worker may send any text, which the control plane does not take on trust.
    public var code: String
    public var step: String?
    public var message: String
    /// For `PermissionDenied`: `dimension` and `value`.
    public var details: [String: String]?

    public init(code: String, step: String?, message: String, details: [String: String]? = nil) {
        self.code = code
        self.step = step
        self.message = message
        self.details = details
    }
}

/// Control plane → worker: run this segment of a workflow. Answered when it ends.
public enum RunJob: RPCMethod {
    public static let name = "job.run"
    public typealias Params = RunJobSpec
    public typealias Result = RunJobResult
}
