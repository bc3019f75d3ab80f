import Crypto
import Foundation

/// A signed statement that the chain had `entryHash` at `seq`. Written every
/// `audit.checkpointEvery` entries and at shutdown, to a file of its own. A log
/// cut short, or rewritten from the start, no longer matches a checkpoint, and a
/// forged checkpoint needs the gateway's private key.
public struct AuditCheckpoint: Codable, Sendable, Equatable {
    public var seq: Int
    public var entryHash: String
    public var timestamp: String
    /// Ed25519 over `message`, hex.
    public var signature: String
    /// The gateway whose key signed it, in a chain several gateways share;
    /// absent in a gateway's own file chain (its key is `audit.pub`).
    public var gateway: String?

    public var message: String { Self.message(seq: seq, entryHash: entryHash, timestamp: timestamp, gateway: gateway) }

    /// A shared chain's checkpoint also signs the gateway's name, so one
    /// gateway's signature cannot be passed off as another's.
    static func message(seq: Int, entryHash: String, timestamp: String, gateway: String? = nil) -> String {
        "skelm-audit-checkpoint\n\(seq)\n\(entryHash)\n\(timestamp)" + (gateway.map { "\n" + $0 } ?? "")
    }

    func verify(with key: Curve25519.Signing.PublicKey) -> Bool {
        guard let sig = Data(hex: signature) else { return false }
        return key.isValidSignature(sig, for: Data(message.utf8))
    }
}

/// The Ed25519 key that signs checkpoints: `stateDir/audit.key` (0600, the raw
/// 32-byte private key), created on first start; its public half is written to
/// `stateDir/audit.pub` (hex) for anyone who verifies.
enum AuditKey {
    static func loadOrCreate(stateDir: String) throws -> Curve25519.Signing.PrivateKey {
        let path = stateDir + "/audit.key"
        if let data = FileManager.default.contents(atPath: path) {
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
                throw AuditError.insecureKey("\(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); it must be 0600")
            }
            return try Curve25519.Signing.PrivateKey(rawRepresentation: data)
        }
        let key = Curve25519.Signing.PrivateKey()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AuditError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let raw = key.rawRepresentation
        let written = raw.withUnsafeBytes { write(fd, $0.baseAddress, raw.count) }
        guard written == raw.count, fsync(fd) == 0 else { throw AuditError.io("cannot write \(path)") }
        try (key.publicKey.rawRepresentation.hex + "\n").write(toFile: stateDir + "/audit.pub", atomically: true, encoding: .utf8)
        return key
    }

    static func publicKey(stateDir: String) throws -> Curve25519.Signing.PublicKey {
        let path = stateDir + "/audit.pub"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let raw = Data(hex: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw AuditError.io("cannot read the public key \(path)")
        }
        return try Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }
}

public enum AuditError: Error, CustomStringConvertible {
    case io(String)
    case insecureKey(String)

    public var description: String {
        switch self {
        case let .io(m), let .insecureKey(m): m
        }
    }
}

extension Data {
    var hex: String { AuditEntry.hexString(self) }

    init?(hex: String) {
        guard hex.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.count / 2)
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            guard let b = UInt8(hex[i..<j], radix: 16) else { return nil }
            bytes.append(b)
            i = j
        }
        self.init(bytes)
    }
}
