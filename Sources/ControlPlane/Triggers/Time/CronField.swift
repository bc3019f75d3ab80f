/// One of the six positions of a cron expression, and how a single field's text
/// becomes a set of values. Sets are bitmasks (bit `n` for value `n`) so the
/// search for the next fire is a shift and a `trailingZeroBitCount`, not a scan.
enum CronField: Sendable {
    case second, minute, hour, dayOfMonth, month, dayOfWeek

    var name: String {
        switch self {
        case .second: "second"
        case .minute: "minute"
        case .hour: "hour"
        case .dayOfMonth: "day-of-month"
        case .month: "month"
        case .dayOfWeek: "day-of-week"
        }
    }

    /// What may be written. Day-of-week takes 0-7: 7 is Sunday again, as in
    /// Vixie cron, so `MON-7` and `FRI-SUN` read naturally.
    var bounds: ClosedRange<Int> {
        switch self {
        case .second, .minute: 0...59
        case .hour: 0...23
        case .dayOfMonth: 1...31
        case .month: 1...12
        case .dayOfWeek: 0...7
        }
    }

    /// What `*` and an open-ended `a/n` cover: day-of-week stops at 6, or `*/2`
    /// would fire on Sunday twice over (0 and 7).
    var wildcard: ClosedRange<Int> {
        self == .dayOfWeek ? 0...6 : bounds
    }

    private var names: [String] {
        switch self {
        case .month: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
        case .dayOfWeek: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
        default: []
        }
    }

    private var firstNamed: Int { self == .month ? 1 : 0 }

    private func badValue(_ token: Substring) -> CronError {
        switch self {
        case .month: CronError("\(name): '\(token)' is not a month name or 1-12")
        case .dayOfWeek: CronError("\(name): '\(token)' is not a day name or 0-7")
        default: CronError("\(name): '\(token)' is not a number \(bounds.lowerBound)-\(bounds.upperBound)")
        }
    }

