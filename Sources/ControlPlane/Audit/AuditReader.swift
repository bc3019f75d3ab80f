import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reads an audit file by offset, so that start-up and queries touch only the
/// lines they need, not a log that has grown for months. `bytesRead` counts
/// what was read, which the tests hold against the file's size.
final class AuditReader {
    let path: String
    let size: Int
    /// Tells a file apart from the same file under a new name (a log sealed meanwhile).
    let inode: UInt64
    private let fd: Int32
    private(set) var bytesRead = 0
    static let newline = UInt8(ascii: "\n")

    init?(path: String) {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            return nil
        }
        size = Int(st.st_size)
        inode = UInt64(st.st_ino)
    }

    deinit { close(fd) }

    /// Up to `count` bytes at `offset` (fewer at the end of the file).
    func read(at offset: Int, count: Int) -> [UInt8] {
        let count = max(0, min(count, size - offset))
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        bytesRead += done
        return done == count ? out : Array(out[..<done])
    }

    /// The offset just past the last newline before `end`, or 0: where the
    /// complete lines end. Reads backwards a block at a time.
    func endOfLastLine(before end: Int) -> Int {
        var hi = end
        while hi > 0 {
            let lo = max(0, hi - 65536)
            let block = read(at: lo, count: hi - lo)
            if let i = block.lastIndex(of: Self.newline) { return lo + i + 1 }
            hi = lo
        }
        return 0
    }

    /// The offset of the first line starting at or after `offset` (the file's
    /// size when there is none).
    func lineStart(atOrAfter offset: Int) -> Int {
        guard offset > 0 else { return 0 }
        var lo = offset - 1
        while lo < size {
            let block = read(at: lo, count: 4096)
            if let i = block.firstIndex(of: Self.newline) { return lo + i + 1 }
            lo += block.count
        }
        return size
    }

    /// The line starting at `offset`, without its newline; nil when no newline
    /// ends it (a torn end, or past the end).
    func line(at offset: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var at = offset
        while at < size {
            let block = read(at: at, count: 4096)
            if let i = block.firstIndex(of: Self.newline) { return out + block[..<i] }
            out += block
            at += block.count
        }
        return nil
    }

    /// Complete lines ending at or before `end` (an offset just past a newline),
    /// last first, each with the offset where it starts; empty lines are skipped.
    /// Stops when `visit` returns false.
    func linesBackward(endingAt end: Int, _ visit: (UnsafeBufferPointer<UInt8>, Int) -> Bool) {
        guard end > 0 else { return }
        var bufStart = max(0, end - 65536)
        var buf = read(at: bufStart, count: end - bufStart)
        var lineEnd = end - 1   // the current line's newline, exclusive of it
        var searchFrom = lineEnd - 1
        while true {
            var found: Int?
            if searchFrom >= bufStart {
                found = buf.withUnsafeBufferPointer { b -> Int? in
                    var i = searchFrom - bufStart
                    while i >= 0 {
                        if b[i] == Self.newline { return bufStart + i }
                        i -= 1
                    }
                    return nil
                }
            }
            if found == nil, bufStart > 0 {
                let newStart = max(0, bufStart - 65536)
                buf = read(at: newStart, count: bufStart - newStart) + buf[..<(lineEnd - bufStart)]
                searchFrom = bufStart - 1
                bufStart = newStart
                continue
            }
            let lineStart = (found ?? -1) + 1
            if lineEnd > lineStart {
                let keepGoing = buf.withUnsafeBufferPointer { b in
                    visit(UnsafeBufferPointer(rebasing: b[(lineStart - bufStart)..<(lineEnd - bufStart)]), lineStart)
                }
                if !keepGoing { return }
            }
            guard let nl = found else { return }
            lineEnd = nl
            searchFrom = nl - 1
        }
    }

    /// Complete lines from `offset` (a line start) on, first first, each with the
    /// offset where it starts; a torn end is left out. Stops when `visit` returns false.
    func linesForward(from offset: Int = 0, _ visit: (UnsafeBufferPointer<UInt8>, Int) -> Bool) {
        var at = offset
        var carry: [UInt8] = []
        while at < size {
            let chunk = read(at: at, count: 1 << 20)
            if chunk.isEmpty { return }
            let blockStart = at - carry.count
            at += chunk.count
            let block = carry + chunk
            var start = 0
            let stop = block.withUnsafeBufferPointer { b -> Bool in
                for i in 0..<b.count where b[i] == Self.newline {
                    if i > start, !visit(UnsafeBufferPointer(rebasing: b[start..<i]), blockStart + start) { return true }
                    start = i + 1
                }
                return false
            }
            if stop { return }
            carry = Array(block[start...])
        }
    }

    /// The seq a line claims, read without decoding when it is canonical.
    static func seq(of line: UnsafeBufferPointer<UInt8>) -> Int? {
        if let s = FastLine.lastIndex(of: FastLine.seqKey, in: line) {
            var seq = 0, i = s + FastLine.seqKey.count
            // At most 18 digits: a longer (edited) seq must not overflow, and trap, the parse.
            while i < line.count, line[i] >= 48, line[i] <= 57, i - (s + FastLine.seqKey.count) < 18 { seq = seq * 10 + Int(line[i] - 48); i += 1 }
            let more = i < line.count && line[i] >= 48 && line[i] <= 57
            if i > s + FastLine.seqKey.count, !more { return seq }
        }
        return (try? JSONDecoder().decode(AuditEntry.self, from: Data(line)))?.seq
    }
}
