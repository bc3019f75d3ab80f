import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The filters of `query` and `export`.
public struct AuditFilter: Sendable {
    public var runId: String?
    public var actor: String?
    /// Exact, or a family: `run.*`.
    public var action: String?
    /// ISO 8601, compared as text.
    public var since: String?
    public var until: String?
    /// Only entries with a lower seq (the next page of a newest-first query).
    public var before: Int?
    /// Only entries written by this gateway (a chain several gateways share).
    public var gateway: String?

    /// (what a matching canonical line contains, the key that shows the line has the field in canonical form)
    private let needles: [(value: [UInt8], key: [UInt8])]

    public init(runId: String? = nil, actor: String? = nil, action: String? = nil, since: String? = nil, until: String? = nil, before: Int? = nil,
                gateway: String? = nil) {
        (self.runId, self.actor, self.action, self.since, self.until, self.before) = (runId, actor, action, since, until, before)
        self.gateway = gateway
        var needles: [(value: [UInt8], key: [UInt8])] = []
        if let runId { needles.append((Array(("\"runId\":" + CanonicalJSON.string(runId)).utf8), Array("\"runId\":".utf8))) }
        if let actor { needles.append((Array(("\"actor\":" + CanonicalJSON.string(actor)).utf8), Array("\"actor\":".utf8))) }
        if let gateway { needles.append((Array(("\"gateway\":" + CanonicalJSON.string(gateway)).utf8), Array("\"gateway\":".utf8))) }
        if let action {
            let value = action.hasSuffix(".*") ? String(CanonicalJSON.string(String(action.dropLast())).dropLast()) : CanonicalJSON.string(action)
            needles.append((Array(("\"action\":" + value).utf8), Array("\"action\":".utf8)))
        }
        self.needles = needles
    }

    func matches(_ e: AuditEntry) -> Bool {
        if let before, e.seq >= before { return false }
        if let runId, e.runId != runId { return false }
        if let actor, e.actor != actor { return false }
        if let gateway, e.gateway != gateway { return false }
        if let action, e.action != action, !(action.hasSuffix(".*") && e.action.hasPrefix(action.dropLast())) { return false }
        if let since, e.timestamp < since { return false }
        if let until, e.timestamp >= until { return false }
        return true
    }

    /// false when the line's bytes already rule it out, so that a filter that
    /// matches rarely costs a substring search per line, not a JSON decode. A line
    /// written canonically that lacks the field's exact text cannot match; one
    /// not in canonical form is left to the decode.
    func mayMatch(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        for n in needles where !Self.contains(line, n.value) && Self.contains(line, n.key) { return false }
        return true
    }

    private static func contains(_ hay: UnsafeBufferPointer<UInt8>, _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, hay.count >= needle.count else { return false }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == first {
                var j = 1
                while j < needle.count, hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }
}

/// Reading the chain for people: newest first from the end (query), or oldest
/// first from the start (export), across sealed segments and the live log.
enum AuditQuery {
    /// Matching entries, newest first. Reads backwards from the end of the live
    /// log (or from the `before` cursor's line, found by bisecting the file it is
    /// in) and stops at `limit` matches: a page costs what it reads, not the log's
    /// size. A filter that matches rarely reads further back, up to the whole chain.
    static func newestFirst(_ layout: AuditLayout, _ filter: AuditFilter, limit: Int) -> (entries: [AuditEntry], bytesRead: Int) {
        var out: [AuditEntry] = []
        var bytesRead = 0
        var cursorPlaced = filter.before == nil
        let decoder = JSONDecoder()
        for file in layout.files().reversed() where out.count < limit {
            guard let r = AuditReader(path: file.path) else { continue }
            defer { bytesRead += r.bytesRead }
            var end = r.endOfLastLine(before: r.size)
            if let before = filter.before, !cursorPlaced {
                // Files wholly at or after the cursor are skipped on their first line alone.
                guard let first = r.line(at: 0).flatMap({ $0.withUnsafeBufferPointer(AuditReader.seq(of:)) }), first < before else { continue }
                end = offset(ofFirstSeqAtLeast: before, in: r, end: end)
                cursorPlaced = true
            }
            r.linesBackward(endingAt: end) { line, _ in
                guard filter.mayMatch(line), let e = try? decoder.decode(AuditEntry.self, from: Data(line)), filter.matches(e) else { return true }
                out.append(e)
                return out.count < limit
            }
        }
        return (out, bytesRead)
    }

