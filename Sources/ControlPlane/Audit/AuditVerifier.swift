import Crypto
import Foundation

/// Checks an audit log from its files alone, so a log can be checked without
/// trusting the process that wrote it (a stopped gateway's state dir, a copy).
public enum AuditVerifier {
    public struct Report: Codable, Sendable {
        public var ok: Bool
        public var entries: Int
        public var checkpoints: Int
        public var lastSeq: Int
        /// The first thing wrong, when something is.
        public var firstBreak: Break?
    }

    public struct Break: Codable, Sendable {
        /// `unreadable`, `bad_hash`, `broken_link`, `seq_gap`, `bad_signature`,
        /// `checkpoint_mismatch`, `truncated`, `missing_checkpoint`
        public var kind: String
        public var seq: Int?
        public var line: Int?
        public var message: String
    }

    /// - Parameter head: the writer's last entry, when a running gateway asks:
    ///   entries removed after the last checkpoint are then noticed as well.
    public static func verify(stateDir: String, head: (seq: Int, hash: String)? = nil, checkpointEvery: Int? = nil) -> Report {
        let path = stateDir + "/audit.jsonl"
        var report = Report(ok: true, entries: 0, checkpoints: 0, lastSeq: 0, firstBreak: nil)
        func broken(_ kind: String, seq: Int?, line: Int?, _ message: String) -> Report {
            var r = report
            r.ok = false
            r.firstBreak = Break(kind: kind, seq: seq, line: line, message: message)
            return r
        }
        guard FileManager.default.fileExists(atPath: path) else {
            return broken("unreadable", seq: nil, line: nil, "\(path) does not exist")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            return broken("unreadable", seq: nil, line: nil, "cannot read \(path)")
        }
        // Checkpoints first: only the hashes they name need keeping.
        let checkpoints: [AuditCheckpoint]
        do { checkpoints = try readCheckpoints(stateDir + "/audit.checkpoints.jsonl") } catch {
            return broken("unreadable", seq: nil, line: nil, "\(error)")
        }
        let wanted = Set(checkpoints.map(\.seq) + (head.map { [$0.seq] } ?? []))
        var hashes: [Int: String] = [:]
        var prev = AuditEntry.genesis
        var prevBytes = Array(prev.utf8)
        var expected = 1
        var lineNo = 0
        var failure: Report?
        var scratch: [UInt8] = []
        // A log as the writer wrote it is verified in parallel; anything else (and
        // any break) goes through the sequential pass below, which names it.
        let parallel = data.withUnsafeBytes { raw in
            ParallelVerify.run(raw.bindMemory(to: UInt8.self), wanted: wanted,
                               parts: max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)))
        }
        if let parallel {
            report.entries = parallel.entries
            report.lastSeq = parallel.lastSeq
            hashes = parallel.hashes
        } else { data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let all = raw.bindMemory(to: UInt8.self)
            var start = 0
            while start < all.count, failure == nil {
                var end = start
                while end < all.count, all[end] != 10 { end += 1 }
                lineNo += 1
                defer { start = end + 1 }
                if end == start { continue }
                let line = UnsafeBufferPointer(rebasing: all[start..<end])
                // The fast path reads a line exactly as the writer wrote it; anything else
                // (and every failure) goes through the full decode, which names the break.
                if FastLine.check(line, expectedSeq: expected, prev: &prevBytes, scratch: &scratch) {
                    if wanted.contains(expected) { hashes[expected] = String(decoding: prevBytes, as: UTF8.self) }
                    report.entries += 1
                    report.lastSeq = expected
                    expected += 1
                    continue
                }
                prev = String(decoding: prevBytes, as: UTF8.self)
                guard let e = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)) else {
                    failure = broken("unreadable", seq: expected, line: lineNo, "line \(lineNo) is not an audit entry")
                    return
                }
                if e.seq != expected {
                    failure = broken("seq_gap", seq: e.seq, line: lineNo, "gap in seq at line \(lineNo): expected \(expected), found \(e.seq)")
                } else if e.computedHash != e.entryHash {
                    failure = broken("bad_hash", seq: e.seq, line: lineNo, "bad hash at seq \(e.seq) (line \(lineNo)): the entry was altered after it was written")
                } else if e.prevHash != prev {
                    failure = broken("broken_link", seq: e.seq, line: lineNo, "broken link at seq \(e.seq) (line \(lineNo)): prevHash does not match entry \(e.seq - 1)")
                } else {
                    if wanted.contains(e.seq) { hashes[e.seq] = e.entryHash }
                    prevBytes = Array(e.entryHash.utf8)
                    report.entries += 1
                    report.lastSeq = e.seq
                    expected += 1
                }
            }
        } }
        if let failure { return failure }

        report.checkpoints = checkpoints.count
        if !checkpoints.isEmpty {
            let key: Curve25519.Signing.PublicKey
            do { key = try AuditKey.publicKey(stateDir: stateDir) } catch {
                return broken("bad_signature", seq: nil, line: nil, "\(error)")
            }
            for cp in checkpoints {
                guard cp.verify(with: key) else {
                    return broken("bad_signature", seq: cp.seq, line: nil, "bad signature on the checkpoint at seq \(cp.seq)")
                }
                guard cp.seq <= report.lastSeq else {
                    return broken("truncated", seq: cp.seq, line: nil,
                                  "truncated: a checkpoint covers seq \(cp.seq) but the log ends at seq \(report.lastSeq)")
                }
                guard hashes[cp.seq] == cp.entryHash else {
                    return broken("checkpoint_mismatch", seq: cp.seq, line: nil,
                                  "the entry at seq \(cp.seq) is not the one the checkpoint signed: the log was rewritten")
                }
            }
        }
        if let every = checkpointEvery, report.lastSeq >= every, (checkpoints.last?.seq ?? 0) < every {
            return broken("missing_checkpoint", seq: nil, line: nil, "the log has \(report.lastSeq) entries but no checkpoint: the checkpoint file was removed")
        }
        if let head {
            if head.seq > report.lastSeq {
                return broken("truncated", seq: head.seq, line: nil,
                              "truncated: the gateway wrote up to seq \(head.seq) but the log ends at seq \(report.lastSeq)")
            }
            if head.seq > 0, hashes[head.seq] != head.hash {
                return broken("checkpoint_mismatch", seq: head.seq, line: nil, "the entry at seq \(head.seq) is not the one the gateway wrote")
            }
        }
        return report
    }

    static func readCheckpoints(_ path: String) throws -> [AuditCheckpoint] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var out: [AuditCheckpoint] = []
        for (i, raw) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let cp = try? JSONDecoder().decode(AuditCheckpoint.self, from: raw) else {
                throw AuditError.io("line \(i + 1) of \(path) is not a checkpoint")
            }
            out.append(cp)
        }
        return out
    }

    /// Entries matching the filters, newest first.
    public static func query(stateDir: String, runId: String? = nil, actor: String? = nil, action: String? = nil,
                             since: String? = nil, until: String? = nil, before: Int? = nil, limit: Int = 100) throws -> [AuditEntry] {
        guard let data = FileManager.default.contents(atPath: stateDir + "/audit.jsonl") else { return [] }
        let decoder = JSONDecoder()
        var out: [AuditEntry] = []
        for raw in data.split(separator: UInt8(ascii: "\n")).reversed() {
            guard let e = try? decoder.decode(AuditEntry.self, from: raw) else { continue }
            if let before, e.seq >= before { continue }
            if let runId, e.runId != runId { continue }
            if let actor, e.actor != actor { continue }
            if let action, e.action != action, !(action.hasSuffix(".*") && e.action.hasPrefix(action.dropLast())) { continue }
            if let since, e.timestamp < since { continue }
            if let until, e.timestamp >= until { continue }
            out.append(e)
            if out.count >= limit { break }
        }
        return out
    }
}
