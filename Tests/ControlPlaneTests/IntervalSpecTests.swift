@testable import ControlPlane
import Foundation
import Testing

/// `every` triggers: durations, slot alignment to the anchor, and a jitter a
/// restart recomputes exactly.
@Suite("Interval triggers")
struct IntervalSpecTests {
    @Test("durations are whole seconds from 1s to 366d", arguments: [
        ("30s", 30), ("1s", 1), ("5m", 300), ("1h", 3_600), ("1h30m", 5_400), ("2d", 172_800),
        ("1d2h3m4s", 93_784), ("90m", 5_400), ("366d", 31_622_400), ("1H30M", 5_400), ("0d0h0m5s", 5),
    ])
    func every(_ text: String, _ seconds: Int) throws {
        #expect(try IntervalSpec(every: text).everySeconds == seconds)
    }

    @Test("bad durations are refused with a message saying why", arguments: [
        ("500ms", "whole seconds (at least 1s)"),
        ("1s500ms", "whole seconds"),
        ("0s", "must be at least 1s"),
        ("0m", "must be at least 1s"),
        ("", "empty"),
        ("30", "needs a unit (s, m, h or d), e.g. '30s'"),
        ("5x", "unknown unit 'x'"),
        ("5min", "unknown unit 'min'"),
        ("30m1h", "units go largest first"),
        ("1h1h", "units go largest first"),
        ("367d", "longer than 366d"),
        ("366d1s", "longer than 366d"),
        ("-5m", "not a duration"),
        ("1.5h", "not a duration"),
        ("1h 30m", "not a duration"),
        ("9999999999s", "not a duration"),
        (String(repeating: "1", count: 40) + "s", "longer than 32 characters"),
    ])
    func badEvery(_ text: String, _ fragment: String) {
        do {
            let spec = try IntervalSpec(every: text)
            Issue.record("\(text.debugDescription) was accepted as \(spec.everySeconds)s")
        } catch {
            #expect(error.message.hasPrefix("every: "), "\(error.message)")
            #expect(error.message.contains(fragment), "\(text.debugDescription): \(error.message)")
        }
    }

    @Test("jitter is a duration at least 0 and shorter than every", arguments: [
        ("1h", "0s", 0 as Int?), ("1h", "59m59s", 3_599), ("5m", "30s", 30), ("30s", "29s", 29),
        ("5m", "5m", nil), ("5m", "10m", nil), ("5m", "-1s", nil), ("5m", "100ms", nil),
    ])
    func jitter(_ every: String, _ jitter: String, _ seconds: Int?) {
        let spec = try? IntervalSpec(every: every, jitter: jitter)
        #expect(spec?.jitterSeconds == seconds)
        if seconds == nil {
            #expect(throws: TimeSpecError.self) { try IntervalSpec(every: every, jitter: jitter) }
        }
    }

    @Test("slots are anchor + k * every, strictly after the given time, on either side of the anchor")
    func slots() throws {
        let spec = try IntervalSpec(every: "5m")
        let anchor = Date(timeIntervalSince1970: 1_000_000.25)
        #expect(spec.next(after: anchor, anchor: anchor) == anchor.addingTimeInterval(300))
        #expect(spec.next(after: anchor.addingTimeInterval(-0.001), anchor: anchor) == anchor)
        #expect(spec.next(after: anchor.addingTimeInterval(299.9), anchor: anchor) == anchor.addingTimeInterval(300))
        #expect(spec.next(after: anchor.addingTimeInterval(300), anchor: anchor) == anchor.addingTimeInterval(600))
        #expect(spec.next(after: anchor.addingTimeInterval(-450), anchor: anchor) == anchor.addingTimeInterval(-300))
        // Far from the anchor, slots stay exact multiples.
        let far = anchor.addingTimeInterval(300 * 1_000_000 + 7)
        let slot = spec.next(after: far, anchor: anchor)
        #expect(slot.timeIntervalSince(anchor) == 300 * 1_000_001)
        // Chained, slots are exactly `every` apart.
        var cursor = anchor
        for k in 1...1_000 {
            cursor = spec.next(after: cursor, anchor: anchor)
            #expect(cursor == anchor.addingTimeInterval(Double(k) * 300))
        }
    }

    @Test("jitter is the same for a trigger and slot every time, differs between them, and stays in bounds")
    func jitterOffsets() throws {
        let spec = try IntervalSpec(every: "1h", jitter: "10m")
        let slot = Date(timeIntervalSince1970: 1_767_225_600)
        let a = spec.jitterOffset(triggerId: "nightly-report", slot: slot)
        #expect(a == spec.jitterOffset(triggerId: "nightly-report", slot: slot))
        // Fixed value: the offset must not change between builds or processes
        // (a restart recomputes it), so a changed hash breaks this test on purpose.
        #expect(a == IntervalSpecTests.expectedNightlyOffset)

        var offsets: Set<TimeInterval> = []
        for k in 0..<500 {
            let s = slot.addingTimeInterval(Double(k) * 3_600)
            for id in ["nightly-report", "nightly-repor", "a", ""] {
                let offset = spec.jitterOffset(triggerId: id, slot: s)
                #expect(offset >= 0 && offset < 600)
                offsets.insert(offset)
            }
        }
        #expect(offsets.count > 1_900)   // spread, not a handful of values
        #expect(try IntervalSpec(every: "1h").jitterOffset(triggerId: "x", slot: slot) == 0)
        // The stored form (milliseconds) gives the same offsets.
        #expect(spec.everyMs == 3_600_000 && spec.jitterMs == 600_000)
        #expect(IntervalSpec.jitterOffset(triggerId: "nightly-report", slot: slot, jitterMs: spec.jitterMs) == a)
        #expect(IntervalSpec.jitterOffset(triggerId: "x", slot: slot, jitterMs: 0) == 0)
    }

    static let expectedNightlyOffset: TimeInterval = 500.132

    @Test("a slot's fire is slot + jitter; fires come in slot order and once each")
    func nextFire() throws {
        let spec = try IntervalSpec(every: "1m", jitter: "50s")
        let anchor = Date(timeIntervalSince1970: 1_767_225_600)
        var cursor = anchor
        var previousSlot = anchor.addingTimeInterval(-60)
        for _ in 0..<500 {
            let (slot, fire) = spec.nextFire(after: cursor, anchor: anchor, triggerId: "t")
            #expect(slot == previousSlot.addingTimeInterval(60))
            #expect(fire == slot.addingTimeInterval(spec.jitterOffset(triggerId: "t", slot: slot)))
            #expect(fire > cursor)
            previousSlot = slot
            cursor = fire
        }
        // A slot whose jittered fire is still ahead is next, even though the slot itself has passed.
        let slot = anchor.addingTimeInterval(600)
        let offset = spec.jitterOffset(triggerId: "t", slot: slot)
        if offset > 0 {
            let (due, fire) = spec.nextFire(after: slot.addingTimeInterval(offset / 2), anchor: anchor, triggerId: "t")
            #expect(due == slot)
            #expect(fire == slot.addingTimeInterval(offset))
        }
    }
}
