import Foundation

/// An `every` trigger: slots at `anchor + k * every` for whole k, optionally
/// each moved later by a jitter in `[0, jitter)`. The anchor (typically when
/// the trigger was first registered) is stored by the caller, so slots do not
/// drift when the gateway restarts; and the jitter of a slot is a hash of the
/// trigger id and the slot, not a random draw, so a restart recomputes the
/// same fire time instead of firing a slot twice or skipping it.
///
/// Durations are whole seconds written as `30s`, `5m`, `1h`, `1h30m`, `2d`
/// (units largest first, each at most once), from 1s to 366d; sub-second
/// intervals are refused because nothing downstream can honour them.
public struct IntervalSpec: Hashable, Sendable {
    /// Seconds between slots, 1 to 366 days.
    public let everySeconds: Int
    /// The largest jitter is one second less than this; 0 means none.
    public let jitterSeconds: Int

    public var every: TimeInterval { TimeInterval(everySeconds) }
    public var jitter: TimeInterval { TimeInterval(jitterSeconds) }
    /// The same in milliseconds, as `TriggerKind.interval` stores them.
    public var everyMs: Int { everySeconds * 1_000 }
    public var jitterMs: Int { jitterSeconds * 1_000 }

    public static let maxSeconds = 366 * 86_400

    public init(every: String, jitter: String? = nil) throws(TimeSpecError) {
        let seconds = try Self.seconds(every, field: "every")
        guard seconds >= 1 else { throw TimeSpecError("every: '\(every)' must be at least 1s") }
        var jitterSeconds = 0
        if let jitter {
            jitterSeconds = try Self.seconds(jitter, field: "jitter")
            guard jitterSeconds < seconds else {
                throw TimeSpecError("jitter: '\(jitter)' must be shorter than every ('\(every)')")
            }
        }
        everySeconds = seconds
        self.jitterSeconds = jitterSeconds
    }

    /// A spec already checked, as `TriggerKind.interval` stores it.
    init(everyMs: Int, jitterMs: Int) {
        everySeconds = everyMs / 1_000
        jitterSeconds = jitterMs / 1_000
    }

    /// The first slot strictly after `after` (jitter not applied).
    public func next(after: Date, anchor: Date) -> Date {
        let every = self.every
        var k = ((after.timeIntervalSince(anchor)) / every).rounded(.down) + 1
        // Division can land one slot off when `after` is on (or a rounding error
        // from) a slot; bounded, so an infinite `after` cannot spin.
        for _ in 0..<2 where anchor.addingTimeInterval(k * every) <= after { k += 1 }
        for _ in 0..<2 where anchor.addingTimeInterval((k - 1) * every) > after { k -= 1 }
        return anchor.addingTimeInterval(k * every)
    }

    /// The first fire strictly after `after`, with its slot: a slot's fire is
    /// the slot plus its jitter, so the slot before `after` may still be due.
    /// Fires stay in slot order because every jitter is shorter than `every`.
    public func nextFire(after: Date, anchor: Date, triggerId: String) -> (slot: Date, fire: Date) {
        let upcoming = next(after: after, anchor: anchor)
        let previous = upcoming.addingTimeInterval(-every)
        let previousFire = previous.addingTimeInterval(jitterOffset(triggerId: triggerId, slot: previous))
        if jitterSeconds > 0, previousFire > after { return (previous, previousFire) }
        return (upcoming, upcoming.addingTimeInterval(jitterOffset(triggerId: triggerId, slot: upcoming)))
    }

    /// The delay of `slot`'s fire, in `[0, jitter)` at millisecond steps: the
    /// same for the same trigger and slot in every process (Swift's `Hasher`
    /// is seeded per process, so it cannot be used), spread by FNV-1a over the
    /// id and the slot's millisecond, then SplitMix64's finalizer.
    public func jitterOffset(triggerId: String, slot: Date) -> TimeInterval {
        Self.jitterOffset(triggerId: triggerId, slot: slot, jitterMs: jitterMs)
    }

    /// The same for a stored `jitterMs`: in `[0, jitterMs)` milliseconds.
    public static func jitterOffset(triggerId: String, slot: Date, jitterMs: Int) -> TimeInterval {
        guard jitterMs > 0 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for byte in triggerId.utf8 { mix(byte) }
        mix(0xff)   // no UTF-8 byte: the id cannot run into the slot
        let millis = (slot.timeIntervalSince1970 * 1_000).rounded()
        let slotMillis = millis.isFinite && abs(millis) < 9e18 ? Int64(millis) : 0
        for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: slotMillis >> Int64(shift))) }
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        hash ^= hash >> 31
        return TimeInterval(hash % UInt64(jitterMs)) / 1_000
    }

    /// `text` as whole seconds; `field` names it in messages.
    static func seconds(_ text: String, field: String) throws(TimeSpecError) -> Int {
        let example = "write a duration like '30s', '5m', '1h30m' or '2d'"
        guard !text.isEmpty else { throw TimeSpecError("\(field): empty; \(example)") }
        guard text.utf8.count <= 32 else { throw TimeSpecError("\(field): longer than 32 characters; \(example)") }
        let bytes = Array(text.lowercased().utf8)
        let units: [(name: String, seconds: Int)] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1), ("ms", 0)]
        var total = 0, i = 0, lastUnit = -1, sawMillis = false
        while i < bytes.count {
            let start = i
            while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
            guard i > start, i - start <= 9 else { throw TimeSpecError("\(field): '\(text)' is not a duration; \(example)") }
            let number = Int(String(decoding: bytes[start..<i], as: UTF8.self)) ?? 0
            let unitStart = i
            while i < bytes.count, bytes[i] >= 0x61, bytes[i] <= 0x7a { i += 1 }
            let unit = String(decoding: bytes[unitStart..<i], as: UTF8.self)
            guard !unit.isEmpty else {
                if i < bytes.count { throw TimeSpecError("\(field): '\(text)' is not a duration; \(example)") }
                throw TimeSpecError("\(field): '\(text)' needs a unit (s, m, h or d), e.g. '\(number)s'")
            }
            guard let index = units.firstIndex(where: { $0.name == unit }) else {
                throw TimeSpecError("\(field): '\(text)' has unknown unit '\(unit)'; use s, m, h or d")
            }
            guard index > lastUnit else {
                throw TimeSpecError("\(field): '\(text)': units go largest first, each once (e.g. '1h30m')")
            }
            lastUnit = index
            if unit == "ms" { sawMillis = number > 0 || sawMillis; continue }
            total += number * units[index].seconds
            guard total <= maxSeconds else { throw TimeSpecError("\(field): '\(text)' is longer than 366d") }
        }
        if sawMillis {
            throw TimeSpecError("\(field): '\(text)': durations are whole seconds (at least 1s), not milliseconds")
        }
        return total
    }
}
