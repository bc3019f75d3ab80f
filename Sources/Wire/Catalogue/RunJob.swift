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
    /// Outputs of the steps that already completed, by path at any depth
    /// (checkpoints): they are not run again, and nothing inside them is.
    public var completed: [String: JSONValue]
    /// Starts a step interrupted in an earlier segment already used, by path:
    /// its attempts go on counting from there.
    public var attempts: [String: Int] = [:]
    /// Timeout of an exec step that sets none, in milliseconds.
    public var defaultStepTimeoutMs: Int
    /// Each step's effective permissions, by step id.
    public var policies: [String: StepPolicy]
    /// The agents and MCP servers this workflow's steps name, by registry id.
    public var agents: [String: PeerLaunch] = [:]
    public var mcpServers: [String: PeerLaunch] = [:]
    /// Skills mounted in the workspace, by name.
    public var skills: [String: SkillMount] = [:]

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
    /// Set when the segment stopped at steps that wait (for a decision, an
    /// output or a child run): every one of them, at any depth.
    public var parked: [Parked]
    /// Events the worker emitted before answering: the control plane has seen
    /// the whole segment once it has handled this many.
    public var events: Int

    public init(status: Status, output: JSONValue? = nil, error: StepFailure? = nil, parked: [Parked] = [], events: Int) {
        self.status = status
        self.output = output
        self.error = error
        self.parked = parked
        self.events = events
    }

    /// `parked` is left out of an answer that did not park.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(status: try c.decode(Status.self, forKey: .status), output: try c.decodeIfPresent(JSONValue.self, forKey: .output),
                  error: try c.decodeIfPresent(StepFailure.self, forKey: .error),
                  parked: try c.decodeIfPresent([Parked].self, forKey: .parked) ?? [], events: try c.decode(Int.self, forKey: .events))
    }
}

/// Where a segment stopped to wait: the step's path and what the worker
/// evaluated for it. How long it waits and what expiry does come from the
/// definition, which the control plane holds: a worker that could set them
/// could end its own wait.
public struct Parked: Codable, Sendable, Equatable, Error {
    public enum Request: Codable, Sendable, Equatable {
        /// What the approver is asked.
        case approval(message: String)
        /// What the run waits for, if the step says.
        case wait(message: String?)
        /// The child run's input.
        case invoke(input: JSONValue)
    }

    public var step: String
    public var request: Request

    public init(step: String, request: Request) {
        self.step = step
        self.request = request
    }
}

extension Parked.Request {
    /// In words, for the `step.parked` event.
    public var message: String {
        switch self {
        case let .approval(message): message
        case let .wait(message): message ?? ""
        case .invoke: ""
        }
    }
}

/// Every step that parked in a segment: parallel branches and concurrent
/// iterations each run to their end or their own park first.
public struct ParkedSteps: Error, Sendable {
    public var steps: [Parked]
    public init(_ steps: [Parked]) { self.steps = steps }
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
