import Foundation

/// Time-zone lookup for the time triggers (`cron`, `every`, `at`), kept out of
/// an extension on `TimeZone` so call sites say whose rule they apply.
public enum CronTime {
    /// A trigger's `tz`: an IANA name such as `Europe/Berlin`, or UTC when none
    /// is given. Only `Area/Location` names (and `UTC`) are taken, spelled as the
    /// tz database spells them: `TimeZone(identifier:)` alone also accepts
    /// abbreviations like `PST`, which it reads as a fixed offset with no DST,
    /// not as the clock in Los Angeles the writer meant. The system's list of
    /// known identifiers is not used to check: on Linux it is ICU's, which
    /// lacks current names such as `Asia/Kolkata`.
    public static func zone(named name: String?) throws(TimeSpecError) -> TimeZone {
        guard let name else { return utc }
        if name == "UTC" || name == "Etc/UTC" { return utc }
        let shown = name.utf8.count <= 64 ? name : String(name.prefix(64)) + "..."
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        let wellFormed = name.utf8.count <= 64 && components.count >= 2 && components.allSatisfy { part in
            guard let first = part.utf8.first, (0x41...0x5a).contains(first) || (0x61...0x7a).contains(first) else { return false }
            return part.utf8.allSatisfy { b in
                (0x41...0x5a).contains(b) || (0x61...0x7a).contains(b) || (0x30...0x39).contains(b) || b == 0x5f || b == 0x2d || b == 0x2b
            }
        }
        guard wellFormed, let zone = TimeZone(identifier: name), zone.identifier == name else {
            throw TimeSpecError("tz: '\(shown)' is not a known time zone; use an IANA name like 'Europe/Berlin' or 'UTC'")
        }
        return zone
    }

    private static let utc = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0)!
}
