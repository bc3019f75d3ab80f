import Wire
import Workflow

/// What one run segment's worker has claimed so far, checked claim by claim
/// against the workflow definition and what the segment already said.
///
/// Only the worker can say what happened inside a step, so the control plane
/// persists its reports; but what it persists becomes checkpoints a resumed run
/// skips, approvals a human is asked for, requests made with credentials, and
/// audit entries. A compromised worker must not be able to write those at will:
/// each claim has to fit the definition (the step exists at that path) and the
/// segment's order (a step ends only after it started; in a list, at any depth,
/// a step starts only after the ones before it ended, so nothing after an
/// approval runs before the decision). A claim that does not is a protocol violation.
struct SegmentClaims: Sendable {
    /// A claim refused, in words for the run's error and the audit entry.
    struct Violation: Error, Sendable, Equatable {
        /// What the worker said (`step.finished deploy`), cut to a readable length.
        var claim: String
        var reason: String
    }

    /// A step path resolved against the definition.
    struct Located: Sendable {
        struct Container: Sendable {
            /// The container's own path (`work/squares`): what its events name.
            var path: String
            var step: Step
            /// For a branch: which case (-1: `otherwise`) holds the step below it.
            var childCase: Int?
        }
        var step: Step
        /// Outermost first.
        var containers: [Container]
        var isTopLevel: Bool { containers.isEmpty }
    }

    /// A top-level step in this segment. Top-level steps run one after the other.
    private enum Top: Equatable {
        case notStarted, running, retrying, finished, skipped, failed, parked
        /// Succeeded in an earlier segment: the worker is told not to run it again.
        case checkpointed
        var isDone: Bool { self == .finished || self == .skipped || self == .checkpointed }
    }

    let definition: WorkflowDefinition
    private var top: [String: Top] = [:]
    /// Paths between their `step.started` and their end, at any depth.
    private var running: Set<String> = []
    /// The case each running branch chose (-1: `otherwise`).
    private(set) var chosen: [String: Int] = [:]
    /// The iterations of each forEach and loop (by its path) that started a
    /// step in this segment.
    private(set) var iterations: [String: Set<Int>] = [:]
    /// Of those, the ones not yet done: what a forEach's concurrency counts.
    private(set) var openIterations: [String: Set<Int>] = [:]
    /// Paths started in this segment: a second start is a retry.
    private var started: Set<String> = []
    /// Starts of each step in this segment, and the requests the control
    /// plane made for it: one request an attempt, as the interpreter makes.
    private var starts: [String: Int] = [:]
    private var requests: [String: Int] = [:]
    /// Steps that ran to their end in this segment or an earlier one, at any
    /// depth: what a later step in the same list waits for.
    private(set) var ended: Set<String> = []
    /// Checkpoints from earlier segments: nothing at or inside them runs again.
    let checkpointed: Set<String>
    /// Steps that parked in this segment: approvals, waits, child runs.
    private(set) var parked: Set<String> = []
    /// The attempt each step's next start must claim (absent: 1). Attempts
    /// decide whether an interrupted step may run again, so they are counted
    /// here, not taken from the worker: one that restarted its count could
    /// have a step that kills its worker run forever.
    private var nextAttempt: [String: Int] = [:]
    /// What interrupted steps start at in this segment: where a container's
    /// new start puts its steps back to.
    private let firstAttempt: [String: Int]
    /// Set once a claim was refused: nothing more from this worker is believed.
    private(set) var refused: Violation?
    /// Set once the run service has judged the segment: later events are dropped.
    private(set) var closed = false
    /// Events received, to hold the answer's count against.
    private(set) var received = 0

    static let maxPathBytes = 4096

    /// `checkpointed`: paths, at any depth, that succeeded in earlier segments;
    /// `attempts`: starts that steps interrupted in earlier segments already used.
    init(definition: WorkflowDefinition, checkpointed: some Collection<String>, attempts: [String: Int] = [:]) {
        self.definition = definition
        for step in definition.steps { top[step.id] = .notStarted }
        for id in checkpointed where top[id] != nil { top[id] = .checkpointed }
        self.checkpointed = Set(checkpointed)
        ended = self.checkpointed
        firstAttempt = attempts.mapValues { $0 + 1 }
        nextAttempt = firstAttempt
    }

    /// Parks one segment may make: each is a row (an approval, a wait, a child run).
    static let maxParks = 200

