/// A workflow as the control plane loaded and validated it. It travels to the
/// worker inside `job.run`, so it is plain Codable data: templates stay strings
/// (`${{ … }}`) until the interpreter evaluates them.
public struct WorkflowDefinition: Codable, Sendable, Equatable {
    public var id: String
    public var description: String?
    /// JSON Schema for the run's input / output (checked by the control plane).
    public var input: JSONValue?
    public var output: JSONValue?
    /// Values steps may read as `${{ env.NAME }}` and that exec steps get in their environment.
    public var env: [String: String]
    /// Bound on the whole run, in milliseconds.
    public var timeoutMs: Int?
    /// What the run returns; a template over the steps. Default: the last top-level step's output.
    public var result: JSONValue?
    public var steps: [Step]
    /// A named profile from config as the ceiling (instead of `defaults.permissions`).
    public var permissionProfile: String?
    /// Narrows the ceiling for every step.
    public var permissions: PermissionSet?
    /// Credentials the control plane adds to this workflow's `http` requests, by host.
    public var inject: [CredentialInjection] = []
    /// What starts its runs besides the API (the control plane arms them).
    public var triggers: [Trigger] = []

    public init(id: String, description: String? = nil, input: JSONValue? = nil, output: JSONValue? = nil,
                env: [String: String] = [:], timeoutMs: Int? = nil, result: JSONValue? = nil, steps: [Step]) {
        self.id = id
        self.description = description
        self.input = input
        self.output = output
        self.env = env
        self.timeoutMs = timeoutMs
        self.result = result
        self.steps = steps
    }
}

extension WorkflowDefinition {
    /// The step with this id, at any depth (ids are unique in a workflow).
    public func step(id: String) -> Step? {
        allSteps.first { $0.id == id }
    }

    /// Every step at every depth, parents before their children.
    public var allSteps: [Step] {
        var out: [Step] = []
        func walk(_ steps: [Step]) {
            for s in steps {
                out.append(s)
                walk(s.children)
            }
        }
        walk(steps)
        return out
    }

    /// The workflows its `invoke` steps start.
    public var invokes: Set<String> {
        Set(allSteps.compactMap { if case let .invoke(i) = $0.kind { i.workflow } else { nil } })
    }
}
