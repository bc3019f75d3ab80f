import Foundation
import Workflow

/// A fire, through the trigger's overlap policy: started now, buffered behind
/// the running run, skipped, or dropped; each outcome counted and audited.
extension TriggerScheduler {
    public enum FireOutcome: Sendable, Equatable {
        case fired(runId: String)
        case buffered
        case skipped(String)
        case dropped(String)
        case failed(String)
    }

    /// What a fire carries into the transaction that creates its run (besides the slot).
    typealias FireExtra = @Sendable (any StoreConnection, String) throws -> Void

    func offer(_ id: String, slot: Date?, input: JSONValue, reason: String, next: Date? = nil, extra: FireExtra? = nil,
               policy override: OverlapPolicy? = nil) async -> FireOutcome {
        guard let a = armed[id] else { return .failed("trigger \(id) is not armed") }
        // Checked here, after whatever the caller awaited: a pause or a disarm meanwhile holds.
        guard a.live else { return .failed(a.row.disarmedReason.map { "trigger \(id) is disarmed: \($0)" } ?? "trigger \(id) is paused") }
        let policy = override ?? a.trigger.overlap
        let running = (inflight[id]?.count ?? 0) + (starting[id] ?? 0)
        let waiting = buffered[id] ?? 0
        let capacity = policy == .allowAll ? a.trigger.maxConcurrent : 1
        if running < capacity, waiting == 0 {
            return await fireNow(id, slot: slot, input: input, reason: reason, next: next, extra: extra)
        }
        let busy = inflight[id].map { "run \($0.sorted().joined(separator: ", ")) of it is still going" } ?? "earlier fires are still buffered"
        switch policy {
        case .skip:
            try? await store.account(id, lastSlot: slot, next: next, skipped: 1)
            armed[id]?.row.skipped += 1
            note(id, lastSlot: slot, next: next)
            record(.skipped, id, ["reason": busy, "slot": Self.iso(slot), "policy": policy.rawValue])
            return .skipped(busy)
        case .cancelOther:
            for run in (inflight[id] ?? []).sorted() {
                _ = try? await runs.cancel(run, actor: "trigger:\(id)")
            }
            return await fireNow(id, slot: slot, input: input, reason: reason + " (cancelling the runs before it)", next: next, extra: extra)
        case .bufferOne, .bufferAll, .allowAll:
            let max = policy == .bufferOne ? 1 : a.trigger.maxBuffer
            if policy == .allowAll, running >= capacity {
                return await drop(id, slot: slot, next: next, why: "\(running) runs of it are going (maxConcurrent \(capacity))")
            }
            return await bufferFire(id, slot: slot, input: input, reason: reason, max: max, next: next, extra: extra,
                                    whyFull: policy == .bufferOne ? "one fire is already buffered (buffer_one)" : "the buffer holds \(max) fires (maxBuffer)")
        }
    }

    func bufferFire(_ id: String, slot: Date?, input: JSONValue, reason: String, max: Int, next: Date?, extra: FireExtra? = nil,
                    whyFull: String) async -> FireOutcome {
        do {
            guard try await store.buffer(id, slot: slot, input: input, reason: reason, max: max, next: next, extra: extra) else {
                armed[id]?.row.dropped += 1
                note(id, lastSlot: slot, next: next)
                record(.dropped, id, ["reason": whyFull, "slot": Self.iso(slot)])
                return .dropped(whyFull)
            }
        } catch is FireConflict {
            // A webhook delivery whose id another delivery remembered first.
            return .skipped("already fired")
        } catch {
            return await failed(id, slot: slot, next: next, error: "cannot buffer the fire: \(error)")
        }
        buffered[id, default: 0] += 1
        note(id, lastSlot: slot, next: next)
        record(.buffered, id, ["reason": reason, "slot": Self.iso(slot), "depth": "\(buffered[id] ?? 0)"])
        return .buffered
    }

    private func drop(_ id: String, slot: Date?, next: Date?, why: String) async -> FireOutcome {
        try? await store.account(id, lastSlot: slot, next: next, dropped: 1)
        armed[id]?.row.dropped += 1
        note(id, lastSlot: slot, next: next)
        record(.dropped, id, ["reason": why, "slot": Self.iso(slot)])
        return .dropped(why)
    }

