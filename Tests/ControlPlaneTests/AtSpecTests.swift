@testable import ControlPlane
import Foundation
import Testing

/// One-shot `at` triggers and the `tz` names every time trigger takes.
@Suite("At triggers and time zones")
struct AtSpecTests {
    @Test("ISO-8601 instants", arguments: [
        ("2026-12-01T09:00:00Z", 1_796_115_600.0),
        ("2026-12-01t09:00:00z", 1_796_115_600),
        ("2026-12-01 09:00:00Z", 1_796_115_600),
        ("2026-12-01T09:00Z", 1_796_115_600),
        ("2026-12-01T11:00:00+02:00", 1_796_115_600),
        ("2026-12-01T11:00:00+0200", 1_796_115_600),
        ("2026-12-01T03:30:00-05:30", 1_796_115_600),
        ("2026-12-01T09:00:00.250Z", 1_796_115_600.25),
        ("2026-12-01T09:00:00,5Z", 1_796_115_600.5),
        ("2026-12-01T09:00:00.123456789+00:00", 1_796_115_600.123456789),
        ("2024-02-29T00:00:00Z", 1_709_164_800),
        ("1970-01-01T00:00:00Z", 0),
    ])
    func instants(_ text: String, _ epoch: Double) throws {
        let instant = try AtSpec(text, zone: nil).instant.timeIntervalSince1970
        #expect(abs(instant - epoch) < 1e-6, "\(text): \(instant)")
    }

    @Test("refused, with the reason", arguments: [
        ("2026-12-01T09:00:00", "has no time zone; add 'Z' for UTC or an offset like '+02:00', or set tz"),
        ("2026-12-01", "has no time of day"),
        ("2026-12-01T9:00:00Z", "is not a date and time"),
        ("2026-13-01T09:00:00Z", "is not a valid date and time"),
        ("2026-02-29T09:00:00Z", "is not a valid date and time"),
        ("2026-12-01T24:00:00Z", "is not a valid date and time"),
        ("2026-12-01T09:00:60Z", "is not a valid date and time"),
        ("2026-12-01T09:00:00+25:00", "is not a date and time"),
        ("2026-12-01T09:00:00.Z", "is not a date and time"),
        ("2026-12-01T09:00:00.1234567891Z", "is not a date and time"),
        ("2026-12-01T09:00:00Z ", "is not a date and time"),
        ("2026-12-01T09:00:00Zjunk", "is not a date and time"),
        ("tomorrow", "is not a date and time"),
        ("", "is not a date and time"),
        (String(repeating: "9", count: 100), "longer than 64 characters"),
    ])
    func refused(_ text: String, _ fragment: String) {
        do {
            let at = try AtSpec(text, zone: nil)
            Issue.record("\(text.debugDescription) was accepted as \(at.instant)")
        } catch {
            #expect(error.message.hasPrefix("at: "))
            #expect(error.message.contains(fragment), "\(text.debugDescription): \(error.message)")
        }
    }

    @Test("with tz, a zone-less time is wall time there; a gap moves to its end, a repeat takes the first pass", arguments: [
        ("2026-12-01T10:00:00", "Europe/Berlin", "2026-12-01T09:00:00Z"),
        ("2026-07-01T10:00:00", "Europe/Berlin", "2026-07-01T08:00:00Z"),
        ("2026-03-08T02:30:00", "America/New_York", "2026-03-08T03:00:00-04:00"),
        ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T01:30:00-04:00"),
        ("2026-12-01T09:00:00", "Asia/Kolkata", "2026-12-01T03:30:00Z"),
        // An explicit offset wins over tz.
        ("2026-12-01T09:00:00Z", "Asia/Kolkata", "2026-12-01T09:00:00Z"),
    ])
    func zoned(_ text: String, _ zone: String, _ expected: String) throws {
        let at = try AtSpec(text, zone: try CronTime.zone(named: zone))
        #expect(at.instant == (try AtSpec(expected, zone: nil)).instant)
    }

    @Test("zones are IANA names; none means UTC", arguments: [
        "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata", "America/Argentina/Buenos_Aires",
        "Etc/GMT+2", "UTC",
    ])
    func zones(_ name: String) throws {
        let zone = try CronTime.zone(named: name)
        // Foundation on Linux names its UTC zone "GMT".
        #expect(zone.identifier == name || (name == "UTC" && zone.secondsFromGMT(for: Date()) == 0))
        #expect(try CronTime.zone(named: nil).secondsFromGMT(for: Date()) == 0)
    }

    @Test("unknown or ambiguous zone names are refused", arguments: [
        "Mars/Olympus_Mons", "europe/berlin", "PST", "EST", "CET", "GMT+2", "", "Europe/", "/Europe/Berlin",
        "../../etc/passwd", "Europe/../Berlin", "Europe/Berlin\u{0}", String(repeating: "A/", count: 50) + "B",
    ])
    func badZones(_ name: String) {
        do {
            let zone = try CronTime.zone(named: name)
            Issue.record("\(name.debugDescription) was accepted as \(zone.identifier)")
        } catch {
            #expect(error.message.hasPrefix("tz: "))
            #expect(error.message.contains("is not a known time zone"))
        }
    }
}
