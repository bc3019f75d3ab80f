import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

extension AuditLog {
    /// Tooling for benchmarks and tests, not for a gateway: writes a fresh, valid
    /// chain of `entries` entries into `stateDir` (which must hold no audit log
    /// yet), with a signed checkpoint every `checkpointEvery` entries and one at
    /// the end, as a clean stop leaves it. Entries are `synthetic.entry` by
    /// `gateway`, 1 ms apart from 2026-01-01T00:00:00.001Z, details `{"n": seq}`.
    /// Lines are assembled as bytes, not through AuditEntry, so the cost is about
    /// one SHA-256 per entry (millions a minute even in a debug build).
    public static func synthesize(stateDir: String, entries: Int, checkpointEvery: Int = 1000) throws {
        let layout = AuditLayout(stateDir: stateDir)
        let key = try AuditKey.loadOrCreate(stateDir: stateDir)
        let (fd, cpFD) = try layout.openLive()
        defer {
            Glibc.close(fd)
            Glibc.close(cpFD)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size == 0 else { throw AuditError.io("\(layout.live.path) already holds entries") }

        let head = Array(#"{"action":"synthetic.entry","actor":"gateway","details":{"n":""#.utf8)
        let (closeDetails, prevKey, seqKey, timeKey, close, entryKey) = (Array(#""}"#.utf8), Array(#","prevHash":""#.utf8),
                                                                         Array(#"","runId":null,"seq":"#.utf8), Array(#","timestamp":""#.utf8),
                                                                         Array(#""}"#.utf8), Array(#","entryHash":""#.utf8))
        var out: [UInt8] = []
        out.reserveCapacity(4 << 20)
        var body: [UInt8] = []
        body.reserveCapacity(512)
        var prev = Array(AuditEntry.genesis.utf8)
        var hash = prev
        var checkpoints = ""
        // One fsync at the end: a half-written synthetic log is simply made again.
        func flush() throws {
            var off = 0
            while off < out.count {
                let n = out.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw AuditError.io("cannot write \(layout.live.path): \(String(cString: strerror(errno)))") }
                off += n
            }
            out.removeAll(keepingCapacity: true)
        }
        for seq in stride(from: 1, through: entries, by: 1) {
            body.removeAll(keepingCapacity: true)
            body += head
            appendDecimal(seq, to: &body)
            body += closeDetails
            let split = body.count
            body += prevKey
            body += prev
            body += seqKey
            appendDecimal(seq, to: &body)
            body += timeKey
            let ts = timestamp(millisecond: seq)
            body += ts
            body += close
            let digest = SHA256.hash(data: body)
            var k = 0
            for byte in digest {
                hash[k] = FastLine.hexDigits[Int(byte >> 4)]
                hash[k + 1] = FastLine.hexDigits[Int(byte & 0x0f)]
                k += 2
            }
            out += body[..<split]
            out += entryKey
            out += hash
            out.append(UInt8(ascii: "\""))
            out += body[split...]
            out.append(UInt8(ascii: "\n"))
            prev = hash
            if seq % checkpointEvery == 0 || seq == entries {
                checkpoints += try checkpointLine(seq: seq, hash: String(decoding: hash, as: UTF8.self),
                                                  timestamp: String(decoding: ts, as: UTF8.self), key: key)
            }
            if out.count >= 4 << 20 { try flush() }
        }
        try flush()
        guard fsync(fd) == 0 else { throw AuditError.io("cannot sync \(layout.live.path)") }
        try AuditLog.writeAll(cpFD, checkpoints).get()
    }

    private static func checkpointLine(seq: Int, hash: String, timestamp: String, key: Curve25519.Signing.PrivateKey) throws -> String {
        let signature = try key.signature(for: Data(AuditCheckpoint.message(seq: seq, entryHash: hash, timestamp: timestamp).utf8)).hex
        return "{\"entryHash\":\"\(hash)\",\"seq\":\(seq),\"signature\":\"\(signature)\",\"timestamp\":\"\(timestamp)\"}\n"
    }

    private static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        var digits: [UInt8] = []
        var n = n
        repeat {
            digits.append(UInt8(48 + n % 10))
            n /= 10
        } while n > 0
        out += digits.reversed()
    }

    /// 2026-01-DDTHH:MM:SS.mmmZ, `ms` milliseconds after the start of 2026 (within January).
    private static func timestamp(millisecond ms: Int) -> [UInt8] {
        func two(_ n: Int) -> [UInt8] { [UInt8(48 + n / 10 % 10), UInt8(48 + n % 10)] }
        let day = min(ms / 86_400_000, 30)
        let inDay = ms - day * 86_400_000
        let h = inDay / 3_600_000, m = inDay / 60000 % 60, s = inDay / 1000 % 60, milli = inDay % 1000
        return Array("2026-01-".utf8) + two(day + 1) + [UInt8(ascii: "T")] + two(h) + [UInt8(ascii: ":")] + two(m)
            + [UInt8(ascii: ":")] + two(s) + [UInt8(ascii: "."), UInt8(48 + milli / 100), UInt8(48 + milli / 10 % 10), UInt8(48 + milli % 10),
                                            UInt8(ascii: "Z")]
    }
}
