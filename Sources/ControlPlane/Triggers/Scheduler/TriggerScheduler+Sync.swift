import Foundation
import Workflow

/// Keeps the armed set equal to what the workflow files and the operators'
/// schedules say: at start and after every reload. Changed triggers are
/// re-armed, removed ones disarmed, unchanged ones untouched (their slot,
/// buffer, pause and counters kept).
extension TriggerScheduler {
    /// The id of a trigger a workflow declares: `<workflow>.<name>` (a workflow id has no dot).
    static func declaredId(workflow: String, name: String) -> String { "\(workflow).\(name)" }

    func sync(actor: String) async throws {
        let definitions = await registry.definitions().sorted { $0.id < $1.id }
        let entries = await registry.list()
        let valid = Set(definitions.map(\.id))
        func workflowProblem(_ id: String) -> String? {
            if valid.contains(id) { return nil }
            if let entry = entries.first(where: { $0.id == id && !$0.valid }) {
                return "workflow \(id) is invalid: " + (entry.issues.first.map { "\($0.path.isEmpty ? "" : $0.path + ": ")\($0.message)" } ?? "see GET /registry/workflows")
            }
            return "workflow \(id) does not exist"
        }
        let rows = try await store.triggers()
        var claimedHooks: [String: String] = [:]
        var declared: [RunStore.DeclaredTrigger] = []
        for def in definitions {
            for t in def.triggers {
                let id = Self.declaredId(workflow: def.id, name: t.name)
                declared.append(.init(id: id, workflow: def.id, trigger: t, disarmedReason: problem(id, t, hooks: &claimedHooks)))
            }
        }
        let declaredIds = Set(declared.map(\.id))
        var others: [String: String?] = [:]
        for row in rows where !declaredIds.contains(row.id) {
            switch row.source {
            case .declared:
                others[row.id] = workflowProblem(row.workflow) ?? "no longer declared in workflow \(row.workflow)"
            case .operator:
                var reason = workflowProblem(row.workflow)
                if reason == nil, let t = row.trigger { reason = problem(row.id, t, hooks: &claimedHooks) }
                others[row.id] = .some(reason)
            }
        }
        let outcomes = try await store.applySync(declared: declared, others: others, now: clock.now())
        try await rebuild()
        for (id, outcome) in outcomes.sorted(by: { $0.key < $1.key }) {
            switch outcome {
            case .added: record(.armed, id, ["reason": "new"])
            case .changed: record(.armed, id, ["reason": "changed"])
            case .rearmed: record(.armed, id, ["reason": "its workflow is valid again"])
            case let .disarmed(why): record(.disarmed, id, ["reason": why])
            case .unchanged: break
            }
        }
        signal.wake()
    }

    /// Why a trigger cannot be armed as it is (nil: it can).
    private func problem(_ id: String, _ t: Trigger, hooks: inout [String: String]) -> String? {
        switch t.kind {
        case let .webhook(hook):
            let key = "\(hook.method) \(hook.path)"
            if let other = hooks[key] { return "\(key) is already served by trigger \(other)" }
            hooks[key] = id
            if let sig = hook.signature {
                let value = try? runs.secrets.value(of: sig.secretName)
                if value == nil || value?.isEmpty == true { return "its signature secret '\(sig.secretName)' is not set in the secret store" }
            }
        case let .fileWatch(w):
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: w.dir, isDirectory: &isDir) || !isDir.boolValue {
                return "\(w.dir) is not a directory"
            }
        default:
            break
        }
        return nil
    }

    /// The in-memory view from the store, then what runs beside the loop
    /// (directory watches, poll probes) started or stopped to match it.
    func rebuild() async throws {
        generation += 1
        let mine = generation
        let rows = try await store.triggers()
        let depths = try await store.bufferDepths()
        // A rebuild that started later read later rows: this one's are stale.
        guard mine == generation else { return }
        var next: [String: Armed] = [:]
        var firstFires: [(String, Date)] = []
        for row in rows {
            guard let trigger = row.trigger else {
                logger.error("a trigger's stored spec cannot be read", metadata: ["trigger": "\(row.id)"])
                continue
            }
            var a = Armed(row: row, trigger: trigger, schedule: TimeSchedule(trigger, id: row.id, anchor: Date(timeIntervalSince1970: row.armedAt)))
            // A one-shot already accounted for stays done.
            let done: Bool = if case .at = trigger.kind { row.lastSlotAt != nil } else { false }
            if a.live, a.schedule != nil, a.row.nextFireAt == nil, !done, let first = firstFire(a) {
                a.row.nextFireAt = first.timeIntervalSince1970
                firstFires.append((row.id, first))
            }
            next[row.id] = a
        }
        let before = armed
        armed = next
        buffered = depths
        var hookTable: [String: String] = [:]
        var publicHooks: Set<String> = []
        for (id, a) in armed where a.row.disarmedReason == nil {
            guard case let .webhook(hook) = a.trigger.kind else { continue }
            hookTable["\(hook.method) \(hook.path)"] = id
            if hook.isPublic { publicHooks.insert("\(hook.method) /hooks/\(hook.path)") }
        }
        hooks = hookTable
        onHooksChanged(publicHooks)
        for (id, first) in firstFires { try? await store.account(id, lastSlot: nil, next: first) }
        // Watches and probes follow the spec: a changed, removed, disarmed or paused trigger's stop.
        for (id, old) in before {
            let now = armed[id]
            if now == nil || now?.row.specHash != old.row.specHash || now?.live != true {
                stopSideTask(id)
            }
        }
        for (id, a) in armed where a.live {
            switch a.trigger.kind {
            case let .fileWatch(w) where watchTasks[id] == nil: startWatch(id, w)
            case let .poll(p) where pollTasks[id] == nil: startPoll(id, p)
            default: break
            }
        }
    }

    func stopSideTask(_ id: String) {
        watchTasks.removeValue(forKey: id)?.cancel()
        watchers.removeValue(forKey: id)?.stop()
        pollTasks.removeValue(forKey: id)?.cancel()
    }
}
