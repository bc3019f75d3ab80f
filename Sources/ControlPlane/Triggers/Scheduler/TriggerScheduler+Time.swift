import Foundation
import Workflow

/// Cron, interval and at triggers: the slots that came due, and what the
/// catch-up policy makes of slots that passed while nothing could fire them.
extension TriggerScheduler {
    /// A slot fired within this long of its time is on time; an older one was missed.
    static let grace: TimeInterval = 10
    /// At most this many due slots are looked at per trigger per pass.
    static let maxDueSlots = 10_000

    func fireDue(now: Date) async {
        let t = now.timeIntervalSince1970
        let due = armed.filter { $0.value.live && $0.value.schedule != nil && ($0.value.row.nextFireAt ?? .infinity) <= t }.keys.sorted()
        // Triggers due at once are handled side by side: while one waits on its
        // run's commit, the next creates its own, rather than queueing behind it.
        await withTaskGroup(of: Void.self) { group in
            for id in due {
                group.addTask { await self.handleDue(id, now: now) }
            }
        }
    }

    /// Every slot since the last one accounted for: the newest, if on time,
    /// goes through the overlap policy; the others are missed, and the
    /// catch-up policy says what becomes of them.
    func handleDue(_ id: String, now: Date) async {
        guard let a = armed[id], let schedule = a.schedule else { return }
        let from = Date(timeIntervalSince1970: a.row.lastSlotAt ?? a.row.armedAt)
        let windowStart = now.addingTimeInterval(-a.trigger.catchUpWindowSeconds)
        var outside = 0
        var outsideLast: Date?
        if from < windowStart {
            let old = schedule.due(after: from, through: windowStart, limit: Self.maxDueSlots)
            outside = old.count
            outsideLast = old.last
        }
        let due = schedule.due(after: max(from, windowStart), through: now, limit: Self.maxDueSlots)
        // A look cut short (a per-second schedule after long downtime) accounts for
        // everything up to now at once, rather than 10,000 slots a pass.
        let truncated = outside >= Self.maxDueSlots || due.count >= Self.maxDueSlots
        var onTime: Date?
        if let last = due.last, now.timeIntervalSince(schedule.fireTime(of: last)) <= Self.grace { onTime = last }
        let missed = onTime == nil ? due : Array(due.dropLast())
        // The first slot not yet due; when the look was cut short, the first after now.
        let nextSlot = truncated ? schedule.slot(after: now) : schedule.slot(after: due.last ?? max(from, windowStart))
        let next = nextSlot.map(schedule.fireTime(of:))
        var skipped = outside
        var notes: [String] = []
        if outside > 0 { notes.append("\(outside)\(outside >= Self.maxDueSlots ? " or more" : "") older than catchUpWindow") }
        if !missed.isEmpty {
            switch a.trigger.catchUp {
            case .none:
                skipped += missed.count
                notes.append("\(missed.count) missed (catchUp none)")
            case .one:
                skipped += missed.count - 1
                _ = await offer(id, slot: missed.last, input: a.trigger.input ?? .object([:]),
                                reason: "catch-up: one fire for \(missed.count) missed slot\(missed.count == 1 ? "" : "s")")
            case .all:
                let taken = missed.prefix(a.trigger.maxCatchUp)
                for slot in taken {
                    _ = await bufferFire(id, slot: slot, input: a.trigger.input ?? .object([:]), reason: "catch-up", max: a.trigger.maxCatchUp + a.trigger.maxBuffer,
                                         next: nil, whyFull: "the catch-up back-fill is full")
                }
                if missed.count > taken.count {
                    try? await store.account(id, lastSlot: nil, next: nil, dropped: missed.count - taken.count)
                    armed[id]?.row.dropped += missed.count - taken.count
                    record(.dropped, id, ["reason": "\(missed.count - taken.count) missed slots beyond maxCatchUp \(a.trigger.maxCatchUp)",
                                          "count": "\(missed.count - taken.count)"])
                }
            }
        }
        if skipped > 0 {
            armed[id]?.row.skipped += skipped
            record(.skipped, id, ["reason": notes.joined(separator: "; "), "slots": "\(skipped)",
                                  "from": Self.iso(from), "through": Self.iso(missed.last ?? windowStart)])
        }
        if let onTime {
            if a.trigger.catchUp == .all, !missed.isEmpty {
                // Behind the back-fill, in order, rather than skipped because of it.
                _ = await bufferFire(id, slot: onTime, input: a.trigger.input ?? .object([:]), reason: "schedule",
                                     max: a.trigger.maxCatchUp + a.trigger.maxBuffer + 1, next: next, whyFull: "the catch-up back-fill is full")
            } else {
                _ = await offer(id, slot: onTime, input: a.trigger.input ?? .object([:]), reason: "schedule", next: next)
            }
        }
        // Every slot looked at is accounted for, those older than the window included.
        let accounted = truncated ? now : [due.last, outsideLast].compactMap { $0 }.max()
        do {
            try await store.account(id, lastSlot: accounted, next: next, clearNext: next == nil, skipped: skipped)
        } catch {
            logger.error("cannot record a trigger's slots", metadata: ["trigger": "\(id)", "error": "\(error)"])
        }
        note(id, lastSlot: accounted, next: next)
        // A one-shot that fired (or was missed) has no next fire.
        if next == nil { armed[id]?.row.nextFireAt = nil }
    }

    /// The next fire time of a trigger just armed (or re-armed).
    func firstFire(_ a: Armed) -> Date? {
        guard let schedule = a.schedule else { return nil }
        let from = Date(timeIntervalSince1970: a.row.lastSlotAt ?? a.row.armedAt)
        return schedule.slot(after: from).map(schedule.fireTime(of:))
    }

    public enum BackfillError: Error, Sendable {
        case notFound
        case notTimeBased
        case badRange(String)
    }

    /// Every slot in [from, to] is buffered, oldest first, to run as the overlap policy allows.
    func backfill(_ id: String, from: Date, to: Date, actor: String) async throws -> Int {
        guard let a = armed[id] else { throw BackfillError.notFound }
        guard let schedule = a.schedule else { throw BackfillError.notTimeBased }
        let now = clock.now()
        guard from < to else { throw BackfillError.badRange("'from' must be before 'to'") }
        guard to <= now else { throw BackfillError.badRange("'to' must not be in the future (the schedule fires those slots itself)") }
        let slots = schedule.slots(from: from, to: to, limit: 1001)
        guard slots.count <= 1000 else { throw BackfillError.badRange("the range holds more than 1000 slots; split it") }
        var added = 0
        for slot in slots {
            if case .buffered = await bufferFire(id, slot: slot, input: a.trigger.input ?? .object([:]), reason: "backfill",
                                                 max: 1000 + a.trigger.maxBuffer, next: nil, whyFull: "the buffer is full") {
                added += 1
            }
        }
        audit.record(actor: actor, action: TriggerAuditAction.backfill.rawValue, details: [
            "trigger": id, "from": Self.iso(from), "to": Self.iso(to), "slots": "\(added)",
        ])
        signal.wake()
        return added
    }
}
