import Foundation

/// A parsed cron schedule: 5 fields (minute hour day-of-month month
/// day-of-week) or 6 with seconds first (the Quartz/Spring/node-cron order),
/// or one of the `@` macros. It names wall-clock times; `next(after:in:)`
/// (in `CronExpression+Next.swift`) turns them into instants in a zone.
///
/// Syntax, field by field: `*`, numbers, `a-b`, `*/n`, `a-b/n`, `a/n` (a to the
/// end of the field), lists `a,b`; `JAN`-`DEC` and `SUN`-`SAT` in any case;
/// day-of-week 0-7 with 0 and 7 both Sunday; `?` as `*` in the two day fields;
/// day-of-month `L` (last day; `a-L` up to it); day-of-week `5L` or `FRIL`
/// (last Friday; croniter's spelling `L5` too) and `MON#2` (second Monday,
/// week 1-5). When both day fields are restricted (neither is `*` or `?`), a
/// day matches if *either* does: Vixie cron's rule and croniter's default, so
/// `0 0 1 * MON` is the 1st and every Monday.
///
/// Everything is checked here, so a workflow with a schedule that cannot work
/// fails when it is loaded, not silently at run time: an out-of-range value, a
/// step of 0, and a combination that matches no date at all (`0 0 30 2 *`).
public struct CronExpression: Hashable, Sendable, CustomStringConvertible {
    /// As written (trimmed), for messages and for storing the trigger.
    public let text: String
    /// Whether the expression had a seconds field; if not, fires are on whole minutes.
    public let hasSeconds: Bool

    let seconds: UInt64
    let minutes: UInt64
    let hours: UInt64
    let months: UInt64
    let daysOfMonth: CronFieldValues
    let daysOfWeek: CronFieldValues
    /// Day-of-month / day-of-week written as something other than `*` or `?`.
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    /// Longer than any sensible schedule; it bounds the work a hostile one can cause.
    public static let maxLength = 256

    static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]

    public init(_ text: String) throws(CronError) {
        guard text.utf8.count <= Self.maxLength else {
            throw CronError("the expression is longer than \(Self.maxLength) characters")
        }
        guard text.utf8.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 < 0x7f) }) else {
            throw CronError("the expression may only hold printable ASCII characters")
        }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var body = trimmed
        if trimmed.hasPrefix("@") {
            guard let expansion = Self.macros[trimmed.lowercased()] else {
                let known = "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
                if trimmed.lowercased() == "@reboot" {
                    throw CronError("'@reboot' is not a schedule; use one of \(known)")
                }
                throw CronError("unknown macro '\(trimmed)'; use one of \(known)")
            }
            body = expansion
        }
        let fields = body.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 5 || fields.count == 6 else {
            throw CronError("expected 5 or 6 fields, found \(fields.count)")
        }
        let hasSeconds = fields.count == 6
        let f = hasSeconds ? Array(fields) : ["0"] + fields
        self.text = trimmed
        self.hasSeconds = hasSeconds
        seconds = try CronField.second.parse(f[0]).bits
        minutes = try CronField.minute.parse(f[1]).bits
        hours = try CronField.hour.parse(f[2]).bits
        daysOfMonth = try CronField.dayOfMonth.parse(f[3])
        months = try CronField.month.parse(f[4]).bits
        daysOfWeek = try CronField.dayOfWeek.parse(f[5])
        dayOfMonthRestricted = f[3] != "*" && f[3] != "?"
        dayOfWeekRestricted = f[5] != "*" && f[5] != "?"

        // The Gregorian calendar repeats every 400 years, and within 2000-2027
        // every kind of year occurs (leap or not, starting on each weekday), so
        // a day pattern that matches none of them matches no date ever. (Some
        // match rarely: `* * * 2 SUN#5` is a leap-year February starting on a
        // Sunday, 28 years or more apart.)
        let everMatches = (2000...2027).contains { year in
            (1...12).contains { months >> UInt64($0) & 1 == 1 && dayMask(year: year, month: $0) != 0 }
        }
        guard everMatches else {
            throw CronError("the expression never fires: day-of-month '\(f[3])', month '\(f[4])' and "
                + "day-of-week '\(f[5])' match no date")
        }
    }

    public var description: String { text }

    /// The days of `month` that match, as bits 1...31.
    func dayMask(year: Int, month: Int) -> UInt64 {
        let last = CivilTime.daysIn(month: month, year: year)
        let valid: UInt64 = (1 << UInt64(last + 1)) - 2
        if !dayOfMonthRestricted && !dayOfWeekRestricted { return valid }
        var byMonth: UInt64 = daysOfMonth.bits & valid
        if daysOfMonth.lastDayOfMonth { byMonth |= 1 << UInt64(last) }
        guard dayOfWeekRestricted else { return byMonth }

        var byWeek: UInt64 = 0
        let firstWeekday = CivilTime.weekday(days: CivilTime.days(year: year, month: month, day: 1))
        for day in 1...last {
            let weekday = (firstWeekday + day - 1) % 7
            let week = (day - 1) / 7 + 1
            if daysOfWeek.bits >> UInt64(weekday) & 1 == 1
                || daysOfWeek.nthWeekdays >> UInt64(weekday * 8 + week) & 1 == 1
                || (day + 7 > last && daysOfWeek.lastWeekdays >> UInt64(weekday) & 1 == 1) {
                byWeek |= 1 << UInt64(day)
            }
        }
        return dayOfMonthRestricted ? byMonth | byWeek : byWeek
    }
}