    /// A number or (in month and day-of-week) a three-letter name, in `bounds`.
    func value(_ token: Substring) throws(CronError) -> Int {
        if !token.isEmpty, token.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            // Nine digits cannot overflow; anything longer is out of range anyway.
            guard token.utf8.count <= 9, let n = Int(token), bounds.contains(n) else {
                let shown = token.utf8.count <= 9 ? String(token) : String(token.prefix(9)) + "..."
                throw CronError("\(name): \(shown) is out of range \(bounds.lowerBound)-\(bounds.upperBound)")
            }
            return n
        }
        if let index = names.firstIndex(of: token.uppercased()) { return index + firstNamed }
        throw badValue(token)
    }

    /// The values of one field as a bitmask, plus the day specials the
    /// bitmask cannot hold.
    func parse(_ text: Substring) throws(CronError) -> CronFieldValues {
        var result = CronFieldValues()
        if text == "?" {
            guard self == .dayOfMonth || self == .dayOfWeek else {
                throw CronError("\(name): '?' is only allowed in day-of-month and day-of-week")
            }
            result.insert(wildcard, step: 1, field: self)
            return result
        }
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw CronError("\(name): empty item in '\(text)'") }
            try parseItem(item, into: &result)
        }
        return result
    }

    private func parseItem(_ item: Substring, into result: inout CronFieldValues) throws(CronError) {
        let upper = item.uppercased()
        if item == "?" { throw CronError("\(name): '?' cannot be combined with other values") }
        if self == .dayOfMonth {
            if upper == "L" { result.lastDayOfMonth = true; return }
            if upper.hasPrefix("L-") { throw CronError("\(name): '\(item)': offsets from the last day (L-n) are not supported") }
            if upper.contains("W") { throw CronError("\(name): '\(item)': nearest-weekday (W) is not supported") }
        }
        if self == .dayOfWeek, let special = try parseWeekdaySpecial(item, upper: upper) {
            switch special {
            case let .nth(day, week): result.nthWeekdays |= 1 << UInt64(day * 8 + week)
            case let .last(day): result.lastWeekdays |= 1 << UInt64(day)
            }
            return
        }
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw CronError("\(name): '\(item)' has more than one '/'") }
        let base = parts[0]
        var step = 1
        if parts.count == 2 {
            let s = parts[1]
            guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw CronError("\(name): step '\(s)' in '\(item)' is not a number")
            }
            let span = wildcard.count
            guard s.utf8.count <= 9, let n = Int(s), n <= span else {
                throw CronError("\(name): step \(s) in '\(item)' is larger than the field's \(span) values")
            }
            guard n > 0 else { throw CronError("\(name): a step of 0 in '\(item)' never advances") }
            step = n
        }
        let range: ClosedRange<Int>
        if base == "*" {
            range = wildcard
        } else if let dash = base.firstIndex(of: "-") {
            let lowText = base[..<dash], highText = base[base.index(after: dash)...]
            guard !lowText.isEmpty, !highText.isEmpty else { throw CronError("\(name): '\(item)' is not a value or a range") }
            let low = try value(lowText)
            // `15-L` is the 15th to the last day: days a month lacks never match anyway.
            var high = 31
            if !(self == .dayOfMonth && highText.uppercased() == "L") { high = try value(highText) }
            if self == .dayOfWeek, high == 0, low > 0 { high = 7 }   // FRI-SUN
            guard low <= high else {
                throw CronError("\(name): range '\(item)' runs backwards; write it as two ranges")
            }
            range = low...high
        } else {
            var low = try value(base)
            // `a/n` runs to the end of the field; a bare value is just itself.
            if parts.count == 2, self == .dayOfWeek, low == 7 { low = 0 }   // SUN/2 is 0,2,4,6
            range = parts.count == 2 ? low...Swift.max(low, wildcard.upperBound) : low...low
        }
        result.insert(range, step: step, field: self)
    }

    private enum WeekdaySpecial { case nth(day: Int, week: Int), last(day: Int) }

    /// `MON#2` (second Monday), `5L`/`FRIL` (last Friday) and croniter's `L5`.
    private func parseWeekdaySpecial(_ item: Substring, upper: String) throws(CronError) -> WeekdaySpecial? {
        if let hash = item.firstIndex(of: "#") {
            let dayText = item[..<hash], weekText = item[item.index(after: hash)...]
            if dayText.contains("-") || dayText.contains("/") || dayText.contains("*") {
                throw CronError("\(name): '\(item)': '#' takes a single day, not a range")
            }
            let day = try value(dayText) % 7
            guard weekText.utf8.count == 1, let week = Int(weekText), (1...5).contains(week) else {
                throw CronError("\(name): '\(item)': the week after '#' must be 1-5")
            }
            return .nth(day: day, week: week)
        }
        guard upper.contains("L") else { return nil }
        if upper == "L" { throw CronError("\(name): 'L' needs a day before it, e.g. 5L for the last Friday") }
        let dayText: Substring
        if upper.hasSuffix("L") {
            dayText = item.dropLast()
        } else if upper.hasPrefix("L") {
            dayText = item.dropFirst()
        } else {
            throw badValue(item)
        }
        if dayText.contains("-") || dayText.contains("/") || dayText.contains("*") {
            throw CronError("\(name): '\(item)': 'L' takes a single day, not a range")
        }
        return .last(day: try value(dayText) % 7)
    }
}

/// A parsed field. Day-of-week bit 7 (Sunday written as 7) is folded onto bit 0.
struct CronFieldValues: Hashable, Sendable {
    var bits: UInt64 = 0
    /// Day-of-month `L`.
    var lastDayOfMonth = false
    /// Day-of-week `d#k`: bit `d * 8 + k`, k in 1...5.
    var nthWeekdays: UInt64 = 0
    /// Day-of-week `dL`: bit `d`.
    var lastWeekdays: UInt64 = 0

    mutating func insert(_ range: ClosedRange<Int>, step: Int, field: CronField) {
        for v in stride(from: range.lowerBound, through: range.upperBound, by: step) {
            bits |= 1 << UInt64(field == .dayOfWeek ? v % 7 : v)
        }
    }
}

extension UInt64 {
    /// The smallest member `>= from`, if any.
    func first(from: Int) -> Int? {
        guard from < 64 else { return nil }
        let rest = self & (~0 << UInt64(Swift.max(from, 0)))
        return rest == 0 ? nil : rest.trailingZeroBitCount
    }
}
