import Foundation
import Workflow

/// The slots of a time-based trigger. A slot is the instant the schedule
/// names; its fire time is the slot plus the interval's jitter (the same after
/// a restart, since it derives from the trigger and the slot).
struct TimeSchedule: Sendable {
    enum Kind: Sendable {
        case cron(CronExpression, TimeZone)
        case interval(IntervalSpec, anchor: Date)
        case at(Date)
    }

    let kind: Kind
    let triggerId: String

    init?(_ trigger: Trigger, id: String, anchor: Date) {
        triggerId = id
        switch trigger.kind {
        case let .cron(text, zoneName):
            guard let expr = try? CronExpression(text), let zone = try? CronTime.zone(named: zoneName) else { return nil }
            kind = .cron(expr, zone)
        case let .interval(every, jitter):
            kind = .interval(IntervalSpec(everyMs: every, jitterMs: jitter), anchor: anchor)
        case let .at(date):
            kind = .at(date)
        default:
            return nil
        }
    }

    /// The first slot strictly after `date`.
    func slot(after date: Date) -> Date? {
        switch kind {
        case let .cron(expr, zone):
            return expr.next(after: date, in: zone)
        case let .interval(spec, anchor):
            // Slots are anchor + k·every, k ≥ 1: the instant it was armed is not one.
            return spec.next(after: max(date, anchor), anchor: anchor)
        case let .at(instant):
            return instant > date ? instant : nil
        }
    }

    func fireTime(of slot: Date) -> Date {
        guard case let .interval(spec, _) = kind else { return slot }
        return slot.addingTimeInterval(spec.jitterOffset(triggerId: triggerId, slot: slot))
    }

    /// Slots in (after, through] whose fire time has come, oldest first, at most `limit`.
    func due(after: Date, through now: Date, limit: Int) -> [Date] {
        var out: [Date] = []
        var cursor = after
        while out.count < limit, let next = slot(after: cursor), fireTime(of: next) <= now {
            out.append(next)
            cursor = next
        }
        return out
    }

    /// Slots in [from, to], at most `limit` (a backfill's range).
    func slots(from: Date, to: Date, limit: Int) -> [Date] {
        var out: [Date] = []
        var cursor = from.addingTimeInterval(-0.001)
        while out.count < limit, let next = slot(after: cursor), next <= to {
            out.append(next)
            cursor = next
        }
        return out
    }

    /// The next `count` fire times after `date` (what `GET /triggers/:id` previews).
    func upcoming(after date: Date, count: Int) -> [Date] {
        var out: [Date] = []
        var cursor = date
        while out.count < count, let next = slot(after: cursor) {
            out.append(fireTime(of: next))
            cursor = next
        }
        return out
    }
}
