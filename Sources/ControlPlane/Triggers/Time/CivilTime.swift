import Foundation

/// A wall-clock reading with no time zone attached: what a cron field or a
/// zone-less `at` names. Schedules are searched in this space with plain
/// integer arithmetic (proleptic Gregorian calendar), and only the result is
/// turned into an instant, because `Calendar` would apply DST while searching
/// and its per-call cost would make a search a scan.
///
/// `localSeconds` counts seconds from 1970-01-01T00:00:00 *on the wall clock*;
/// it is an instant only in UTC.
struct CivilTime: Equatable, Sendable {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int

    init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    init(localSeconds: Int) {
        let days = localSeconds.floorDiv(86_400)
        let rest = localSeconds - days * 86_400
        (year, month, day) = CivilTime.civil(fromDays: days)
        hour = rest / 3_600
        minute = rest % 3_600 / 60
        second = rest % 60
    }

    var localSeconds: Int {
        CivilTime.days(year: year, month: month, day: day) * 86_400 + hour * 3_600 + minute * 60 + second
    }

    static func isLeap(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// 0 is Sunday, as in cron; 1970-01-01 was a Thursday.
    static func weekday(days: Int) -> Int {
        (days + 4).floorMod(7)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = y.floorDiv(400)
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = z.floorDiv(146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

private extension Int {
    func floorDiv(_ d: Int) -> Int {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }

    func floorMod(_ d: Int) -> Int {
        self - floorDiv(d) * d
    }
}
