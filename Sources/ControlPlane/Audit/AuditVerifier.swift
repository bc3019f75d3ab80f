import Crypto
import Foundation

/// Checks an audit chain from its files alone, so a log can be checked without
/// trusting the process that wrote it (a stopped gateway's state dir, a copy).
/// The chain runs through the sealed segments, oldest first, then the live log.
public enum AuditVerifier {
    public struct Report: Codable, Sendable {
        public var ok: Bool
        public var entries: Int
        public var checkpoints: Int
        public var lastSeq: Int
        /// The first thing wrong, when something is.
        public var firstBreak: Break?
        /// Each file of the chain as far as the walk got, oldest first; the live log last.
        public var segments: [Segment] = []
        /// Checkpoints by the gateway that signed them, in a chain several gateways share.
        public var signers: [String: Int]?
        /// The public keys (hex) that signed them, by gateway: compare them with
        /// copies of each gateway's `audit.pub` kept elsewhere, or pass those (`--keys`).
        public var keys: [String: [String]]?
    }

    public struct Segment: Codable, Sendable {
        /// `segments/000001.jsonl`, …, `audit.jsonl`
        public var file: String
        /// nil for an empty file.
        public var firstSeq: Int?
        public var lastSeq: Int
        public var entries: Int
        public var checkpoints: Int
        /// Read-only and ending with a signed checkpoint of its last entry (never the live log).
        public var sealed: Bool
        public var ok: Bool
    }

    public struct Break: Codable, Sendable {
        /// `unreadable`, `bad_hash`, `broken_link`, `seq_gap`, `bad_signature`,
        /// `checkpoint_mismatch`, `truncated`, `missing_checkpoint`
        public var kind: String
        public var seq: Int?
        public var line: Int?
        /// The file of the chain it is in, when it is in one.
        public var file: String?
        public var message: String
    }

