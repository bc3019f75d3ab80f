@testable import ControlPlane
import Foundation
import Testing

/// DST, where our rule and croniter's part ways, with expected instants written
/// by hand (offsets spelled out, so each line says which side of the change it
/// is on). The rule: a schedule names wall-clock times, and each matching wall
/// time fires exactly once.
/// - Spring forward: wall times in the gap fire at the first instant after it,
///   all of them together, once (and not again if that instant matches too).
///   croniter agrees when the hour is fixed but drops skipped times when the
///   hour is `*` (`30 * * * *` has no fire between 01:30 and 03:30 there).
/// - Fall back: a repeated wall time fires at its first occurrence only;
///   croniter fires it on both passes. So fixed intervals leave the replayed
///   hour out: `*/20 * * * *` goes 01:40 EDT, then 02:00 EST, 80 minutes later.
@Suite("Cron across DST transitions")
struct CronDSTTests {
    static func at(_ iso: String) -> Date { CronTests.date(iso) }

    static func fires(_ expr: String, _ zone: String, after start: String, count: Int) throws -> [Date] {
        CronTests.chain(try CronExpression(expr), from: at(start), count: count, in: try CronTime.zone(named: zone))
    }

    @Test("spring forward: skipped wall times fire once, at the end of the gap", arguments: [
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        ("30 2 * * *", "America/New_York", "2026-03-08T00:00:00-05:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("*/15 2 * * *", "America/New_York", "2026-03-08T00:00:00-05:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:15:00-04:00"]),
        // 03:00 matches too: still one fire.
        ("0,30 2,3 * * *", "America/New_York", "2026-03-08T01:00:00-05:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:00:00-04:00"]),
        // Hour `*`: croniter goes 01:30 -> 03:30; the skipped 02:30 fires at 03:00 here.
        ("30 * * * *", "America/New_York", "2026-03-08T01:00:00-05:00",
         ["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
        ("*/10 * * * *", "America/New_York", "2026-03-08T01:45:00-05:00",
         ["2026-03-08T01:50:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:10:00-04:00"]),
        ("*/20 * 2 * * *", "America/New_York", "2026-03-08T01:59:30-05:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]),
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
        ("30 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00",
         ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        ("45 * * * *", "Europe/Berlin", "2026-03-29T01:00:00+01:00",
         ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:45:00+02:00"]),
        // Sydney, 2026-10-04: 02:00 AEST becomes 03:00 AEDT.
        ("30 2 * * *", "Australia/Sydney", "2026-10-04T00:00:00+10:00",
         ["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"]),
        ("*/15 2 * * *", "Australia/Sydney", "2026-10-04T00:00:00+10:00",
         ["2026-10-04T03:00:00+11:00", "2026-10-05T02:00:00+11:00"]),
    ])
    func springForward(_ expr: String, _ zone: String, _ start: String, _ expected: [String]) throws {
        #expect(try Self.fires(expr, zone, after: start, count: expected.count) == expected.map(Self.at))
    }

    @Test("fall back: repeated wall times fire at their first occurrence only", arguments: [
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00-01:59 happens twice.
        ("30 1 * * *", "America/New_York", "2026-11-01T00:00:00-04:00",
         ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("0 * * * *", "America/New_York", "2026-11-01T00:30:00-04:00",
         ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]),
        ("*/20 * * * *", "America/New_York", "2026-11-01T00:30:00-04:00",
         ["2026-11-01T00:40:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T01:20:00-04:00",
          "2026-11-01T01:40:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T02:20:00-05:00"]),
        // Starting inside the replay: every wall time in it has fired already.
        ("*/20 * * * *", "America/New_York", "2026-11-01T01:10:00-05:00", ["2026-11-01T02:00:00-05:00"]),
        ("30 1 * * *", "America/New_York", "2026-11-01T01:10:00-05:00", ["2026-11-02T01:30:00-05:00"]),
        ("* * * * * *", "America/New_York", "2026-11-01T01:59:58-04:00",
         ["2026-11-01T01:59:59-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T02:00:01-05:00"]),
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
        ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00+02:00",
         ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        ("*/30 * * * *", "Europe/Berlin", "2026-10-25T01:45:00+02:00",
         ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00"]),
        // Sydney, 2026-04-05: 03:00 AEDT becomes 02:00 AEST; 02:00-02:59 happens twice.
        ("30 2 * * *", "Australia/Sydney", "2026-04-05T00:00:00+11:00",
         ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]),
        ("0 * * * *", "Australia/Sydney", "2026-04-05T01:30:00+11:00",
         ["2026-04-05T02:00:00+11:00", "2026-04-05T03:00:00+10:00"]),
        // Lord Howe, 2026-04-05: a half-hour change, 02:00 (+11) becomes 01:30 (+10:30).
        ("*/15 * * * *", "Australia/Lord_Howe", "2026-04-05T01:00:00+11:00",
         ["2026-04-05T01:15:00+11:00", "2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00",
          "2026-04-05T02:00:00+10:30"]),
    ])
    func fallBack(_ expr: String, _ zone: String, _ start: String, _ expected: [String]) throws {
        #expect(try Self.fires(expr, zone, after: start, count: expected.count) == expected.map(Self.at))
    }

    /// A day's catch-up fires each wall time of that day once: 144 ten-minute
    /// slots on the 25-hour fall-back day, 138 on the 23-hour spring day (its
    /// six skipped slots are the one fire at 03:00, which matches anyway).
    @Test("a whole DST day fires each wall time once", arguments: [
        ("America/New_York", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 144),
        ("America/New_York", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 138),
        ("Europe/Berlin", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 144),
        ("Australia/Sydney", "2026-10-04T00:00:00+10:00", "2026-10-05T00:00:00+11:00", 138),
    ])
    func wholeDay(_ zone: String, _ from: String, _ through: String, _ count: Int) throws {
        let cron = try CronExpression("*/10 * * * *")
        let fires = cron.fires(after: Self.at(from).addingTimeInterval(-1), through: Self.at(through).addingTimeInterval(-1),
                               in: try CronTime.zone(named: zone), limit: 1_000)
        #expect(fires.count == count)
        #expect(Set(fires).count == fires.count)
        #expect(fires == fires.sorted())
    }
}
