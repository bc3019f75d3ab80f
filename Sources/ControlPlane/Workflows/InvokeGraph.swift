import Workflow

/// Which workflows `invoke` which, checked across the whole registry: a
/// workflow that invokes one that is not there (or not valid), or that
/// invokes itself through a chain of others, cannot run, and says why.
enum InvokeGraph {
    /// Why each broken workflow is broken, by id.
    static func problems(_ workflows: [String: WorkflowDefinition]) -> [String: String] {
        var out: [String: String] = [:]
        var live = workflows
        // Removing one can break those that invoke it: until nothing changes.
        var changed = true
        while changed {
            changed = false
            for (id, def) in live.sorted(by: { $0.key < $1.key }) {
                if let missing = def.invokes.sorted().first(where: { live[$0] == nil }) {
                    out[id] = workflows[missing] == nil
                        ? "invokes workflow \(missing), which is not defined"
                        : "invokes workflow \(missing), which cannot run (\(out[missing] ?? "invalid"))"
                    live[id] = nil
                    changed = true
                }
            }
            for cycle in cycles(live) {
                let text = (cycle + [cycle[0]]).joined(separator: " → ")
                for id in cycle where live[id] != nil {
                    out[id] = "invokes itself through \(text): a run of it would never end"
                    live[id] = nil
                    changed = true
                }
            }
        }
        return out
    }

    /// Each cycle once, as the ids along it.
    static func cycles(_ workflows: [String: WorkflowDefinition]) -> [[String]] {
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var stack: [String] = []
        var found: [[String]] = []
        func visit(_ id: String) {
            marks[id] = .visiting
            stack.append(id)
            for next in (workflows[id]?.invokes ?? []).sorted() where workflows[next] != nil {
                switch marks[next] {
                case nil: visit(next)
                case .visiting?: found.append(Array(stack[stack.lastIndex(of: next)!...]))
                case .done?: break
                }
            }
            stack.removeLast()
            marks[id] = .done
        }
        for id in workflows.keys.sorted() where marks[id] == nil { visit(id) }
        return found
    }
}