    /// Whether the path, or a step it runs inside, already succeeded in an earlier segment.
    func isCheckpointed(_ path: String) -> Bool {
        checkpointed.contains(path) || StepPath.ancestors(of: path).contains(where: checkpointed.contains)
    }

    /// Whether nothing more from this worker is taken.
    var isOver: Bool { closed || refused != nil }

    func isRunning(_ path: String) -> Bool { running.contains(path) }

    /// Counts a request made for a running step; false once it has had one for
    /// each of its starts (a worker that asks again is refused, not served).
    mutating func admitRequest(_ path: String) -> Bool {
        guard running.contains(path), requests[path, default: 0] < starts[path, default: 0] else { return false }
        requests[path, default: 0] += 1
        return true
    }

    mutating func refuse(_ v: Violation) {
        if refused == nil { refused = v }
    }

    mutating func close() { closed = true }

    // MARK: Events

    /// Checks one event and, if it fits, records it. Throws the violation otherwise.
    mutating func accept(_ event: JobEvent) throws(Violation) {
        received += 1
        let claim = Self.describe(event)
        func no(_ reason: String) -> Violation { Violation(claim: claim, reason: Self.cut(reason, to: 400)) }
        guard let kind = event.kind else { throw no("'\(Self.cut(event.type))' is not an event type of the catalogue") }
        guard kind != .jobStarted else { throw no("job.started belongs to one-program jobs, not to a run segment") }
        guard let path = event.step else { throw no("a \(kind.rawValue) event must name its step") }
        let at: Located
        switch locate(path) {
        case let .success(l): at = l
        case let .failure(v): throw no(v.reason)
        }
        // Every enclosing step must be running, and a branch's child in the case it chose.
        for c in at.containers {
            guard running.contains(c.path) else { throw no("\(c.path), which holds \(path), is not running") }
            if let want = c.childCase {
                guard let got = chosen[c.path] else { throw no("branch \(c.path) has not chosen a case") }
                guard got == want else { throw no("\(path) is not in the case branch \(c.path) chose") }
            }
        }
        let id = at.step.id
        if kind.isActivity {
            // A report on a running step of the kind that can make it: no state changes.
            guard running.contains(path) else { throw no("\(path) is not running") }
            switch (kind, at.step.kind) {
            case (.mcpCall, .mcp), (.permissionDenied, .mcp), (_, .agent): return
            default: throw no("a \(at.step.kindName.rawValue) step does not report \(kind.rawValue)")
            }
        }
        if kind == .stepStarted || kind == .stepSkipped {
            if isCheckpointed(path) { throw no("\(path) already succeeded in an earlier segment of this run") }
            if parked.contains(path) { throw no("\(path) parked in this segment; it waits") }
            if let before = predecessor(notEndedOf: path, at) {
                throw no("\(path) cannot start before \(before), which comes before it, has ended")
            }
            if let refusal = iterationRefusal(path, at) { throw no(refusal) }
        }
        if kind == .stepStarted {
            let expected = nextAttempt[path] ?? 1
            guard case let .number(n)? = event.data?["attempt"], n == Double(expected) else {
                throw no("\(path) starts its attempt \(expected), not \(event.data?["attempt"]?.jsonText ?? "none")")
            }
        }
        if kind == .stepStarted || kind == .stepSkipped, let (container, n) = iteration(path, at) {
            if iterations[container, default: []].insert(n).inserted { openIterations[container, default: []].insert(n) }
        }
        switch kind {
        case .stepStarted:
            if at.isTopLevel {
                guard top[id] == .notStarted || top[id] == .retrying else {
                    throw no("top-level step \(id) already \(describe(top[id]!)) in this run")
                }
                top[id] = .running
            } else {
                guard !running.contains(path) else { throw no("\(path) is already running") }
                guard !ended.contains(path) else { throw no("\(path) already ended in this segment") }
            }
            running.insert(path)
            chosen[path] = nil
            // A container that starts again (its retry) starts what is inside it afresh.
            starts[path, default: 0] += 1
            if !started.insert(path).inserted, at.step.kind.isContainer {
                let inside = { (p: String) in p.hasPrefix(path + "/") || p.hasPrefix(path + "[") }
                ended = ended.filter { !inside($0) || checkpointed.contains($0) }
                nextAttempt = nextAttempt.filter { !inside($0.key) }.merging(firstAttempt.filter { inside($0.key) }) { _, first in first }
                iterations = iterations.filter { $0.key != path && !inside($0.key) }
                openIterations = openIterations.filter { $0.key != path && !inside($0.key) }
            }
        case .stepSkipped:
            // The interpreter skips only a step whose `if` is false.
            guard at.step.if != nil else { throw no("\(path) has no condition; it cannot be skipped") }
            if at.isTopLevel {
                guard top[id] == .notStarted else { throw no("top-level step \(id) already \(describe(top[id]!)) in this run") }
                top[id] = .skipped
            } else {
                guard !running.contains(path) else { throw no("\(path) is running; it cannot be skipped") }
                guard !ended.contains(path) else { throw no("\(path) already ended in this segment") }
            }
            ended.insert(path)
        case .stepFinished, .stepFailed:
            guard running.contains(path) else { throw no("\(path) has not started in this segment (or already ended)") }
            // A parking step's outcome (a decision, a posted output, a child's
            // result) is recorded by the control plane, never claimed by a worker.
            guard !at.step.kind.parks else { throw no("\(path) is a \(at.step.kindName.rawValue) step: only the gateway ends it") }
            if let inner = running.first(where: { $0.hasPrefix(path + "/") || $0.hasPrefix(path + "[") }) {
                throw no("\(inner), inside \(path), is still running")
            }
            if let inner = parked.first(where: { $0.hasPrefix(path + "/") || $0.hasPrefix(path + "[") }) {
                throw no("\(inner), inside \(path), parked; \(path) cannot end before it does")
            }
            if kind == .stepFinished, let missing = unfinished(inside: path, at.step) {
                throw no("\(path) cannot succeed: \(missing), inside it, did not run to its end")
            }
            var retrying = false
            if kind == .stepFailed, event.data?["willRetry"] == .bool(true) {
                guard (at.step.retry?.max ?? 0) > 0 else { throw no("\(path) has no retry policy, yet claims a retry") }
                retrying = true
            }
            running.remove(path)
            chosen[path] = nil
            nextAttempt[path] = retrying ? (nextAttempt[path] ?? 1) + 1 : nil
            if kind == .stepFinished { ended.insert(path) }
            if at.isTopLevel { top[id] = kind == .stepFinished ? .finished : retrying ? .retrying : .failed }
        case .stepBranch:
            guard case let .branch(branch) = at.step.kind else { throw no("\(path) is not a branch step") }
            guard running.contains(path) else { throw no("\(path) is not running") }
            guard chosen[path] == nil else { throw no("branch \(path) already chose a case") }
            switch event.data?["case"] {
            case let .number(n)? where n >= 0 && n < Double(branch.cases.count) && n == n.rounded():
                chosen[path] = Int(n)
            case .string("otherwise")?:
                chosen[path] = -1
            default:
                throw no("data.case is neither one of the \(branch.cases.count) cases nor \"otherwise\"")
            }
        case .stepParked:
            guard at.step.kind.parks else { throw no("\(path) is a \(at.step.kindName.rawValue) step, which does not park") }
            guard running.contains(path) else { throw no("\(path) has not started in this segment") }
            guard parked.count < Self.maxParks else { throw no("more than \(Self.maxParks) steps parked in one segment") }
            running.remove(path)
            parked.insert(path)
            if at.isTopLevel { top[id] = .parked }
        case .jobStarted, .agentMessage, .agentThought, .agentToolCall, .agentPlan, .agentRequest, .permissionDenied, .mcpCall:
            break
        }
        // An iteration done frees a place in its forEach's concurrency.
        if kind == .stepFinished || kind == .stepSkipped, let (container, n) = iteration(path, at),
           openIterations[container]?.contains(n) == true, let steps = list(of: at), iterationDone(container, n, steps) {
            openIterations[container]?.remove(n)
        }
    }