    /// Creates the run, with the fire's own writes in its transaction.
    func fireNow(_ id: String, slot: Date?, input: JSONValue, reason: String, next: Date?, bufferedSeq: Int? = nil,
                 extra: FireExtra? = nil) async -> FireOutcome {
        guard let a = armed[id] else { return .failed("trigger \(id) is not armed") }
        let origin = RunStore.fireOrigin(triggerId: id, slot: bufferedSeq == nil ? slot : nil, next: next, buffered: bufferedSeq, extra: extra,
                                         scheduledAt: slot)
        starting[id, default: 0] += 1
        defer {
            let left = (starting[id] ?? 1) - 1
            starting[id] = left > 0 ? left : nil
        }
        // A buffered fire leaves the queue's depth as it starts, not once its run
        // is made: the run's row is visible the moment its transaction commits,
        // before this actor hears back, and the view must never show both.
        if bufferedSeq != nil { buffered[id] = Swift.max(0, (buffered[id] ?? 1) - 1) }
        do {
            let (run, _) = try await runs.submit(workflow: a.row.workflow, input: input, idempotencyKey: nil, actor: "trigger:\(id)", origin: origin)
            if endedEarly.remove(run.id) == nil { inflight[id, default: []].insert(run.id) }
            armed[id]?.row.fired += 1
            armed[id]?.row.lastFiredAt = Date().timeIntervalSince1970
            armed[id]?.row.lastOutcome = "started"
            armed[id]?.row.lastError = nil
            note(id, lastSlot: slot, next: next)
            record(.fired, id, runId: run.id, ["reason": reason, "slot": Self.iso(slot)])
            return .fired(runId: run.id)
        } catch is FireConflict {
            // Another fire accounted for this slot, took this message or saw this delivery first.
            // (A buffered fire another drain started: that drain counted it out too.)
            if bufferedSeq != nil { buffered[id, default: 0] += 1 }
            return .skipped("already fired")
        } catch let RunService.SubmitError.paused(pause) {
            // The buffered fire stays in the store's buffer, so back in the depth.
            if bufferedSeq != nil { buffered[id, default: 0] += 1 }
            return .failed("the gateway is paused: \(pause.reason)")
        } catch {
            if let bufferedSeq { try? await store.dropBuffered(id, seq: bufferedSeq) }
            return await failed(id, slot: slot, next: next, error: Self.describe(error))
        }
    }

    /// A fire that could not make a run: counted as its slot, recorded as the trigger's last error, audited.
    func failed(_ id: String, slot: Date?, next: Date?, error: String) async -> FireOutcome {
        try? await store.account(id, lastSlot: slot, next: next)
        try? await store.recordError(id, error)
        armed[id]?.row.lastError = error
        armed[id]?.row.lastOutcome = "error"
        note(id, lastSlot: slot, next: next)
        record(.error, id, ["error": error, "slot": Self.iso(slot)])
        logger.warning("trigger fire failed", metadata: ["trigger": "\(id)", "error": "\(error)"])
        return .failed(error)
    }

    /// Keeps the in-memory row in step with what the store was just told.
    func note(_ id: String, lastSlot: Date?, next: Date?) {
        if let lastSlot {
            let was = armed[id]?.row.lastSlotAt ?? 0
            armed[id]?.row.lastSlotAt = Swift.max(was, lastSlot.timeIntervalSince1970)
        }
        if let next { armed[id]?.row.nextFireAt = next.timeIntervalSince1970 }
    }

    /// Buffered fires start as the runs before them end (one at a time, or up to
    /// `maxConcurrent` under `allow_all`), oldest first.
    func drainBuffers() async {
        for (id, depth) in buffered where depth > 0 {
            guard let a = armed[id], a.live else { continue }
            let capacity = a.trigger.overlap == .allowAll ? a.trigger.maxConcurrent : 1
            var room = capacity - (inflight[id]?.count ?? 0) - (starting[id] ?? 0)
            guard room > 0, let fires = try? await store.bufferedFires(id, limit: room) else { continue }
            if fires.isEmpty { buffered[id] = 0 }
            for fire in fires where room > 0 {
                room -= 1
                _ = await fireNow(id, slot: fire.slot.map(Date.init(timeIntervalSince1970:)), input: JSONValue.parse(fire.input) ?? .object([:]),
                                  reason: fire.reason, next: nil, bufferedSeq: fire.seq)
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        guard let e = error as? RunService.SubmitError else { return "\(error)" }
        switch e {
        case let .unknownWorkflow(id): return "workflow \(id) is not a valid workflow"
        case let .invalidInput(v): return inputMismatch + v.map(\.description).joined(separator: "; ")
        case .idempotencyConflict: return "idempotency conflict"
        case let .invalidPermissions(why): return why
        case .stopping: return "the gateway is stopping"
        case let .paused(p): return "the gateway is paused: \(p.reason)"
        case .unregistered: return "\(error)"
        }
    }

    static let inputMismatch = "the input does not match the workflow's schema: "

    static func iso(_ date: Date?) -> String {
        date.map { $0.formatted(.iso8601) } ?? ""
    }
}
