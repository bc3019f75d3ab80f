import Foundation

/// Checks the hashes and links of one file of the chain, continuing from where
/// the chain stood before it (`firstSeq`, `prev`).
enum ChainWalk {
    struct Result {
        var entries = 0
        var lastSeq: Int
        var lastHash: [UInt8]
        /// The hashes of the `wanted` seqs (checkpoints, the writer's head).
        var hashes: [Int: String] = [:]
        var failure: AuditVerifier.Break?
    }

    /// - Parameter place: how a message names line n (`line 12`, `line 12 of segments/000001.jsonl`).
    static func run(_ data: Data, firstSeq: Int, prev start: [UInt8], wanted: Set<Int>, place: (Int) -> String) -> Result {
        // A file as the writer wrote it is verified in parallel; anything else (and
        // any break) goes through the sequential pass below, which names it.
        let parallel = data.withUnsafeBytes { raw in
            ParallelVerify.run(raw.bindMemory(to: UInt8.self), wanted: wanted,
                               parts: max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)), firstSeq: firstSeq, prev: start)
        }
        if let parallel {
            return Result(entries: parallel.entries, lastSeq: parallel.lastSeq, lastHash: parallel.lastHash, hashes: parallel.hashes)
        }
        var result = Result(lastSeq: firstSeq - 1, lastHash: start)
        func broken(_ kind: String, seq: Int?, line: Int?, _ message: String) {
            result.failure = AuditVerifier.Break(kind: kind, seq: seq, line: line, file: nil, message: message)
        }
        var prevBytes = start
        var expected = firstSeq
        var lineNo = 0
        var scratch: [UInt8] = []
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let all = raw.bindMemory(to: UInt8.self)
            var start = 0
            while start < all.count, result.failure == nil {
                var end = start
                while end < all.count, all[end] != 10 { end += 1 }
                lineNo += 1
                defer { start = end + 1 }
                if end == start { continue }
                let line = UnsafeBufferPointer(rebasing: all[start..<end])
                // The fast path reads a line exactly as the writer wrote it; anything else
                // (and every failure) goes through the full decode, which names the break.
                if FastLine.check(line, expectedSeq: expected, prev: &prevBytes, scratch: &scratch) {
                    if wanted.contains(expected) { result.hashes[expected] = String(decoding: prevBytes, as: UTF8.self) }
                    result.entries += 1
                    result.lastSeq = expected
                    expected += 1
                    continue
                }
                let prev = String(decoding: prevBytes, as: UTF8.self)
                guard let e = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)) else {
                    broken("unreadable", seq: expected, line: lineNo, "\(place(lineNo)) is not an audit entry")
                    return
                }
                if e.seq != expected {
                    broken("seq_gap", seq: e.seq, line: lineNo, "gap in seq at \(place(lineNo)): expected \(expected), found \(e.seq)")
                } else if e.computedHash != e.entryHash {
                    broken("bad_hash", seq: e.seq, line: lineNo, "bad hash at seq \(e.seq) (\(place(lineNo))): the entry was altered after it was written")
                } else if e.prevHash != prev {
                    broken("broken_link", seq: e.seq, line: lineNo,
                           "broken link at seq \(e.seq) (\(place(lineNo))): prevHash does not match entry \(e.seq - 1)")
                } else {
                    if wanted.contains(e.seq) { result.hashes[e.seq] = e.entryHash }
                    prevBytes = Array(e.entryHash.utf8)
                    result.entries += 1
                    result.lastSeq = e.seq
                    expected += 1
                }
            }
        }
        result.lastHash = prevBytes
        return result
    }
}