    private func describe(_ t: Top) -> String {
        switch t {
        case .notStarted: "not started"
        case .running: "running"
        case .retrying: "waiting for a retry"
        case .finished: "finished"
        case .skipped: "skipped"
        case .failed: "failed"
        case .parked: "parked"
        case .checkpointed: "succeeded in an earlier segment"
        }
    }

    // MARK: The answer

    /// Checks the job's answer against the segment's events: a success needs
    /// every top-level step done, nothing running and nothing parked; a park
    /// needs exactly the steps that parked, and nothing running but their containers.
    func check(_ result: RunJobResult) throws(Violation) {
        switch result.status {
        case .succeeded:
            let claim = "job.run succeeded"
            if let step = running.sorted().first { throw Violation(claim: claim, reason: "\(step) is still running") }
            if let step = parked.sorted().first { throw Violation(claim: claim, reason: "\(step) parked") }
            for step in definition.steps where !(top[step.id]?.isDone ?? false) {
                throw Violation(claim: claim, reason: "top-level step \(step.id) is \(describe(top[step.id]!))")
            }
        case .parked:
            let claimed = Set(result.parked.map(\.step))
            let claim = "job.run parked at \(Self.cut(claimed.sorted().joined(separator: ", ")))"
            guard !parked.isEmpty else { throw Violation(claim: claim, reason: "no step parked in this segment") }
            guard claimed == parked, claimed.count == result.parked.count else {
                throw Violation(claim: claim, reason: "the segment parked at \(Self.cut(parked.sorted().joined(separator: ", ")))")
            }
            // What still runs can only be the containers of what parked: they end once it does.
            let holding = Set(parked.flatMap { StepPath.ancestors(of: $0) })
            if let step = running.subtracting(holding).sorted().first {
                throw Violation(claim: claim, reason: "\(step) is still running")
            }
        case .failed:
            // Failing is the safe direction: nothing is persisted as done.
            break
        }
    }

