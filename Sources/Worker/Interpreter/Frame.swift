import Synchronization
import Wire
import Workflow

/// The values steps can see at one level of nesting: the results of steps run so
/// far, and the loop variables of this level (`item`, `index`, `iteration`).
/// Parallel branches write into the same frame, hence the lock.
final class Frame: Sendable {
    struct Result: Sendable {
        var output: JSONValue
        var status: StepStatus
    }

    private let parent: Frame?
    private let variables: [String: JSONValue]
    private let results = Mutex<[String: Result]>([:])

    init(parent: Frame? = nil, variables: [String: JSONValue] = [:]) {
        self.parent = parent
        self.variables = variables
    }

    func record(_ id: String, output: JSONValue, status: StepStatus) {
        results.withLock { $0[id] = Result(output: output, status: status) }
    }

    /// Copies this frame's results into its parent (a loop's last iteration, a branch's case).
    func publish() {
        guard let parent else { return }
        for (id, r) in results.withLock({ $0 }) { parent.record(id, output: r.output, status: r.status) }
    }

    private var allResults: [String: Result] {
        var merged = parent?.allResults ?? [:]
        for (k, v) in results.withLock({ $0 }) { merged[k] = v }
        return merged
    }

    private var allVariables: [String: JSONValue] {
        var merged = parent?.allVariables ?? [:]
        for (k, v) in variables { merged[k] = v }
        return merged
    }

    func scope(input: JSONValue, env: [String: String]) -> ExpressionScope {
        var roots = allVariables
        roots["input"] = input
        roots["env"] = .object(env.mapValues { .string($0) })
        roots["steps"] = .object(allResults.mapValues { .object(["output": $0.output, "status": .string($0.status.rawValue)]) })
        return ExpressionScope(roots)
    }
}
