import Foundation
import Workflow

/// Queue triggers: each message becomes one run, up to the trigger's
/// `concurrency` at once. A message is taken in the transaction that creates
/// its run and settled in the one that ends it; a run that outlives the
/// visibility timeout lets the message be taken again (at least once).
extension TriggerScheduler {
    /// The queue triggers that consume `name`.
    /// Paused ones included (their messages wait); disarmed ones not.
    func consumers(of name: String) -> [String] {
        armed.values.filter { a in
            guard a.row.disarmedReason == nil, case let .queue(q) = a.trigger.kind else { return false }
            return q.queue == name
        }.map(\.row.id).sorted()
    }

    public enum QueueError: Error, Sendable {
        case unknownQueue(String)
        /// As many messages wait as the queue's `maxDepth` allows.
        case full(Int)
    }

    func enqueue(queue: String, body: JSONValue, dedupeId: String?) async throws -> RunStore.Enqueued {
        let consumers = consumers(of: queue)
        guard !consumers.isEmpty else { throw QueueError.unknownQueue(queue) }
        let maxDepth = consumers.compactMap { id -> Int? in
            if case let .queue(q)? = armed[id]?.trigger.kind { q.maxDepth } else { nil }
        }.max() ?? 100_000
        let result = try await store.enqueue(queue: queue, body: body, dedupeId: dedupeId, maxDepth: maxDepth, now: Date())
        signal.wake()
        return result
    }

    func dispatchQueues(now: Date) async {
        for id in armed.keys.sorted() {
            guard let a = armed[id], a.live, case let .queue(q) = a.trigger.kind else { continue }
            let room = q.concurrency - (inflight[id]?.count ?? 0)
            guard room > 0, let messages = try? await store.takeable(queue: q.queue, limit: room, now: now) else { continue }
            for m in messages {
                let again = m.status == .inflight ? " (its run \(m.runId ?? "") outlived the visibility timeout)" : ""
                let outcome = await fireNow(id, slot: nil, input: JSONValue.parse(m.body) ?? .null,
                                            reason: "queue \(q.queue) message \(m.id), attempt \(m.attempts + 1)\(again)", next: nil,
                                            extra: RunStore.takeMessage(m, maxAttempts: q.maxAttempts, visibility: q.visibilityTimeoutSeconds, now: now))
                guard case let .failed(why) = outcome, admission.paused == nil else { continue }
                if why.hasPrefix(Self.inputMismatch) {
                    // No run can ever be made of it (its body does not match the workflow's input schema).
                    try? await store.deadLetter(m.id, error: why)
                } else {
                    // Anything else may pass (a reload in progress, a full disk): tried again in a while.
                    try? await store.postpone(m.id, until: now.addingTimeInterval(30))
                }
            }
        }
    }

    public struct QueueView: Encodable, Sendable {
        public var stats: RunStore.QueueStats
        public var consumers: [String]
    }

    func queueView(_ name: String) async throws -> QueueView {
        let consumers = consumers(of: name)
        let stats = try await store.queueStats(name)
        guard !consumers.isEmpty || stats.depth + stats.inflight + stats.deadLetters + stats.done > 0 else { throw QueueError.unknownQueue(name) }
        return QueueView(stats: stats, consumers: consumers)
    }

    func redrive(_ name: String, ids: [String]?, actor: String) async throws -> Int {
        let n = try await store.redrive(queue: name, ids: ids, now: Date())
        audit.record(actor: actor, action: TriggerAuditAction.queueRedrive.rawValue, details: ["queue": name, "messages": "\(n)"])
        signal.wake()
        return n
    }
}
