import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the writer needs from an existing chain to continue it, read from the
/// ends of the files only: start-up costs the same on a log of a hundred
/// entries and on one of millions.
struct AuditTail {
    var head: (seq: Int, hash: String) = (0, AuditEntry.genesis)
    /// The seq the live log starts at (`head.seq + 1` while it is empty).
    var liveFirstSeq = 1
    var liveBytes = 0
    var lastCheckpointSeq = 0
    /// The highest sealed segment's number, 0 when there is none.
    var lastSegment = 0
    /// Bytes read to find all this.
    var bytesRead = 0
    /// Set when a torn end was cut off: the writer records it as `audit.repaired`.
    var repair: [String: String]?

    /// A torn last line (a write cut short by a crash, so never reported as
    /// written) is cut off, and its bytes kept in `audit.torn`; when it is in fact
    /// a whole entry that links, it is kept and only its newline added. A last
    /// complete line that is not a sound entry stops the start: continuing the
    /// chain from it would bury the damage.
    static func read(_ layout: AuditLayout, logger: Logger) throws -> AuditTail {
        try layout.finishInterruptedRotation()
        var tail = AuditTail()
        let segments = layout.segments()
        tail.lastSegment = segments.last?.segment ?? 0
        var readers: [AuditReader] = []
        func reader(_ path: String) -> AuditReader? {
            guard let r = AuditReader(path: path) else { return nil }
            readers.append(r)
            return r
        }
        // The head the live log continues: the last sealed segment's last entry.
        var prior: (seq: Int, hash: String) = (0, AuditEntry.genesis)
        var priorCheckpoint = 0
        if let last = segments.last {
            if let r = reader(last.path), let e = try lastEntry(r, end: r.endOfLastLine(before: r.size)) { prior = (seq: e.seq, hash: e.entryHash) }
            if let r = reader(last.checkpoints) { priorCheckpoint = lastCheckpoint(r, end: r.endOfLastLine(before: r.size))?.seq ?? 0 }
        }

        let live = layout.live
        tail.head = prior
        tail.liveFirstSeq = prior.seq + 1
        if let r = reader(live.path), r.size > 0 {
            var end = r.endOfLastLine(before: r.size)
            var head = try lastEntry(r, end: end).map { (seq: $0.seq, hash: $0.entryHash) } ?? prior
            if end < r.size {
                let torn = r.read(at: end, count: min(r.size - end, 1 << 20))
                if r.size - end <= 1 << 20, let e = try? JSONDecoder().decode(AuditEntry.self, from: Data(torn)),
                   e.computedHash == e.entryHash, e.seq == head.seq + 1, e.prevHash == head.hash {
                    try appendNewline(live.path)
                    head = (e.seq, e.entryHash)
                    end = r.size + 1
                    logger.warning("the audit log's last entry had no newline; it is whole and links, so it is kept", metadata: ["seq": "\(e.seq)"])
                } else {
                    try cut(live.path, at: end, keeping: torn, in: layout.stateDir)
                    tail.repair = ["file": live.name, "droppedBytes": "\(r.size - end)", "keptIn": "audit.torn",
                                   "reason": "a torn last line (a write cut short): it was never reported as written"]
                    logger.warning("cut a torn last line off the audit log", metadata: ["bytes": "\(r.size - end)", "keptIn": "audit.torn"])
                }
            }
            tail.liveBytes = end
            tail.head = head
            if end > 0 {
                tail.liveFirstSeq = r.line(at: 0).flatMap { $0.withUnsafeBufferPointer(AuditReader.seq(of:)) } ?? head.seq
            }
        }

        tail.lastCheckpointSeq = priorCheckpoint
        if let r = reader(live.checkpoints), r.size > 0 {
            let end = r.endOfLastLine(before: r.size)
            if end < r.size {
                // A checkpoint cut short was never written as far as anyone knows; the next one replaces it.
                guard truncate(live.checkpoints, off_t(end)) == 0 else { throw AuditError.io("cannot repair the torn end of \(live.checkpoints)") }
                logger.warning("cut a torn last line off the audit checkpoints", metadata: ["bytes": "\(r.size - end)"])
            }
            if let cp = lastCheckpoint(r, end: end) { tail.lastCheckpointSeq = cp.seq }
        }
        tail.bytesRead = readers.reduce(0) { $0 + $1.bytesRead }
        return tail
    }

    private static func lastEntry(_ r: AuditReader, end: Int) throws -> AuditEntry? {
        var last: [UInt8]?
        r.linesBackward(endingAt: end) { line, _ in
            last = Array(line)
            return false
        }
        guard let last else { return nil }
        guard let e = try? JSONDecoder().decode(AuditEntry.self, from: Data(last)) else {
            throw AuditError.io("the last entry of \(r.path) is not an audit entry; run `skelm audit verify`")
        }
        guard e.computedHash == e.entryHash else {
            throw AuditError.io("the last entry of \(r.path) (seq \(e.seq)) does not match its hash; run `skelm audit verify`")
        }
        return e
    }

    private static func lastCheckpoint(_ r: AuditReader, end: Int) -> AuditCheckpoint? {
        var last: AuditCheckpoint?
        r.linesBackward(endingAt: end) { line, _ in
            last = try? JSONDecoder().decode(AuditCheckpoint.self, from: Data(line))
            return false
        }
        return last
    }

    private static func appendNewline(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw AuditError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var nl = AuditReader.newline
        guard write(fd, &nl, 1) == 1, fsync(fd) == 0 else { throw AuditError.io("cannot complete the last line of \(path)") }
    }

    /// Cuts the log at `end`, after saving what is cut (up to 1 MiB) for whoever
    /// investigates the crash.
    private static func cut(_ path: String, at end: Int, keeping torn: [UInt8], in stateDir: String) throws {
        let saved = stateDir + "/audit.torn"
        let fd = open(saved, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        if fd >= 0 {
            let record = torn + [AuditReader.newline]
            _ = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
            close(fd)
        }
        guard truncate(path, off_t(end)) == 0 else { throw AuditError.io("cannot repair the torn end of \(path)") }
    }
}
