import Foundation
import Workflow

/// The triggers that watch something: a poll trigger's probe (a step run like
/// any other, in a sandboxed worker under the workflow's permissions) and a
/// file-watch trigger's directory (read by the control plane with inotify; the
/// steps it starts get the paths, never the directory itself).
extension TriggerScheduler {
    // MARK: Poll

    func startPoll(_ id: String, _ p: PollTrigger) {
        pollTasks[id] = Task { [weak self] in
            while !Task.isCancelled {
                await self?.pollOnce(id, p)
                try? await Task.sleep(for: .milliseconds(p.everyMs))
            }
        }
    }

    /// The probe's workflow: the probe step alone, with the workflow's env,
    /// permissions and credential bindings. Its runs are filed under `<id>#probe`.
    static func probeDefinition(_ id: String, _ p: PollTrigger, of def: WorkflowDefinition) -> WorkflowDefinition {
        // Its own id: a probe run resumed after a restart finds no such workflow
        // and fails, rather than running the whole workflow.
        var probe = WorkflowDefinition(id: id + ".probe", env: def.env, steps: [p.probe])
        probe.permissions = def.permissions
        probe.permissionProfile = def.permissionProfile
        probe.inject = def.inject
        probe.timeoutMs = p.probe.timeoutMs.map { $0 + 5000 }
        return probe
    }

    func pollOnce(_ id: String, _ p: PollTrigger) async {
        guard role.leads, let a = armed[id], a.live, admission.paused == nil, let def = await registry.workflow(a.row.workflow) else { return }
        let origin = RunOrigin(triggerId: id + "#probe", scheduledAt: nil) { _, _ in }
        let output: JSONValue
        do {
            let (run, _) = try await runs.submit(workflow: id + ".probe", definition: Self.probeDefinition(id, p, of: def), input: .object([:]),
                                                 idempotencyKey: nil, actor: "trigger:\(id)", origin: origin)
            await runs.waitUntilFinished(run.id)
            guard let done = try await store.run(run.id, withSteps: false) else { return }
            guard done.status == .succeeded else {
                _ = await failed(id, slot: nil, next: nil,
                                 error: "probe run \(run.id) \(done.status.rawValue)" + (done.error.map { ": \($0.code): \($0.message)" } ?? ""))
                return
            }
            output = done.output ?? .null
        } catch {
            _ = await failed(id, slot: nil, next: nil, error: "the probe could not run: \(Self.describe(error))")
            return
        }
        let value = Self.pluck(output, key: p.key)
        let text = value.jsonText
        let previous = armed[id]?.row.pollKey
        guard previous != text else { return }
        do { try await store.account(id, lastSlot: nil, next: nil, pollKey: text) } catch {
            logger.error("cannot record a poll trigger's key", metadata: ["trigger": "\(id)", "error": "\(error)"])
            return
        }
        armed[id]?.row.pollKey = text
        // The first result is the baseline: nothing changed yet.
        guard let previous else { return }
        let input: JSONValue = ["value": value, "previous": JSONValue.parse(previous) ?? .null, "output": output]
        _ = await offer(id, slot: nil, input: input, reason: "the probe's \(p.key ?? "output") changed")
    }

    /// `body.etag` of the probe's output; the whole output without a key; null where the path leads nowhere.
    static func pluck(_ value: JSONValue, key: String?) -> JSONValue {
        guard let key else { return value }
        var v = value
        for part in key.split(separator: ".") {
            if case let .object(o) = v, let next = o[String(part)] { v = next }
            else if case let .array(a) = v, let i = Int(part), a.indices.contains(i) { v = a[i] }
            else { return .null }
        }
        return v
    }

    // MARK: File watch

    func startWatch(_ id: String, _ w: FileWatchTrigger) {
        watchTasks[id] = Task { [weak self] in
            // Built off the actor: a recursive watch walks its whole tree first,
            // and fires, webhooks and queues must not wait for that.
            let watcher: DirectoryWatcher
            do {
                watcher = try await Task.detached {
                    try DirectoryWatcher(directory: w.dir, recursive: w.recursive, filter: w.pattern, debounce: .milliseconds(w.debounceMs))
                }.value
            } catch {
                _ = await self?.failed(id, slot: nil, next: nil, error: "cannot watch \(w.dir): \(error)")
                return
            }
            guard let self, await self.attach(id, watcher) else {
                watcher.stop()
                return
            }
            for await batch in watcher.batches {
                await self.filesChanged(id, batch, w)
            }
            await self.watchEnded(id, watcher)
        }
    }

    /// Keeps the watcher unless the trigger's watch was stopped while it was being built.
    private func attach(_ id: String, _ watcher: DirectoryWatcher) -> Bool {
        guard watchTasks[id] != nil, !Task.isCancelled else { return false }
        watchers[id] = watcher
        return true
    }

    func filesChanged(_ id: String, _ batch: FileEventBatch, _ w: FileWatchTrigger) async {
        let wanted = Set(w.events)
        var events: [JSONValue] = []
        for e in batch.events {
            let (kind, from): (FileWatchTrigger.Event, String?) = switch e.kind {
            case .created, .movedTo: (e.kind == .created ? .create : .move, nil)
            case .modified: (.modify, nil)
            case .deleted, .movedFrom: (e.kind == .deleted ? .delete : .move, nil)
            case let .moved(from): (.move, from)
            }
            guard wanted.contains(kind) else { continue }
            var o: [String: JSONValue] = ["path": .string(e.path), "event": .string(kind.rawValue)]
            if e.kind == .movedTo { o["movedIn"] = true }
            if e.kind == .movedFrom { o["movedOut"] = true }
            if let from { o["from"] = .string(from) }
            if e.isDirectory { o["directory"] = true }
            events.append(.object(o))
        }
        guard !events.isEmpty || batch.overflowed || batch.truncated else { return }
        var input: [String: JSONValue] = ["dir": .string(w.dir), "events": .array(events)]
        if batch.truncated { input["omitted"] = .number(Double(batch.omitted)) }
        if batch.overflowed { input["overflowed"] = true }
        _ = await offer(id, slot: nil, input: .object(input), reason: "\(events.count) change\(events.count == 1 ? "" : "s") in \(w.dir)")
    }

    /// The directory went away (or could no longer be read): the trigger says so and waits for a reload.
    func watchEnded(_ id: String, _ watcher: DirectoryWatcher) async {
        guard watchers[id] === watcher, let reason = watcher.endReason, reason != .stopped else { return }
        watchers[id] = nil
        watchTasks[id] = nil
        _ = await failed(id, slot: nil, next: nil, error: "the watch on \(watcher.directory) ended: \(reason) (fix it, then reload)")
    }
}
