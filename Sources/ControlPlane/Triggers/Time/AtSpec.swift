import Foundation

/// An `at` trigger: one ISO-8601 instant, `2026-12-01T09:00:00Z`, with an
/// offset (`+02:00`, `+0200`) instead of `Z`, optionally with fractional
/// seconds (up to nine digits) or without seconds. A time with neither `Z` nor
/// an offset is refused unless the trigger has a `tz`, because "09:00" alone
/// would silently mean whatever zone the gateway host runs in; with a `tz` it
/// is the wall time there, resolved like cron's (a time skipped by a
/// spring-forward is the first instant after the gap, a repeated one its first
/// occurrence). An explicit offset always wins over `tz`.
public struct AtSpec: Hashable, Sendable {
    public let instant: Date

    public init(_ text: String, zone: TimeZone?) throws(TimeSpecError) {
        let example = "write an ISO-8601 time like '2026-12-01T09:00:00Z' or '2026-12-01T09:00:00+02:00'"
        guard text.utf8.count <= 64 else { throw TimeSpecError("at: longer than 64 characters; \(example)") }
        var scanner = Scanner(bytes: Array(text.utf8))
        func fail() -> TimeSpecError { TimeSpecError("at: '\(text)' is not a date and time; \(example)") }

        guard let year = scanner.digits(4), scanner.take("-"), let month = scanner.digits(2), scanner.take("-"),
              let day = scanner.digits(2) else { throw fail() }
        guard scanner.take("T") || scanner.take("t") || scanner.take(" ") else {
            throw TimeSpecError("at: '\(text)' has no time of day; \(example)")
        }
        guard let hour = scanner.digits(2), scanner.take(":"), let minute = scanner.digits(2) else { throw fail() }
        var second = 0
        var fraction = 0.0
        if scanner.take(":") {
            guard let s = scanner.digits(2) else { throw fail() }
            second = s
            if scanner.take(".") || scanner.take(",") {
                let start = scanner.index
                while scanner.index < scanner.bytes.count, scanner.isDigit(scanner.bytes[scanner.index]) { scanner.index += 1 }
                let count = scanner.index - start
                guard (1...9).contains(count) else { throw fail() }
                fraction = Double(Int(String(decoding: scanner.bytes[start..<scanner.index], as: UTF8.self)) ?? 0)
                    / pow(10, Double(count))
            }
        }
        guard (1...12).contains(month), (1...CivilTime.daysIn(month: month, year: year)).contains(day),
              (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second) else {
            throw TimeSpecError("at: '\(text)' is not a valid date and time")
        }

        var offset: Int?
        if scanner.take("Z") || scanner.take("z") {
            offset = 0
        } else if let sign = scanner.sign() {
            guard let h = scanner.digits(2) else { throw fail() }
            _ = scanner.take(":")
            guard let m = scanner.digits(2), h <= 18, m <= 59 else { throw fail() }
            offset = sign * (h * 3_600 + m * 60)
        }
        guard scanner.index == scanner.bytes.count else { throw fail() }

        let wall = CivilTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second).localSeconds
        let whole: Int
        if let offset {
            whole = wall - offset
        } else if let zone {
            whole = zone.instant(forWall: wall)
        } else {
            throw TimeSpecError("at: '\(text)' has no time zone; add 'Z' for UTC or an offset like '+02:00', or set tz")
        }
        instant = Date(timeIntervalSince1970: TimeInterval(whole) + fraction)
    }

    /// Fixed-width ASCII reading; `Date.ISO8601FormatStyle` accepts less
    /// (no optional seconds) and more (week dates) than a trigger should.
    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

        mutating func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count, bytes[index..<index + count].allSatisfy(isDigit) else { return nil }
            defer { index += count }
            return bytes[index..<index + count].reduce(0) { $0 * 10 + Int($1 - 0x30) }
        }

        mutating func take(_ c: Character) -> Bool {
            guard index < bytes.count, let ascii = c.asciiValue, bytes[index] == ascii else { return false }
            index += 1
            return true
        }

        mutating func sign() -> Int? {
            if take("+") { return 1 }
            if take("-") { return -1 }
            return nil
        }
    }
}
