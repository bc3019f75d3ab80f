import Foundation

/// Fire times. The search runs on the wall clock, field by field from the
/// largest (month, then day, hour, minute, second): a field that does not match
/// jumps straight to its next allowed value and resets the smaller ones, so a
/// fire costs a handful of steps whatever the schedule, never a per-second or
/// per-minute scan. Only the matching wall time is turned into an instant, with
/// the rule in `TimeZone+WallTime.swift`:
///
/// - Spring forward: wall times in the gap fire once, at the first instant
///   after it (`30 2 * * *` fires at 03:00 on the US spring-forward day; so
///   does `*/15 2 * * *`, once, not four times, and `*/10 * * * *` fires at 01:50
///   then 03:00). This applies whatever the hour field is: croniter (like Vixie
///   cron) instead drops the skipped times when the hour is `*`, so `30 * * * *`
///   goes 01:30, 03:30 there and 01:30, 03:00, 03:30 here.
/// - Fall back: a repeated wall time fires at its first occurrence only. So a
///   fixed interval like `*/10 * * * *` fires at 01:00-01:50 on the first pass
///   (EDT) and next at 02:00 EST, leaving a 70-minute gap, because each wall
///   time fires once; croniter fires the repeated slots again on the second pass
///   (and `30 1 * * *` twice), which a schedule of wall times should not do.
extension CronExpression {
    /// The search gives up after this many years; any day pattern that can match
    /// at all (checked at parse time) matches within one 400-year cycle.
    static let searchYears = 400

    /// The first fire instant strictly after `after`, or nil past year 9999.
    public func next(after: Date, in zone: TimeZone) -> Date? {
        let t = after.timeIntervalSince1970
        // Years 1 to 9999: the range a fire time can be written in.
        guard t.isFinite, t >= -62_135_596_800, t < 253_402_300_799 else { return nil }
        let notBefore = Int(t.rounded(.down)) + 1
        guard let wall = nextWall(from: zone.earliestWall(notBefore: notBefore)) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(zone.instant(forWall: wall)))
    }

    /// Every fire in `(after, through]`, oldest first, at most `limit`: what a
    /// catch-up or backfill replays.
    public func fires(after: Date, through: Date, in zone: TimeZone, limit: Int) -> [Date] {
        var result: [Date] = []
        var cursor = after
        while result.count < limit, let fire = next(after: cursor, in: zone), fire <= through {
            result.append(fire)
            cursor = fire
        }
        return result
    }

    /// The first matching wall time at or after `start` (seconds on the wall clock).
    func nextWall(from start: Int) -> Int? {
        var c = CivilTime(localSeconds: start)
        let lastYear = Swift.min(c.year + Self.searchYears, 9999)
        while c.year <= lastYear {
            guard let month = months.first(from: c.month) else {
                c = CivilTime(year: c.year + 1, month: 1, day: 1)
                continue
            }
            if month != c.month { c = CivilTime(year: c.year, month: month, day: 1) }
            guard let day = dayMask(year: c.year, month: c.month).first(from: c.day) else {
                c = c.month == 12 ? CivilTime(year: c.year + 1, month: 1, day: 1)
                    : CivilTime(year: c.year, month: c.month + 1, day: 1)
                continue
            }
            if day != c.day { c = CivilTime(year: c.year, month: c.month, day: day) }
            guard let hour = hours.first(from: c.hour) else {
                c = CivilTime(year: c.year, month: c.month, day: c.day + 1)   // past the month's end: the day mask moves on
                continue
            }
            if hour != c.hour { c.hour = hour; c.minute = 0; c.second = 0 }
            guard let minute = minutes.first(from: c.minute) else {
                c.hour += 1; c.minute = 0; c.second = 0
                continue
            }
            if minute != c.minute { c.minute = minute; c.second = 0 }
            guard let second = seconds.first(from: c.second) else {
                c.minute += 1; c.second = 0
                continue
            }
            c.second = second
            return c.localSeconds
        }
        return nil
    }
}
