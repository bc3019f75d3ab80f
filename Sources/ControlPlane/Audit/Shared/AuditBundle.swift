import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The chain several gateways share, written out of the database into a
/// directory that verifies offline like a state dir: `audit.jsonl` (every
/// entry, in order), `audit.checkpoints.jsonl` (each naming the gateway that
/// signed it) and `audit.keys.jsonl` (every gateway's public keys).
/// `skelm audit verify --state-dir DIR` and scripts/audit-verify.py read it.
public enum AuditBundle {
    public struct Key: Codable, Sendable, Equatable {
        public var gateway: String
        /// Ed25519, hex.
        public var publicKey: String
        public var addedAt: String
    }

    public static let keysFile = "audit.keys.jsonl"

    public struct Written: Sendable {
        public var entries: Int
        public var checkpoints: Int
        public var gateways: [String]
    }

    /// Writes the chain as it stands into `dir`, which must not exist or be
    /// empty. Checkpoints and keys are read first, so every entry a checkpoint
    /// covers is in the export.
    public static func write(from store: RunStore, to dir: String) async throws -> Written {
        let engine = store.db
        // In one snapshot, before the entries: every entry a checkpoint covers, and every signer's key, is in the export.
        let state = try await SharedAuditReader.state(engine)
        let (keys, checkpoints) = (state.keys, state.checkpoints)
        let fm = FileManager.default
        if fm.fileExists(atPath: dir) {
            guard (try fm.contentsOfDirectory(atPath: dir)).isEmpty else { throw AuditError.io("\(dir) is not empty: export into a new directory") }
        } else {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func lines<T: Encodable>(_ items: [T]) throws -> String {
            try items.map { String(decoding: try encoder.encode($0), as: UTF8.self) + "\n" }.joined()
        }
        try lines(keys).write(toFile: dir + "/" + keysFile, atomically: true, encoding: .utf8)
        try lines(checkpoints).write(toFile: dir + "/audit.checkpoints.jsonl", atomically: true, encoding: .utf8)
        let path = dir + "/audit.jsonl"
        guard fm.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
            throw AuditError.io("cannot create \(path)")
        }
        defer { try? out.close() }
        var entries = 0
        try await SharedAuditReader.export(engine, AuditFilter()) { page in
            try out.write(contentsOf: Data(page.map { $0.line + "\n" }.joined().utf8))
            entries += page.count
        }
        try out.synchronize()
        return Written(entries: entries, checkpoints: checkpoints.count, gateways: Array(Set(keys.map(\.gateway))).sorted())
    }

    /// `audit.keys.jsonl` in `dir`, by gateway; empty when there is none.
    static func keys(stateDir dir: String) throws -> [String: [Curve25519.Signing.PublicKey]] {
        guard let data = FileManager.default.contents(atPath: dir + "/" + keysFile) else { return [:] }
        var keys: [Key] = []
        for (i, raw) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let key = try? JSONDecoder().decode(Key.self, from: raw) else {
                throw AuditError.io("line \(i + 1) of \(dir)/\(keysFile) is not a gateway's key")
            }
            keys.append(key)
        }
        return try publicKeys(keys)
    }

    /// A `--keys` file: one `<gateway> <public key, hex>` per line (the hex
    /// is the gateway's `stateDir/audit.pub`); blank lines and `#` comments
    /// are ignored.
    public static func trustedKeys(file path: String) throws -> [String: [Curve25519.Signing.PublicKey]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw AuditError.io("cannot read the keys file \(path)") }
        var keys: [Key] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else { throw AuditError.io("line \(i + 1) of \(path) is not '<gateway> <public key hex>'") }
            keys.append(Key(gateway: String(fields[0]), publicKey: String(fields[1]), addedAt: ""))
        }
        do { return try publicKeys(keys) } catch { throw AuditError.io("\(path): \(error)") }
    }

    static func publicKeys(_ keys: [Key]) throws -> [String: [Curve25519.Signing.PublicKey]] {
        var out: [String: [Curve25519.Signing.PublicKey]] = [:]
        for k in keys {
            guard let raw = Data(hex: k.publicKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw AuditError.io("the public key recorded for gateway \(k.gateway) is not an Ed25519 key")
            }
            out[k.gateway, default: []].append(key)
        }
        return out
    }
}
