import Workflow

/// The order steps run in, as the interpreter runs them, checked claim by
/// claim: a list runs one step after another; a loop's iterations one after
/// another; a forEach's at most `concurrency` at once, and none new once one
/// parked; a container succeeds only once what it must run has run.
extension SegmentClaims {
    /// The list a step is in: the top level, an iteration's steps, a branch's case.
    /// nil inside a parallel, whose branches have no order.
    func list(of at: Located) -> [Step]? {
        guard let container = at.containers.last else { return definition.steps }
        switch container.step.kind {
        case let .forEach(f): return f.steps
        case let .loop(l): return l.steps
        case let .branch(b): return container.childCase.map { $0 >= 0 && $0 < b.cases.count ? b.cases[$0].steps : b.otherwise ?? [] } ?? []
        case .parallel, .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp: return nil
        }
    }

    /// The first step before this one in its list that has not ended: it must end first.
    func predecessor(notEndedOf path: String, _ at: Located) -> String? {
        guard let list = list(of: at) else { return nil }
        let prefix = String(path.dropLast(at.step.id.count))
        for step in list {
            if step.id == at.step.id { return nil }
            let sibling = prefix + step.id
            if !isDone(sibling) { return sibling }
        }
        return nil
    }

    /// Ended in this segment, or checkpointed (itself or what holds it).
    func isDone(_ path: String) -> Bool {
        ended.contains(path) || isCheckpointed(path)
    }

    /// The forEach or loop this step runs in directly, and its iteration.
    func iteration(_ path: String, _ at: Located) -> (container: String, index: Int)? {
        guard let container = at.containers.last else { return nil }
        switch container.step.kind {
        case .forEach, .loop: break
        case .parallel, .branch, .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp: return nil
        }
        let prefix = path.dropLast(at.step.id.count)   // "…/work[3]/"
        guard prefix.hasSuffix("]/"), let open = prefix.lastIndex(of: "[") else { return nil }
        return Int(prefix[prefix.index(after: open)..<prefix.index(prefix.endIndex, offsetBy: -2)]).map { (container.path, $0) }
    }

    /// Whether every step of one iteration ran to its end, and nothing in it waits.
    func iterationDone(_ container: String, _ n: Int, _ steps: [Step]) -> Bool {
        let prefix = "\(container)[\(n)]/"
        return steps.allSatisfy { isDone(prefix + $0.id) } && !parked.contains { $0.hasPrefix(prefix) }
    }

    /// Why a step may not start in its iteration: a loop's iteration waits for
    /// the one before it; a forEach starts no new iteration past its
    /// concurrency, nor once one of its iterations parked.
    func iterationRefusal(_ path: String, _ at: Located) -> String? {
        guard let (container, n) = iteration(path, at), let holder = at.containers.last else { return nil }
        switch holder.step.kind {
        case let .loop(l):
            if n > 0, !iterationDone(container, n - 1, l.steps) {
                return "\(path) cannot start: iteration \(n - 1) of loop \(container) has not ended"
            }
        case let .forEach(f):
            guard !(iterations[container]?.contains(n) ?? false) else { return nil }
            if let waiting = parked.first(where: { $0.hasPrefix(container + "[") }) {
                return "\(path) cannot start a new iteration of \(container): \(waiting) parked"
            }
            let open = openIterations[container]?.count ?? 0
            if open >= max(f.concurrency, 1) {
                return "\(path) cannot start: \(open) iterations of \(container) run already (concurrency \(f.concurrency))"
            }
        case .parallel, .branch, .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp:
            break
        }
        return nil
    }

    /// What a container must have run before it succeeds, and has not: every
    /// branch of a parallel, the chosen case of a branch, a loop's iterations
    /// from the first, every iteration a forEach started.
    func unfinished(inside path: String, _ step: Step) -> String? {
        func firstNotDone(_ prefix: String, _ steps: [Step]) -> String? {
            steps.first { !isDone(prefix + $0.id) }.map { prefix + $0.id }
        }
        switch step.kind {
        case let .parallel(p):
            return firstNotDone(path + "/", p.steps)
        case let .branch(b):
            guard let chosen = chosen[path] else { return "a case of \(path)" }
            return firstNotDone(path + "/", chosen >= 0 && chosen < b.cases.count ? b.cases[chosen].steps : b.otherwise ?? [])
        case let .loop(l):
            let last = iterations[path]?.max() ?? 0
            for n in 0...last {
                if let missing = firstNotDone("\(path)[\(n)]/", l.steps) { return missing }
            }
            return nil
        case let .forEach(f):
            for n in (iterations[path] ?? []).sorted() {
                if let missing = firstNotDone("\(path)[\(n)]/", f.steps) { return missing }
            }
            return nil
        case .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp:
            return nil
        }
    }
}
