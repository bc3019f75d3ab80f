import Dispatch
import Synchronization

/// The fast path of `AuditVerifier` over several chunks of the log at once.
///
/// Each chunk checks its own lines' hashes and links, starting from what its
/// first line claims (its seq and prevHash); the chunks are then stitched: each
/// claim must be exactly where the chunk before it ended. SHA-256 of every line
/// is the cost, and it divides across cores.
enum ParallelVerify {
    struct Result: Sendable {
        var entries: Int
        var lastSeq: Int
        var lastHash: [UInt8]
        var hashes: [Int: String]
    }

    private struct Chunk: Sendable {
        var ok = false
        var empty = true
        var firstSeq = 0
        var firstPrev: [UInt8] = []
        var lastSeq = 0
        var lastHash: [UInt8] = []
        var entries = 0
        var hashes: [Int: String] = [:]
    }

    /// nil when any line is not a plain canonical one or anything fails to link:
    /// the caller's sequential pass then says what and where.
    /// `firstSeq` and `prev`: where the chain stands before this file (a later
    /// segment, or the live log after segments, continues it).
    static func run(_ all: UnsafeBufferPointer<UInt8>, wanted: Set<Int>, parts: Int,
                    firstSeq: Int = 1, prev start: [UInt8] = Array(AuditEntry.genesis.utf8)) -> Result? {
        let empty = Result(entries: 0, lastSeq: firstSeq - 1, lastHash: start, hashes: [:])
        guard let base = all.baseAddress, all.count > 0 else { return empty }
        // Chunk boundaries at line starts.
        var bounds = [0]
        for p in 1..<max(parts, 1) {
            var i = Swift.max(all.count * p / parts, bounds.last!)
            while i > 0, i < all.count, all[i - 1] != 10 { i += 1 }
            bounds.append(i)
        }
        bounds.append(all.count)
        // Read-only for the whole call; each chunk only reads its own range.
        nonisolated(unsafe) let bytes = UnsafeBufferPointer(start: base, count: all.count)
        let ranges = bounds
        let results = Mutex([Chunk](repeating: Chunk(), count: ranges.count - 1))
        DispatchQueue.concurrentPerform(iterations: ranges.count - 1) { c in
            let chunk = verify(bytes, from: ranges[c], to: ranges[c + 1], wanted: wanted)
            results.withLock { $0[c] = chunk }
        }
        let chunks = results.withLock { $0 }
        var result = empty
        var prev = start
        for chunk in chunks {
            guard chunk.ok else { return nil }
            if chunk.empty { continue }
            guard chunk.firstSeq == result.lastSeq + 1, chunk.firstPrev == prev else { return nil }
            result.entries += chunk.entries
            result.lastSeq = chunk.lastSeq
            result.hashes.merge(chunk.hashes) { a, _ in a }
            prev = chunk.lastHash
        }
        result.lastHash = prev
        return result
    }

    private static func verify(_ all: UnsafeBufferPointer<UInt8>, from: Int, to: Int, wanted: Set<Int>) -> Chunk {
        var chunk = Chunk()
        var scratch: [UInt8] = []
        var prev: [UInt8] = []
        var expected = 0
        var start = from
        while start < to {
            var end = start
            while end < to, all[end] != 10 { end += 1 }
            defer { start = end + 1 }
            if end == start { continue }
            let line = UnsafeBufferPointer(rebasing: all[start..<end])
            if chunk.empty {
                guard let claim = FastLine.claimed(line) else { return chunk }
                chunk.empty = false
                chunk.firstSeq = claim.seq
                chunk.firstPrev = claim.prev
                prev = claim.prev
                expected = claim.seq
            }
            guard FastLine.check(line, expectedSeq: expected, prev: &prev, scratch: &scratch) else { return chunk }
            if wanted.contains(expected) { chunk.hashes[expected] = String(decoding: prev, as: UTF8.self) }
            chunk.entries += 1
            chunk.lastSeq = expected
            expected += 1
        }
        chunk.lastHash = prev
        chunk.ok = true
        return chunk
    }
}
