import Foundation

/// Ids for runs, jobs, approvals and the like: 128 bits from the kernel.
///
/// Not `UUID()`: Foundation's opens, reads and closes `/dev/urandom` for each
/// one, and a run makes two on its path. The standard library's generator asks
/// `getrandom` for each 64 bits: two calls an id, no file.
enum RandomID {
    /// `prefix` then 32 lowercase hex digits.
    static func hex(_ prefix: String) -> String {
        var g = SystemRandomNumberGenerator()
        let high = g.next() as UInt64, low = g.next() as UInt64
        return prefix + Self.digits(high) + Self.digits(low)
    }

    /// A random (version 4) UUID in lowercase, the form job ids take.
    static func uuid() -> String {
        var g = SystemRandomNumberGenerator()
        var bytes = (0 ..< 2).flatMap { _ in withUnsafeBytes(of: g.next() as UInt64) { Array($0) } }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        let uuid = bytes.withUnsafeBytes { $0.loadUnaligned(as: uuid_t.self) }
        return UUID(uuid: uuid).uuidString.lowercased()
    }

    private static func digits(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