    /// - Parameter head: the writer's last entry, when a running gateway asks:
    ///   entries removed after the last checkpoint are then noticed as well.
    /// - Parameter trusted: for an export of a shared chain, gateways' public
    ///   keys kept elsewhere (`--keys`), used instead of its `audit.keys.jsonl`.
    public static func verify(stateDir: String, head: (seq: Int, hash: String)? = nil, checkpointEvery: Int? = nil,
                              trusted: [String: [Curve25519.Signing.PublicKey]]? = nil) -> Report {
        let layout = AuditLayout(stateDir: stateDir)
        let files = layout.files()
        let segmented = files.count > 1
        var report = Report(ok: true, entries: 0, checkpoints: 0, lastSeq: 0, firstBreak: nil)
        func broken(_ kind: String, seq: Int?, line: Int?, file: String? = nil, _ message: String) -> Report {
            var r = report
            r.ok = false
            r.firstBreak = Break(kind: kind, seq: seq, line: line, file: file, message: message)
            return r
        }
        guard segmented || FileManager.default.fileExists(atPath: layout.live.path) else {
            return broken("unreadable", seq: nil, line: nil, "\(layout.live.path) does not exist")
        }
        var key: Curve25519.Signing.PublicKey?
        var gatewayKeys: [String: [Curve25519.Signing.PublicKey]]?
        var hashes: [Int: String] = [:]
        var prev = Array(AuditEntry.genesis.utf8)
        var lastCheckpoint = 0
        for file in files {
            let live = file.segment == nil
            let place = { (line: Int) in live && !segmented ? "line \(line)" : "line \(line) of \(file.name)" }
            var segment = Segment(file: file.name, firstSeq: nil, lastSeq: report.lastSeq, entries: 0, checkpoints: 0, sealed: false, ok: false)
            func fail(_ kind: String, seq: Int?, line: Int?, _ message: String) -> Report {
                report.segments.append(segment)
                return broken(kind, seq: seq, line: line, file: file.name, message)
            }
            let data: Data
            if live, !FileManager.default.fileExists(atPath: file.path) {
                data = Data()
            } else {
                // Mapped, not read: a segment can be hundreds of megabytes.
                guard let mapped = try? Data(contentsOf: URL(fileURLWithPath: file.path), options: .alwaysMapped) else {
                    return fail("unreadable", seq: nil, line: nil, "cannot read \(file.path)")
                }
                data = mapped
            }
            // Checkpoints first: only the hashes they name need keeping.
            let checkpoints: [AuditCheckpoint]
            do { checkpoints = try readCheckpoints(file.checkpoints) } catch {
                return fail("unreadable", seq: nil, line: nil, "\(error)")
            }
            let wanted = Set(checkpoints.map(\.seq) + (head.map { [$0.seq] } ?? []))
            let walk = ChainWalk.run(data, firstSeq: report.lastSeq + 1, prev: prev, wanted: wanted, place: place)
            report.entries += walk.entries
            segment.entries = walk.entries
            segment.firstSeq = walk.entries > 0 ? report.lastSeq + 1 : nil
            if walk.entries > 0 { report.lastSeq = walk.lastSeq }
            segment.lastSeq = report.lastSeq
            if let b = walk.failure { return fail(b.kind, seq: b.seq, line: b.line, b.message) }
            prev = walk.lastHash
            hashes.merge(walk.hashes) { a, _ in a }

            report.checkpoints += checkpoints.count
            segment.checkpoints = checkpoints.count
            // A gateway's own chain is signed with audit.pub's key; an export of a
            // shared chain names each checkpoint's gateway, whose keys it lists.
            if checkpoints.contains(where: { $0.gateway == nil }), key == nil {
                do { key = try AuditKey.publicKey(stateDir: stateDir) } catch {
                    return fail("bad_signature", seq: nil, line: nil, "\(error)")
                }
            }
            if checkpoints.contains(where: { $0.gateway != nil }), gatewayKeys == nil {
                do { gatewayKeys = try trusted ?? AuditBundle.keys(stateDir: stateDir) } catch {
                    return fail("bad_signature", seq: nil, line: nil, "\(error)")
                }
            }
            for cp in checkpoints {
                let signer = if let gateway = cp.gateway { gatewayKeys?[gateway]?.first(where: { cp.verify(with: $0) }) } else { key.flatMap { cp.verify(with: $0) ? $0 : nil } }
                let signed = signer != nil
                guard signed else {
                    return fail("bad_signature", seq: cp.seq, line: nil, "bad signature on the checkpoint at seq \(cp.seq)" + (cp.gateway.map { " by \($0)" } ?? "")
                                    + (live ? "" : " in \(file.name)"))
                }
                if let gateway = cp.gateway, let signer {
                    report.signers = (report.signers ?? [:]).merging([gateway: 1], uniquingKeysWith: +)
                    let hex = signer.rawRepresentation.hex
                    if report.keys?[gateway]?.contains(hex) != true { report.keys = (report.keys ?? [:]).merging([gateway: [hex]]) { $0 + $1 } }
                }
                guard cp.seq <= report.lastSeq else {
                    return fail("truncated", seq: cp.seq, line: nil,
                                "truncated: a checkpoint covers seq \(cp.seq) but " + (live ? "the log" : file.name) + " ends at seq \(report.lastSeq)")
                }
                guard walk.hashes[cp.seq] == cp.entryHash else {
                    return fail("checkpoint_mismatch", seq: cp.seq, line: nil,
                                "the entry at seq \(cp.seq) is not the one the checkpoint signed: " + (live ? "the log" : file.name) + " was rewritten")
                }
                lastCheckpoint = max(lastCheckpoint, cp.seq)
            }
            if !live {
                // A sealed segment ends signed; without that, cutting its end (with the
                // live log still empty) or removing its checkpoints would go unseen.
                guard walk.entries > 0, checkpoints.last?.seq == report.lastSeq else {
                    return fail("missing_checkpoint", seq: report.lastSeq, line: nil,
                                "\(file.name) does not end with a signed checkpoint of its last entry (seq \(report.lastSeq)): it was cut short or its checkpoints were removed")
                }
                segment.sealed = AuditLayout.isReadOnly(file.path)
            }
            segment.ok = true
            report.segments.append(segment)
        }

        // An export of a shared chain has no such rule: each gateway signs after
        // its own `checkpointEvery` entries, and one killed early may have signed none.
        let shared = FileManager.default.fileExists(atPath: stateDir + "/" + AuditBundle.keysFile) || report.signers != nil
        if let every = checkpointEvery, !shared, report.lastSeq >= every, lastCheckpoint < every {
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
}
