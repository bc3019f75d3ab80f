/// Step paths name nested steps (`work/squares[2]/square`); a step's id is the
/// last component without its iteration index. Ids are unique in a workflow.
public enum StepPath {
    public static func id(of path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? path
        return last.split(separator: "[").first.map(String.init) ?? last
    }
}

/// One step: an id, the fields every kind shares, and exactly one kind.
public struct Step: Codable, Sendable, Equatable {
    public var id: String
    /// Expression; the step is skipped when it is false.
    public var `if`: String?
    public var retry: RetryPolicy?
    public var timeoutMs: Int?
    /// Narrows the workflow's permissions for this step (and the steps inside it).
    public var permissions: PermissionSet?
    /// Asks for the unrestricted bypass; granted only to workflows config names.
    public var unrestricted: Bool?

    public var exec: ExecStep?
    public var parallel: ParallelStep?
    public var forEach: ForEachStep?
    public var branch: BranchStep?
    public var loop: LoopStep?
    public var approval: ApprovalStep?

    public init(id: String, if condition: String? = nil, retry: RetryPolicy? = nil, timeoutMs: Int? = nil,
                exec: ExecStep? = nil, parallel: ParallelStep? = nil, forEach: ForEachStep? = nil,
                branch: BranchStep? = nil, loop: LoopStep? = nil) {
        self.id = id
        self.if = condition
        self.retry = retry
        self.timeoutMs = timeoutMs
        self.exec = exec
        self.parallel = parallel
        self.forEach = forEach
        self.branch = branch
        self.loop = loop
    }

    public var kindName: String {
        if exec != nil { return "exec" }
        if parallel != nil { return "parallel" }
        if forEach != nil { return "forEach" }
        if branch != nil { return "branch" }
        if loop != nil { return "loop" }
        if approval != nil { return "approval" }
        return "unknown"
    }

    /// Steps nested directly inside this one, in every case they may run.
    public var children: [Step] {
        if let parallel { return parallel.steps }
        if let forEach { return forEach.steps }
        if let loop { return loop.steps }
        if let branch { return branch.cases.flatMap(\.steps) + (branch.otherwise ?? []) }
        return []
    }
}

public struct RetryPolicy: Codable, Sendable, Equatable {
    /// Attempts after the first.
    public var max: Int
    /// Wait before the first retry, in milliseconds; multiplied by `factor` each time.
    public var backoffMs: Int
    public var factor: Double

    public init(max: Int, backoffMs: Int = 200, factor: Double = 2) {
        self.max = max
        self.backoffMs = backoffMs
        self.factor = factor
    }

    public func delayMs(beforeRetry n: Int) -> Int {
        var d = Double(backoffMs)
        for _ in 1..<Swift.max(n, 1) { d *= factor }
        return Int(Swift.min(d, 600_000))
    }
}

extension ExecStep {
    /// Secrets the step's `env` references: the only ones it may resolve.
    public var secretNames: Set<String> {
        var out = Set<String>()
        for value in env.values {
            guard let t = try? Template(value) else { continue }
            for e in t.expressions { out.formUnion(e.secretNames) }
        }
        return out
    }
}

/// Runs a program. Either `argv`, or `script` fed to `interpreter` (default `sh`).
/// Output: stdout parsed as JSON when it is JSON, else the text without its final newline.
public struct ExecStep: Codable, Sendable, Equatable {
    public var argv: [String]?
    public var script: String?
    public var interpreter: [String]?
    public var env: [String: String]
    public var cwd: String?
    public var stdin: String?

    public init(argv: [String]? = nil, script: String? = nil, interpreter: [String]? = nil,
                env: [String: String] = [:], cwd: String? = nil, stdin: String? = nil) {
        self.argv = argv
        self.script = script
        self.interpreter = interpreter
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
    }
}

/// Runs its steps at once; output is `{id: output}` of each.
public struct ParallelStep: Codable, Sendable, Equatable {
    public var steps: [Step]
    public init(steps: [Step]) { self.steps = steps }
}

/// Runs its steps once per item (`${{ item }}`, `${{ index }}`); output is the
/// list of each iteration's last output, in item order.
public struct ForEachStep: Codable, Sendable, Equatable {
    /// A template that evaluates to an array, or a literal array.
    public var items: JSONValue
    public var concurrency: Int
    public var steps: [Step]

    public init(items: JSONValue, concurrency: Int = 1, steps: [Step]) {
        self.items = items
        self.concurrency = concurrency
        self.steps = steps
    }
}

/// Runs the steps of the first case whose `if` holds, else `otherwise`.
public struct BranchStep: Codable, Sendable, Equatable {
    public struct Case: Codable, Sendable, Equatable {
        public var `if`: String
        public var steps: [Step]
        public init(if condition: String, steps: [Step]) {
            self.if = condition
            self.steps = steps
        }
    }
    public var cases: [Case]
    public var otherwise: [Step]?

    public init(cases: [Case], otherwise: [Step]? = nil) {
        self.cases = cases
        self.otherwise = otherwise
    }
}

/// Runs its steps again and again (`${{ iteration }}` counts from 0) until
/// `until` holds after an iteration, at most `max` times.
public struct LoopStep: Codable, Sendable, Equatable {
    public var until: String?
    public var max: Int
    public var steps: [Step]

    public init(until: String?, max: Int, steps: [Step]) {
        self.until = until
        self.max = max
        self.steps = steps
    }
}

/// Parks the run until someone approves or denies it over the API (or it
/// expires). Its output, once approved, is `{approved, actor, reason}`.
public struct ApprovalStep: Codable, Sendable, Equatable {
    /// What the approver is asked; a template.
    public var message: String
    /// How long the approval waits, in milliseconds; nil: until decided.
    public var timeoutMs: Int?
    /// What expiry does: `fail` (default), `deny` or `approve`.
    public var onTimeout: String

    public init(message: String, timeoutMs: Int? = nil, onTimeout: String = "fail") {
        self.message = message
        self.timeoutMs = timeoutMs
        self.onTimeout = onTimeout
    }
}
