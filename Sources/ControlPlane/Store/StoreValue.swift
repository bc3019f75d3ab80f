import Foundation

/// One SQL value as both engines exchange it: SQLite's five storage classes,
/// which PostgreSQL's columns of the store (BIGINT, DOUBLE PRECISION, TEXT,
/// BYTEA) map onto one to one.
public enum StoreValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// A Swift value that binds as, and reads back from, a `StoreValue`. Reading
/// is lenient where the engines differ: PostgreSQL answers some aggregates as
/// NUMERIC (read back as text or real) where SQLite answers an integer.
public protocol StoreValueConvertible: Sendable {
    var storeValue: StoreValue { get }
    static func fromStore(_ value: StoreValue) -> Self?
}

extension String: StoreValueConvertible {
    public var storeValue: StoreValue { .text(self) }
    public static func fromStore(_ value: StoreValue) -> String? {
        switch value {
        case let .text(s): s
        case let .integer(i): String(i)
        case let .real(d): String(d)
        case let .blob(b): String(decoding: b, as: UTF8.self)
        case .null: nil
        }
    }
}

extension Int64: StoreValueConvertible {
    public var storeValue: StoreValue { .integer(self) }
    public static func fromStore(_ value: StoreValue) -> Int64? {
        switch value {
        case let .integer(i): i
        case let .real(d): Int64(exactly: d.rounded(.towardZero))
        case let .text(s): Int64(s) ?? Double(s).flatMap { Int64(exactly: $0.rounded(.towardZero)) }
        case .blob, .null: nil
        }
    }
}

extension Int: StoreValueConvertible {
    public var storeValue: StoreValue { .integer(Int64(self)) }
    public static func fromStore(_ value: StoreValue) -> Int? { Int64.fromStore(value).map(Int.init) }
}

extension Double: StoreValueConvertible {
    public var storeValue: StoreValue { .real(self) }
    public static func fromStore(_ value: StoreValue) -> Double? {
        switch value {
        case let .real(d): d
        case let .integer(i): Double(i)
        case let .text(s): Double(s)
        case .blob, .null: nil
        }
    }
}

/// Stored as 0 or 1 in both engines (an INTEGER column), so SQL compares it
/// the same way in each.
extension Bool: StoreValueConvertible {
    public var storeValue: StoreValue { .integer(self ? 1 : 0) }
    public static func fromStore(_ value: StoreValue) -> Bool? {
        switch value {
        case let .integer(i): i != 0
        case let .real(d): d != 0
        case let .text(s): ["1", "t", "true"].contains(s.lowercased())
        case .blob, .null: nil
        }
    }
}

extension Data: StoreValueConvertible {
    public var storeValue: StoreValue { .blob([UInt8](self)) }
    public static func fromStore(_ value: StoreValue) -> Data? {
        switch value {
        case let .blob(b): Data(b)
        case let .text(s): Data(s.utf8)
        default: nil
        }
    }
}

extension Optional: StoreValueConvertible where Wrapped: StoreValueConvertible {
    public var storeValue: StoreValue { self?.storeValue ?? .null }
    public static func fromStore(_ value: StoreValue) -> Wrapped?? {
        if case .null = value { return .some(nil) }
        return Wrapped.fromStore(value).map { .some($0) }
    }
}

/// Dates in records are stored as GRDB stores them ("yyyy-MM-dd HH:mm:ss.SSS",
/// UTC): text that sorts as time does, and that stores written before the
/// store had two engines already hold.
enum StoreDate {
    static func text(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        let millis = Int(((date.timeIntervalSince1970 - Double(seconds)) * 1000).rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.%03d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), min(999, max(0, millis)))
    }

    /// Text in that format (also without the fraction, or with a `T`), or a
    /// number of seconds since 1970.
    static func date(_ value: StoreValue) -> Date? {
        switch value {
        case let .real(d): return Date(timeIntervalSince1970: d)
        case let .integer(i): return Date(timeIntervalSince1970: Double(i))
        case let .text(s):
            let fields = s.split(whereSeparator: { "-: T.".contains($0) }).map(String.init)
            guard fields.count >= 6, let y = Int32(fields[0]), let mo = Int32(fields[1]), let d = Int32(fields[2]),
                  let h = Int32(fields[3]), let mi = Int32(fields[4]), let se = Int32(fields[5]) else { return nil }
            var parts = tm()
            (parts.tm_year, parts.tm_mon, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec) = (y - 1900, mo - 1, d, h, mi, se)
            let fraction = fields.count > 6 ? (Double("0." + fields[6]) ?? 0) : 0
            return Date(timeIntervalSince1970: Double(timegm(&parts)) + fraction)
        case .blob, .null: return nil
        }
    }
}
