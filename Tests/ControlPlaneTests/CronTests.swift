@testable import ControlPlane
import Foundation
import Testing

/// Cron schedules: what is refused and why, and fire times checked against
/// Python's croniter (the reference most cron users' expectations come from)
/// everywhere croniter follows our DST rule; where it does not, the rule is
/// tested by hand in `CronDSTTests`.
@Suite("Cron expressions")
struct CronTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ iso: String) -> Date {
        try! AtSpec(iso, zone: nil).instant
    }

    static func chain(_ cron: CronExpression, from start: Date, count: Int, in zone: TimeZone) -> [Date] {
        var out: [Date] = []
        var cursor = start
        for _ in 0..<count {
            guard let next = cron.next(after: cursor, in: zone) else { break }
            out.append(next)
            cursor = next
        }
        return out
    }

    @Test("bad expressions are refused with a message naming the field and the problem", arguments: [
        ("* * *", "expected 5 or 6 fields, found 3"),
        ("", "expected 5 or 6 fields, found 0"),
        ("* * * * * * *", "expected 5 or 6 fields, found 7"),
        ("75 * * * *", "minute: 75 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month: 32 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * 0 *", "month: 0 is out of range 1-12"),
        ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
        ("60 * * * * *", "second: 60 is out of range 0-59"),
        ("* * * * FOO", "day-of-week: 'FOO' is not a day name or 0-7"),
        ("* * * FOO *", "month: 'FOO' is not a month name or 1-12"),
        ("* * * * MONDAY", "day-of-week: 'MONDAY' is not a day name or 0-7"),
        ("* MON * * *", "hour: 'MON' is not a number 0-23"),
        ("* * * MON *", "month: 'MON' is not a month name"),
        ("* * * * JAN", "day-of-week: 'JAN' is not a day name"),
        ("*/0 * * * *", "minute: a step of 0"),
        ("1-10/0 * * * *", "minute: a step of 0"),
        ("*/61 * * * *", "minute: step 61"),
        ("*/x * * * *", "minute: step 'x'"),
        ("*/ * * * *", "minute: step ''"),
        ("1/2/3 * * * *", "more than one '/'"),
        ("30-10 * * * *", "minute: range '30-10' runs backwards"),
        ("* 22-2 * * *", "hour: range '22-2' runs backwards"),
        ("1- * * * *", "minute: '1-' is not a value or a range"),
        ("-1 * * * *", "minute: '-1' is not a value or a range"),
        ("1,,2 * * * *", "minute: empty item in '1,,2'"),
        ("1, * * * *", "minute: empty item"),
        ("? * * * *", "minute: '?' is only allowed in day-of-month and day-of-week"),
        ("* * ?,1 * *", "day-of-month: '?' cannot be combined"),
        ("* * L-2 * *", "day-of-month: 'L-2': offsets from the last day (L-n) are not supported"),
        ("* * 15W * *", "nearest-weekday (W) is not supported"),
        ("* * * * L", "day-of-week: 'L' needs a day"),
        ("* * * * 1-5L", "'L' takes a single day"),
        ("* * * * MON#6", "day-of-week: 'MON#6': the week after '#' must be 1-5"),
        ("* * * * MON#0", "the week after '#' must be 1-5"),
        ("* * * * MON#", "the week after '#' must be 1-5"),
        ("* * * * 1-5#2", "'#' takes a single day, not a range"),
        ("* * * * FOO#2", "day-of-week: 'FOO' is not a day name"),
        ("* * * * 9L", "day-of-week: 9 is out of range 0-7"),
        ("* * 5L * *", "day-of-month: '5L' is not a number 1-31"),
        ("99999999999999999999 * * * *", "minute: 999999999... is out of range 0-59"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 31 2,4 *", "day-of-month '31', month '2,4'"),
        ("@reboot", "'@reboot' is not a schedule"),
        ("@every 5m", "unknown macro '@every 5m'"),
        ("@fortnightly", "unknown macro"),
        ("0 0 * * * \u{0}", "printable ASCII"),
        ("0 0 * * Mön", "printable ASCII"),
        ("0 0 * * *\n", "printable ASCII"),
        (String(repeating: "1,", count: 200) + "1 * * * *", "longer than 256 characters"),
    ])
    func refused(_ text: String, _ fragment: String) {
        do {
            let parsed = try CronExpression(text)
            Issue.record("\(text.debugDescription) was accepted as \(parsed)")
        } catch {
            #expect(error.message.contains(fragment), "\(text.debugDescription): \(error.message)")
        }
    }

    @Test("accepted spellings", arguments: [
        "* * * * *", "  0  0 * * *  ", "0\t0 * * *", "*/5 * * * * *", "0 0 ? * MON", "0 0 1 * ?",
        "0 0 * * 0-7", "0 0 * * sun-sat", "0 0 * jan-DEC Mon", "0 0 1-L * *", "0 0 * * 5L,1#1,3",
        "0 0 * * FRIL", "0 0 * * L5", "0 0 * * 7#1", "0 0 29 2 *", "0 0 * 2 SUN#5", "@YEARLY", "@Hourly",
        String(repeating: "0,", count: 100) + "1 * * * *",
    ])
    func accepted(_ text: String) throws {
        _ = try CronExpression(text)
    }

    // MARK: - croniter

    /// One row of the reference table `croniter_table.py` reads.
    struct Row: Encodable {
        let expr: String
        let tz: String
        let start: Double
        let count: Int
    }

    /// Expressions whose fires croniter computes exactly as we do from any
    /// start; `count` fires are compared after each start. Last-weekday is in
    /// croniter's spelling (`L5`); `5L` and `FRIL` are checked equal to it below.
    static let expressions: [(String, Int)] = [
        ("* * * * *", 12), ("*/5 * * * *", 12), ("0 * * * *", 12), ("0 0 * * *", 12), ("15 10 * * *", 12),
        ("00 05 * * *", 6), ("0 9-17 * * MON-FRI", 20), ("30 8 * * mon,wed,fri", 12), ("0 0 1 JAN *", 4),
        ("0 12 1 jan-mar,oct *", 8), ("0 0 * * SUN", 8), ("0 0 * * 7", 8), ("0 0 * * 5-7", 12),
        ("0 0 * * FRI-SUN", 12), ("0 0 * * 1-7", 9), ("0 0 * * */2", 12), ("0 0 * * TUE/2", 12),
        ("5,10,55 */3 * * *", 12), ("0 0-23/4 * * *", 12), ("10-50/15 * * * *", 12), ("7/20 * * * *", 12),
        ("59/15 * * * *", 6), ("0 0 */10 * *", 12), ("0 0 1-15/7 * *", 12), ("0 0 15-L * *", 20),
        ("0 0 L * *", 14), ("0 0 1,15,L * *", 12), ("0 0 L 2 *", 5), ("0 0 31 * *", 10), ("0 0 30 1-12/2 *", 10),
        ("59 23 31 DEC *", 3), ("0 18 * * L5", 12), ("0 0 * * L0", 12), ("0 0 * * MON#2", 12),
        ("0 0 * * 1#1,5#3", 12), ("0 0 * * SUN#5", 8), ("0 0 * * mon#2,mon#4", 12), ("0 0 * 2 SUN#5", 2),
        ("0 0 13 * FRI", 12), ("0 0 1 * MON", 12), ("0 12 15 * 1-5", 12), ("0 0 L * 5", 12),
        ("0 0 ? * MON", 6), ("0 0 1 * ?", 6), ("0 0 29 2 *", 5), ("0 */2 * JUN-AUG SAT,SUN", 12),
        ("@yearly", 3), ("@annually", 3), ("@monthly", 6), ("@weekly", 6), ("@daily", 6), ("@midnight", 6),
        ("@hourly", 12),
        ("* * * * * *", 12), ("*/15 * * * * *", 12), ("30 0 12 * * *", 6), ("0,30 */5 9-17 * * MON-FRI", 20),
        ("45 59 23 31 12 *", 3), ("10-20/5 0 0 * * SUN", 9), ("0 0 0 L * *", 6), ("0 0 12 * * MON#1", 6),
    ]

    static let zones = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]

    /// Ordinary starts: mid-month with seconds, fractional seconds before a
    /// leap day, and a year's last seconds.
    static let starts = ["2026-01-15T10:17:23Z", "2024-02-28T22:59:59.5Z", "2026-12-31T23:59:30Z"]

    /// Starts an hour or so before each 2026 transition of the three DST zones
    /// (Sydney is southern: forward in October, back in April).
    static let springStarts = ["2026-03-08T01:30:00-05:00", "2026-03-29T01:30:00+01:00", "2026-10-04T01:30:00+10:00"]
    static let fallStarts = ["2026-11-01T00:30:00-04:00", "2026-10-25T01:30:00+02:00", "2026-04-05T01:30:00+11:00"]

    /// Expressions that name no wall time in a gap or a repeated hour of the
    /// three zones: croniter agrees with us across every transition.
    static let dstFree: [(String, Int)] = [
        ("0 3 * * *", 4), ("0 0 * * *", 4), ("0 12 * * *", 4), ("15 10 * * MON-FRI", 6), ("0 */6 * * *", 8),
        ("0 0 L * *", 3), ("0 0 * * SUN#1", 3), ("0 5 * * L0", 3), ("@daily", 4), ("@weekly", 3),
        ("30 0 12 * * *", 4), ("0 30 4-23 * * *", 12), ("0 0 4-23 * * *", 40),
    ]

    /// Expressions that name skipped wall times with a fixed hour, or whose
    /// skipped times fall on a match at the gap's end: croniter fires them once
    /// at the first instant after the gap, as we do. (Across a fall-back they
    /// differ: croniter fires a repeated time twice; see `CronDSTTests`.)
    static let springSafe: [(String, Int)] = [
        ("30 2 * * *", 4), ("*/15 2 * * *", 6), ("*/10 * * * *", 12), ("0 2 * * *", 3), ("*/20 1-3 * * *", 8),
        ("0 * * * *", 6), ("0 0 * * * *", 6),
    ]

    static func tableRows() -> [Row] {
        var rows: [Row] = []
        for zone in zones {
            for start in starts {
                for (expr, count) in expressions {
                    rows.append(Row(expr: expr, tz: zone, start: date(start).timeIntervalSince1970, count: count))
                }
            }
            for (start, expr, count) in springStarts.flatMap({ s in (dstFree + springSafe).map { (s, $0.0, $0.1) } })
                + fallStarts.flatMap({ s in dstFree.map { (s, $0.0, $0.1) } }) {
                rows.append(Row(expr: expr, tz: zone, start: date(start).timeIntervalSince1970, count: count))
            }
        }
        return rows
    }

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/cron/croniter_table.py").standardized.path

    /// Seconds of Python and of comparisons: on a thread of its own, so it does
    /// not hold one of the few threads the async tests of this process share.
    @Test("fire times agree with croniter in five zones, around DST transitions too")
    func croniterTable() async throws {
        #expect(Self.expressions.count >= 40)
        // What differs, or why nothing could be compared; checked here, in the test's own task.
        let problems = try await withCheckedThrowingContinuation { (cont: CheckedContinuation<[String], any Error>) in
            Thread { cont.resume(with: Result { try Self.compareWithCroniter() }) }.start()
        }
        let report = "\(problems.count) problems:\n" + problems.prefix(40).joined(separator: "\n")
        #expect(problems.isEmpty, "\(report)")
    }

    static func compareWithCroniter() throws -> [String] {
        let rows = Self.tableRows()
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("croniter-\(UUID().uuidString).json")
        try JSONEncoder().encode(rows).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script, input.path]
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return ["croniter_table.py failed (python3 -m pip install croniter?): \(String(decoding: errors, as: UTF8.self))"]
        }
        guard let answers = try JSONSerialization.jsonObject(with: output) as? [Any], answers.count == rows.count else {
            return ["croniter_table.py answered \(output.count) bytes that are not one list of \(rows.count) rows"]
        }

        var mismatches: [String] = []
        for (row, answer) in zip(rows, answers) {
            guard let expected = answer as? [Double] else {
                mismatches.append("\(row.expr) in \(row.tz): croniter refused it: \(answer)")
                continue
            }
            let cron = try CronExpression(row.expr)
            let zone = try CronTime.zone(named: row.tz)
            let got = Self.chain(cron, from: Date(timeIntervalSince1970: row.start), count: row.count, in: zone)
                .map(\.timeIntervalSince1970)
            if got != expected {
                let at = zip(got, expected).enumerated().first { $1.0 != $1.1 }?.offset ?? Swift.min(got.count, expected.count)
                func show(_ t: Double?) -> String {
                    guard let t else { return "none" }
                    let f = ISO8601DateFormatter()
                    f.timeZone = zone
                    return f.string(from: Date(timeIntervalSince1970: t))
                }
                mismatches.append("\(row.expr) in \(row.tz) after \(show(row.start)): fire \(at) is "
                    + "\(show(got.indices.contains(at) ? got[at] : nil)), croniter says "
                    + "\(show(expected.indices.contains(at) ? expected[at] : nil))")
            }
        }
        return mismatches
    }

    // MARK: - Semantics croniter does not cover

    @Test("last weekday has three spellings: 5L, FRIL and croniter's L5")
    func lastWeekdaySpellings() throws {
        let start = Self.date("2026-01-01T00:00:00Z")
        let reference = Self.chain(try CronExpression("0 0 * * L5"), from: start, count: 24, in: Self.utc)
        for text in ["0 0 * * 5L", "0 0 * * FRIL", "0 0 * * fril", "0 0 * * LFRI"] {
            #expect(Self.chain(try CronExpression(text), from: start, count: 24, in: Self.utc) == reference, "\(text)")
        }
        #expect(reference.first == Self.date("2026-01-30T00:00:00Z"))
    }

    /// croniter refuses `15 * MON#2` outright (it intersects a '#' day with
    /// day-of-month and finds nothing) and cannot mix `#` with plain days; the
    /// OR rule covers both like any other day-of-week.
    @Test("'#' and 'L' days follow the day-of-month OR rule and mix with plain days")
    func nthWeekdayOr() throws {
        let start = Self.date("2026-01-01T00:00:00Z")
        let fires = Self.chain(try CronExpression("0 0 15 * MON#2"), from: start, count: 4, in: Self.utc)
        #expect(fires == ["2026-01-12", "2026-01-15", "2026-02-09", "2026-02-15"].map { Self.date($0 + "T00:00:00Z") })
        let mixed = Self.chain(try CronExpression("0 0 * * 3,5L"), from: start, count: 6, in: Self.utc)
        #expect(mixed == ["2026-01-07", "2026-01-14", "2026-01-21", "2026-01-28", "2026-01-30", "2026-02-04"]
            .map { Self.date($0 + "T00:00:00Z") })
    }

    /// croniter widens an explicitly equal range to the whole field (`5-5` is
    /// every minute there); a range from a value to itself is that value.
    @Test("an equal range is its one value")
    func equalRange() throws {
        let fires = Self.chain(try CronExpression("5-5 10 * * *"), from: Self.date("2026-01-01T00:00:00Z"),
                               count: 2, in: Self.utc)
        #expect(fires == [Self.date("2026-01-01T10:05:00Z"), Self.date("2026-01-02T10:05:00Z")])
    }

    @Test("a pattern that matches only every 28+ years is found, and leap days skip 2100")
    func rarePatterns() throws {
        let sunday29 = try CronExpression("0 0 * 2 SUN#5")
        #expect(Self.chain(sunday29, from: Self.date("2033-01-01T00:00:00Z"), count: 2, in: Self.utc)
            == [Self.date("2060-02-29T00:00:00Z"), Self.date("2088-02-29T00:00:00Z")])
        #expect(sunday29.next(after: Self.date("2088-03-01T00:00:00Z"), in: Self.utc) == Self.date("2128-02-29T00:00:00Z"))
        let leap = try CronExpression("0 0 29 2 *")
        #expect(leap.next(after: Self.date("2096-03-01T00:00:00Z"), in: Self.utc) == Self.date("2104-02-29T00:00:00Z"))
    }

    @Test("fires in a window are bounded by the window and the limit")
    func firesWindow() throws {
        let cron = try CronExpression("*/15 * * * *")
        let from = Self.date("2026-01-01T00:00:00Z"), through = Self.date("2026-01-01T01:00:00Z")
        #expect(cron.fires(after: from, through: through, in: Self.utc, limit: 100)
            == ["00:15", "00:30", "00:45", "01:00"].map { Self.date("2026-01-01T\($0):00Z") })
        #expect(cron.fires(after: from, through: through, in: Self.utc, limit: 2).count == 2)
        #expect(cron.fires(after: from, through: through, in: Self.utc, limit: 0).isEmpty)
        #expect(cron.fires(after: through, through: from, in: Self.utc, limit: 10).isEmpty)
    }

    @Test("next is strictly after, from fractional instants too, and nil past year 9999")
    func edges() throws {
        let cron = try CronExpression("0 * * * *")
        let hour = Self.date("2026-01-01T10:00:00Z")
        #expect(cron.next(after: hour, in: Self.utc) == Self.date("2026-01-01T11:00:00Z"))
        #expect(cron.next(after: hour.addingTimeInterval(-0.25), in: Self.utc) == hour)
        #expect(cron.next(after: Self.date("9999-12-31T23:30:00Z"), in: Self.utc) == nil)
        #expect(cron.next(after: Date(timeIntervalSince1970: 3e11), in: Self.utc) == nil)
        #expect(cron.next(after: Date(timeIntervalSince1970: .infinity), in: Self.utc) == nil)
        #expect(cron.next(after: Date(timeIntervalSince1970: .nan), in: Self.utc) == nil)
        #expect(try CronExpression("0 0 1 1 *").next(after: Self.date("1969-06-01T00:00:00Z"), in: Self.utc)
            == Self.date("1970-01-01T00:00:00Z"))
    }

    /// Correctness at scale, not speed: the search must not skip or repeat a
    /// second over 10,000 chained calls (the test deliberately asserts no time).
    @Test("10,000 chained fires of every second are consecutive seconds")
    func manyFires() throws {
        let cron = try CronExpression("* * * * * *")
        let zone = try CronTime.zone(named: "Europe/Berlin")
        let start = Self.date("2026-02-28T23:58:20Z")
        let fires = Self.chain(cron, from: start, count: 10_000, in: zone)
        #expect(fires.count == 10_000)
        #expect(fires.enumerated().allSatisfy { $1 == start.addingTimeInterval(Double($0 + 1)) })
        let minutes = Self.chain(try CronExpression("*/7 * * * *"), from: start, count: 10_000, in: Self.utc)
        #expect(zip(minutes, minutes.dropFirst()).allSatisfy { a, b in
            let gap = b.timeIntervalSince(a)
            return gap == 420 || (gap < 420 && Int(b.timeIntervalSince1970) % 3600 == 0)
        })
    }
}
