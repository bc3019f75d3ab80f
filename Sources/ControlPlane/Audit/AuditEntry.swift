import Crypto
import Foundation

/// One entry of the audit chain. `entryHash` is SHA-256 over the canonical JSON
/// of every other field; `prevHash` is the previous entry's `entryHash` (64
/// zeros for seq 1). Details are strings only, so the canonical form is simple
/// enough to recompute in a few lines of any language (docs/audit.md).
public struct AuditEntry: Codable, Sendable, Equatable {
    public var seq: Int
    public var timestamp: String
    public var actor: String
    public var action: String
    public var runId: String?
    public var details: [String: String]
    public var prevHash: String
    public var entryHash: String
    /// The gateway that wrote it, in a chain several gateways share (one
    /// database); absent (and not hashed) in a gateway's own file chain.
    public var gateway: String?

    public init(seq: Int, timestamp: String, actor: String, action: String, runId: String?, details: [String: String],
                prevHash: String, entryHash: String, gateway: String? = nil) {
        (self.seq, self.timestamp, self.actor, self.action, self.runId) = (seq, timestamp, actor, action, runId)
        (self.details, self.prevHash, self.entryHash, self.gateway) = (details, prevHash, entryHash, gateway)
    }

    public static let genesis = String(repeating: "0", count: 64)

    /// The canonical JSON of the entry without `entryHash`: keys sorted, no
    /// spaces, UTF-8, only `"` `\` and control characters escaped.
    public var canonicalBody: String { canonical(includingHash: false) }

    public var computedHash: String { Self.sha256Hex(canonicalBody) }

    /// The line written to the log: the canonical body with `entryHash` added.
    public var line: String { canonical(includingHash: true) }

    private func canonical(includingHash: Bool) -> String {
        var fields: [(String, String)] = [
            ("action", CanonicalJSON.string(action)),
            ("actor", CanonicalJSON.string(actor)),
            ("details", CanonicalJSON.object(details)),
            ("prevHash", CanonicalJSON.string(prevHash)),
            ("runId", runId.map(CanonicalJSON.string) ?? "null"),
            ("seq", String(seq)),
            ("timestamp", CanonicalJSON.string(timestamp)),
        ]
        if let gateway { fields.append(("gateway", CanonicalJSON.string(gateway))) }
        if includingHash { fields.append(("entryHash", CanonicalJSON.string(entryHash))) }
        fields.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        return "{" + fields.map { CanonicalJSON.string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    static func sha256Hex(_ text: String) -> String {
        var text = text
        let digest = text.withUTF8 { SHA256.hash(data: $0) }
        return hexString(digest)
    }

    /// Lowercase hex, without a format call per byte (verify runs this a million times).
    static func hexString(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The canonical JSON the audit chain hashes. Hand-written rather than
/// JSONEncoder: the hash must not change with a Foundation release's escaping
/// or key-ordering choices, and a verifier in another language must be able to
/// produce the same bytes (Python: `json.dumps(e, sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False)`).
enum CanonicalJSON {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func object(_ o: [String: String]) -> String {
        let keys = o.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return "{" + keys.map { string($0) + ":" + string(o[$0]!) }.joined(separator: ",") + "}"
    }
}
