/// Step paths name nested steps (`work/squares[2]/square`); a step's id is the
/// last component without its iteration index. Ids are unique in a workflow.
public enum StepPath {
    public static func id(of path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? path
        return last.split(separator: "[").first.map(String.init) ?? last
    }

    /// The containers a path runs inside, outermost first, each with its
    /// iteration when it has one (`work`, `work/squares`, for `work/squares[2]/square`):
    /// the paths that are running while it runs.
    public static func ancestors(of path: String) -> [String] {
        var out: [String] = []
        var prefix = ""
        for component in path.split(separator: "/").dropLast() {
            let id = component.split(separator: "[").first.map(String.init) ?? String(component)
            out.append(prefix + id)
            prefix += component + "/"
        }
        return out
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
    /// Running it twice does no harm: a step interrupted by a crash runs again
    /// even without retries left.
    public var idempotent: Bool?
    public var kind: StepKind

    public init(id: String, if condition: String? = nil, retry: RetryPolicy? = nil, timeoutMs: Int? = nil, _ kind: StepKind) {
        self.id = id
        self.if = condition
        self.retry = retry
        self.timeoutMs = timeoutMs
        self.kind = kind
    }

    public var kindName: StepKind.Name { kind.name }

    /// Steps nested directly inside this one, in every case they may run.
    public var children: [Step] {
        switch kind {
        case let .parallel(p): p.steps
        case let .forEach(f): f.steps
        case let .loop(l): l.steps
        case let .branch(b): b.cases.flatMap(\.steps) + (b.otherwise ?? [])
        case .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp: []
        }
    }

    /// How many times it may start in all, after interruptions included.
    public var maxAttempts: Int {
        let own = 1 + Swift.max(0, retry?.max ?? 0)
        return idempotent == true ? Swift.max(own, Self.idempotentAttempts) : own
    }

    /// An idempotent step interrupted by a crash runs again, up to this many starts in all.
    public static let idempotentAttempts = 3
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
