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