    /// The start of the first line whose seq is at least `target` (`end` when
    /// none is): seqs rise through a file, so the file is bisected by byte offset,
    /// a few kilobytes a probe, instead of being read or indexed.
    static func offset(ofFirstSeqAtLeast target: Int, in r: AuditReader, end: Int) -> Int {
        var lo = 0, hi = end
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            let start = r.lineStart(atOrAfter: mid)
            guard start < end else { hi = mid; continue }
            // A line whose seq cannot be read counts as before the cursor: the page then
            // starts later, and `matches` drops what is at or after the cursor.
            let seq = r.line(at: start).flatMap { $0.withUnsafeBufferPointer(AuditReader.seq(of:)) }
            if seq.map({ $0 < target }) ?? true { lo = mid + 1 } else { hi = mid }
        }
        return min(r.lineStart(atOrAfter: lo), end)
    }
}

/// Matching entries oldest first, a page at a time, so an export streams rather
/// than holding months of log in memory. The files are those of the moment the
/// scanner is made: the live log is opened first, so a rotation meanwhile neither
/// loses nor repeats its entries.
final class AuditScanner {
    private let filter: AuditFilter
    private var pending: [AuditLayout.File]
    private var live: AuditReader?
    private var current: AuditReader?
    private var offset = 0
    private let decoder = JSONDecoder()

    init(_ layout: AuditLayout, _ filter: AuditFilter) {
        self.filter = filter
        let live = AuditReader(path: layout.live.path)
        self.live = live
        pending = layout.segments().filter { file in
            guard let live else { return true }
            var st = stat()
            return stat(file.path, &st) != 0 || UInt64(st.st_ino) != live.inode
        }
    }

    /// Up to `max` matching entries; empty once the chain is done.
    func next(max: Int = 4096) -> [AuditEntry] {
        var out: [AuditEntry] = []
        while out.count < max {
            if current == nil {
                if !pending.isEmpty {
                    current = AuditReader(path: pending.removeFirst().path)
                } else if let live {
                    current = live
                    self.live = nil
                } else {
                    break
                }
                offset = 0
                continue
            }
            var done = true
            current?.linesForward(from: offset) { line, start in
                offset = start + line.count + 1
                if filter.mayMatch(line), let e = try? decoder.decode(AuditEntry.self, from: Data(line)), filter.matches(e) { out.append(e) }
                if out.count >= max { done = false }
                return done
            }
            if done { current = nil }
        }
        return out
    }
}

extension AuditVerifier {
    /// Entries matching the filters, newest first (AuditQuery.newestFirst).
    public static func query(stateDir: String, runId: String? = nil, actor: String? = nil, action: String? = nil,
                             since: String? = nil, until: String? = nil, before: Int? = nil, limit: Int = 100) throws -> [AuditEntry] {
        query(stateDir: stateDir, AuditFilter(runId: runId, actor: actor, action: action, since: since, until: until, before: before), limit: limit)
    }

    public static func query(stateDir: String, _ filter: AuditFilter, limit: Int = 100) -> [AuditEntry] {
        AuditQuery.newestFirst(AuditLayout(stateDir: stateDir), filter, limit: limit).entries
    }

    /// Calls `body` with pages of matching entries, oldest first, across every
    /// segment and the live log.
    public static func export(stateDir: String, filter: AuditFilter, _ body: ([AuditEntry]) throws -> Void) rethrows {
        let scanner = AuditScanner(AuditLayout(stateDir: stateDir), filter)
        while true {
            let page = scanner.next()
            if page.isEmpty { return }
            try body(page)
        }
    }
}
