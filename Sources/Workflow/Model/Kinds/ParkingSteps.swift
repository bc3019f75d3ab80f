/// Parks the run until someone approves or denies it over the API (or it
/// expires). Its output, once approved, is `{approved, actor, reason}`.
public struct ApprovalStep: Codable, Sendable, Equatable {
    /// What expiry does.
    public enum OnTimeout: String, Codable, Sendable, CaseIterable { case fail, deny, approve }
    /// What the approver is asked; a template.
    public var message: String
    /// How long the approval waits, in milliseconds; nil: until decided.
    public var timeoutMs: Int?
    public var onTimeout: OnTimeout

    public init(message: String, timeoutMs: Int? = nil, onTimeout: OnTimeout = .fail) {
        self.message = message
        self.timeoutMs = timeoutMs
        self.onTimeout = onTimeout
    }
}

/// Parks the run until its output is posted (`POST /runs/:id/resume`), checked
/// against `output`; or until `timeoutMs`, when `onTimeout` applies.
public struct WaitStep: Codable, Sendable, Equatable {
    /// What expiry does: fail the step, or resume with `timeoutOutput`.
    public enum OnTimeout: String, Codable, Sendable, CaseIterable { case fail, resume }
    /// What the run waits for, in words; a template.
    public var message: String?
    /// JSON Schema the posted output must satisfy; nil: any JSON value.
    public var output: JSONValue?
    public var timeoutMs: Int?
    public var onTimeout: OnTimeout
    /// The step's output when it times out with `onTimeout: resume`.
    public var timeoutOutput: JSONValue?

    public init(message: String? = nil, output: JSONValue? = nil, timeoutMs: Int? = nil, onTimeout: OnTimeout = .fail,
                timeoutOutput: JSONValue? = nil) {
        self.message = message
        self.output = output
        self.timeoutMs = timeoutMs
        self.onTimeout = onTimeout
        self.timeoutOutput = timeoutOutput
    }
}

/// Runs another workflow as a child run, with `input` (templates) as its
/// input; the step's output is the child's output, its failure the child's.
public struct InvokeStep: Codable, Sendable, Equatable {
    public var workflow: String
    public var input: JSONValue

    public init(workflow: String, input: JSONValue = .object([:])) {
        self.workflow = workflow
        self.input = input
    }
}
