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
    /// An approval step: the segment ends here and the run waits for a human.
    case stepParked = "step.parked"
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
