import Crypto
import Foundation

/// Checks the chain several gateways share, in the database: every hash and
/// link from seq 1 to the head row, every checkpoint against the keys its
/// gateway recorded, and the head row against the last entry (entries cut from
/// the end leave the head pointing past them).
extension AuditVerifier {
    /// - Parameter head: the last entry the asking gateway wrote, when a running
    ///   gateway asks: entries removed since its last checkpoint are noticed too.
    /// - Parameter trusted: public keys by gateway from copies kept elsewhere
    ///   (`--keys`): checkpoints must then be signed by one of these, not
    ///   merely by a key the database records.
    public static func verify(database engine: any StoreEngine, head: (seq: Int, hash: String)? = nil,
                              trusted: [String: [Curve25519.Signing.PublicKey]]? = nil, page: Int = 5000) async throws -> Report {
        // Keys, checkpoints and the head in one snapshot, before the entries: the
        // chain only grows, so everything they name is there when the walk reaches it.
        let state = try await SharedAuditReader.state(engine)
        let checkpoints = state.checkpoints
        var report = Report(ok: true, entries: 0, checkpoints: checkpoints.count, lastSeq: 0, firstBreak: nil)
        var segment = Segment(file: "database", firstSeq: nil, lastSeq: 0, entries: 0, checkpoints: checkpoints.count, sealed: false, ok: false)
        func broken(_ kind: String, seq: Int?, _ message: String) -> Report {
            var r = report
            r.ok = false
            r.firstBreak = Break(kind: kind, seq: seq, line: nil, file: "database", message: message)
            r.segments = [segment]
            return r
        }
        guard let chainHead = state.head else {
            return broken("truncated", seq: nil, "the chain's head row is missing from the database")
        }
        if state.maxSeq > chainHead.seq {
            return broken("truncated", seq: chainHead.seq,
                          "the chain's head is seq \(chainHead.seq) but entries run to seq \(state.maxSeq): the head row was moved back")
        }
        let recorded: [String: [Curve25519.Signing.PublicKey]]
        do { recorded = try AuditBundle.publicKeys(state.keys) } catch {
            return broken("bad_signature", seq: nil, "\(error)")
        }
        let wanted = Set(checkpoints.map(\.seq) + (head.map { [$0.seq] } ?? []))
        var hashes: [Int: String] = [:]
        var prev = Array(AuditEntry.genesis.utf8)
        var after = 0
        while after < chainHead.seq {
            let rows = try await SharedAuditReader.lines(engine, after: after, through: chainHead.seq, page: page)
            if rows.isEmpty { break }
            let walk = ChainWalk.run(Data(rows.map(\.line).joined(separator: "\n").utf8), firstSeq: report.lastSeq + 1, prev: prev,
                                     wanted: wanted) { _ in "in the database" }
            report.entries += walk.entries
            if walk.entries > 0 { report.lastSeq = walk.lastSeq }
            segment.entries = report.entries
            segment.firstSeq = report.entries > 0 ? 1 : nil
            segment.lastSeq = report.lastSeq
            if let b = walk.failure { return broken(b.kind, seq: b.seq, b.message) }
            prev = walk.lastHash
            hashes.merge(walk.hashes) { a, _ in a }
            // The walk checked that the lines' seqs run on without a gap; the
            // column must agree with them, or the next page would start elsewhere.
            guard report.lastSeq == rows.last?.seq, report.lastSeq > after else {
                return broken("unreadable", seq: after + 1, "the entries after seq \(after) in the database do not match their rows' seq")
            }
            after = report.lastSeq
        }
        if report.lastSeq < chainHead.seq {
            return broken("truncated", seq: chainHead.seq,
                          "truncated: the chain's head is seq \(chainHead.seq) but the entries end at seq \(report.lastSeq)")
        }
        if chainHead.seq > 0, String(decoding: prev, as: UTF8.self) != chainHead.hash {
            return broken("checkpoint_mismatch", seq: chainHead.seq, "the entry at seq \(chainHead.seq) is not the one the chain's head names")
        }
        var signers: [String: Int] = [:]
        var signedWith: [String: Set<String>] = [:]
        for cp in checkpoints {
            let gateway = cp.gateway ?? ""
            guard let candidates = (trusted ?? recorded)[gateway], !candidates.isEmpty else {
                return broken("bad_signature", seq: cp.seq, "the checkpoint at seq \(cp.seq) names gateway \(gateway), which has no "
                                  + (trusted == nil ? "public key recorded" : "trusted key"))
            }
            guard candidates.contains(where: { cp.verify(with: $0) }) else {
                return broken("bad_signature", seq: cp.seq, "bad signature on the checkpoint at seq \(cp.seq) by \(gateway)")
            }
            guard cp.seq <= report.lastSeq else {
                return broken("truncated", seq: cp.seq, "truncated: a checkpoint covers seq \(cp.seq) but the chain ends at seq \(report.lastSeq)")
            }
            guard hashes[cp.seq] == cp.entryHash else {
                return broken("checkpoint_mismatch", seq: cp.seq, "the entry at seq \(cp.seq) is not the one \(gateway)'s checkpoint signed: the chain was rewritten")
            }
            signers[gateway, default: 0] += 1
            if let key = candidates.first(where: { cp.verify(with: $0) }) { signedWith[gateway, default: []].insert(key.rawRepresentation.hex) }
        }
        // No count of checkpoints is required: each gateway signs after its own
        // `checkpointEvery` entries, and one killed early may have signed none.
        if let head, head.seq > 0 {
            if head.seq > report.lastSeq {
                return broken("truncated", seq: head.seq, "truncated: this gateway wrote up to seq \(head.seq) but the chain ends at seq \(report.lastSeq)")
            }
            if hashes[head.seq] != head.hash {
                return broken("checkpoint_mismatch", seq: head.seq, "the entry at seq \(head.seq) is not the one this gateway wrote")
            }
        }
        segment.ok = true
        report.segments = [segment]
        report.signers = signers
        report.keys = signedWith.mapValues { $0.sorted() }
        return report
    }
}