    // MARK: Paths

    /// Resolves `work/squares[2]/square` against the definition: each component
    /// names a step inside the previous one, `[n]` only on a forEach or loop
    /// (within the loop's `max`), and the last component is the step itself.
    func locate(_ path: String) -> Result<Located, Violation> {
        func no(_ reason: String) -> Result<Located, Violation> { .failure(Violation(claim: Self.cut(path), reason: Self.cut(reason, to: 400))) }
        // Ids and indices are ASCII: anything else cannot name a step, and
        // checking bytes keeps Unicode's notion of equal characters out of it.
        guard !path.isEmpty, path.utf8.count <= Self.maxPathBytes, path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return no("'\(Self.cut(path))' is not a step path")
        }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        var level = definition.steps
        var containers: [Located.Container] = []
        var prefix = ""
        for (i, component) in components.enumerated() {
            guard let (id, index) = Self.parse(component) else { return no("'\(Self.cut(path))' is not a step path") }
            guard let step = level.first(where: { $0.id == id }) else {
                return no(containers.last.map { "\(id) is not a step inside \($0.path)" } ?? "\(id) is not a top-level step of \(definition.id)")
            }
            if let parent = containers.last, case let .branch(branch) = parent.step.kind {
                containers[containers.count - 1].childCase = branch.cases.firstIndex { $0.steps.contains { $0.id == id } } ?? -1
            }
            let own = prefix + step.id
            if i == components.count - 1 {
                if index != nil { return no("\(Self.cut(path)) ends in an iteration, not in a step") }
                return .success(Located(step: step, containers: containers))
            }
            switch step.kind {
            case let .forEach(forEach):
                guard index != nil else { return no("\(own) is a forEach: its steps run in iterations (\(own)[n])") }
                level = forEach.steps
            case let .loop(loop):
                guard let index else { return no("\(own) is a loop: its steps run in iterations (\(own)[n])") }
                guard index < max(loop.max, 1) else { return no("\(own) runs at most \(max(loop.max, 1)) iterations, not \(index + 1)") }
                level = loop.steps
            case .parallel, .branch:
                guard index == nil else { return no("\(own) is a \(step.kindName.rawValue) step: it has no iterations") }
                level = step.children
            case .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp:
                return no("\(own) is a \(step.kindName.rawValue) step: no steps run inside it")
            }
            containers.append(.init(path: own, step: step, childCase: nil))
            prefix = own + (index.map { "[\($0)]" } ?? "") + "/"
        }
        return no("'\(Self.cut(path))' is not a step path")
    }

    /// `id` or `id[n]`, n a plain decimal (no sign, no leading zero).
    static func parse(_ component: Substring) -> (id: Substring, index: Int?)? {
        guard let open = component.firstIndex(of: "[") else {
            return component.isEmpty || component.contains("]") ? nil : (component, nil)
        }
        guard component.last == "]" else { return nil }
        let id = component[..<open]
        let digits = component[component.index(after: open)..<component.index(before: component.endIndex)]
        guard !id.isEmpty, !id.contains("]"), !digits.isEmpty, digits.count <= 9,
              digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), digits.count == 1 || digits.first != "0",
              let n = Int(digits) else { return nil }
        return (id, n)
    }

    static func describe(_ event: JobEvent) -> String {
        cut(event.type) + (event.step.map { " " + cut($0) } ?? "")
    }

    /// Worker-supplied text in a message or an audit entry, bounded.
    static func cut(_ text: String, to limit: Int = 200) -> String {
        text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }
}
