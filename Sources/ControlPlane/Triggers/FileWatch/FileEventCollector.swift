#if canImport(Glibc)
import Glibc
#endif

/// The changes seen since the last batch, one entry per path.
///
/// A path's entry is its latest event, with these exceptions, so that a batch
/// says what changed rather than how:
/// - created (or moved in, or renamed here) then modified: still created;
/// - created (or moved in) then deleted (or moved out): dropped entirely;
/// - renamed A → B then B deleted or moved out: A deleted or moved out;
/// - created as A then renamed to B: B created (a temporary file renamed into
///   place reads as one create);
/// - deleted then created again: created.
///
/// A rename inside the watch arrives as IN_MOVED_FROM then IN_MOVED_TO with one
/// cookie; the first waits here for the second. One still unpaired when the
/// batch is taken left the watch: it is reported as `movedFrom`. A pair split
/// across two batches (the kernel queues both at once, so only a read buffer
/// ending between them could) reads as `movedFrom` then `movedTo`.
///
/// The filter applies to base names. A rename between a name it accepts and
/// one it does not reads as the accepted end's `movedTo` or `movedFrom`.
struct FileEventCollector {
    let maxPaths: Int
    /// An fnmatch(3) pattern for base names; nil accepts every name.
    let filter: String?

    private struct Entry {
        var kind: FileEvent.Kind
        var isDirectory: Bool
        var order: Int
    }

    private var entries: [String: Entry] = [:]
    /// IN_MOVED_FROM events waiting for their IN_MOVED_TO, by cookie.
    private var movesOut: [UInt32: (path: String, isDirectory: Bool, order: Int)] = [:]
    private var next = 0
    private var omitted = 0
    private var unwatched: [String] = []
    var overflowed = false

    init(maxPaths: Int, filter: String?) {
        self.maxPaths = max(1, maxPaths)
        self.filter = filter
    }

    var isEmpty: Bool { entries.isEmpty && movesOut.isEmpty && omitted == 0 && !overflowed && unwatched.isEmpty }

    /// A subdirectory whose watch could not be added.
    mutating func couldNotWatch(_ path: String) {
        if unwatched.count < maxPaths { unwatched.append(path) }
    }

    /// Whether the filter accepts the base name of `path`. fnmatch(3) with
    /// FNM_PERIOD, as a shell would: `*.csv` does not match `.hidden.csv`.
    func accepts(_ path: String) -> Bool {
        guard let filter else { return true }
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        return fnmatch(filter, name, FNM_PERIOD) == 0
    }

    /// created, modified, deleted, or an unpaired movedTo / movedFrom.
    mutating func record(_ path: String, _ kind: FileEvent.Kind, isDirectory: Bool = false) {
        guard accepts(path) else { return }
        merge(path, kind, isDirectory: isDirectory, order: nil)
    }

    mutating func movedFrom(_ path: String, cookie: UInt32, isDirectory: Bool = false) {
        guard movesOut.count < maxPaths else { return record(path, .movedFrom, isDirectory: isDirectory) }
        movesOut[cookie] = (path, isDirectory, next)
        next += 1
    }

    /// Pairs `path` with the IN_MOVED_FROM of the same cookie; returns where it
    /// came from when that was inside the watch.
    @discardableResult
    mutating func movedTo(_ path: String, cookie: UInt32, isDirectory: Bool = false) -> String? {
        guard let out = movesOut.removeValue(forKey: cookie) else {
            record(path, .movedTo, isDirectory: isDirectory)
            return nil
        }
        switch (accepts(out.path), accepts(path)) {
        case (true, true): rename(out.path, to: path, isDirectory: isDirectory)
        case (false, true): merge(path, .movedTo, isDirectory: isDirectory, order: nil)
        case (true, false): merge(out.path, .movedFrom, isDirectory: isDirectory, order: nil)
        case (false, false): break
        }
        return out.path
    }

    /// The batch so far, and the directories that were moved out of the watch
    /// (their watches must go); the collector starts empty again.
    mutating func take() -> (batch: FileEventBatch, movedOutDirectories: [String]) {
        var movedOut: [String] = []
        for out in movesOut.values.sorted(by: { $0.order < $1.order }) {
            if out.isDirectory { movedOut.append(out.path) }
            if accepts(out.path) { merge(out.path, .movedFrom, isDirectory: out.isDirectory, order: out.order) }
        }
        let events = entries.sorted { $0.value.order < $1.value.order }
            .map { FileEvent($0.key, $0.value.kind, isDirectory: $0.value.isDirectory) }
        let batch = FileEventBatch(events: events, omitted: omitted, overflowed: overflowed, unwatched: unwatched)
        self = FileEventCollector(maxPaths: maxPaths, filter: filter)
        return (batch, movedOut)
    }

    private mutating func merge(_ path: String, _ kind: FileEvent.Kind, isDirectory: Bool, order: Int?) {
        let merged: FileEvent.Kind?
        switch (entries[path]?.kind, kind) {
        case (nil, _):
            merged = kind
        case (.created?, .modified), (.movedTo?, .modified), (.moved?, .modified):
            merged = entries[path]?.kind
        case (.created?, .deleted), (.created?, .movedFrom), (.movedTo?, .deleted), (.movedTo?, .movedFrom):
            merged = nil
        case (.moved(let origin)?, .deleted), (.moved(let origin)?, .movedFrom):
            entries[path] = nil
            return merge(origin, kind, isDirectory: isDirectory, order: order)
        default:
            merged = kind
        }
        guard let merged else {
            entries[path] = nil
            return
        }
        store(path, merged, isDirectory: isDirectory, order: order)
    }

    private mutating func rename(_ from: String, to: String, isDirectory: Bool) {
        let prior = entries.removeValue(forKey: from)?.kind
        switch prior {
        case .created?, .movedTo?:
            store(to, prior!, isDirectory: isDirectory, order: nil)
        case .moved(let origin)? where origin == to:
            entries[to] = nil    // renamed back where it was: nothing changed
        case .moved(let origin)?:
            store(to, .moved(from: origin), isDirectory: isDirectory, order: nil)
        default:
            store(to, .moved(from: from), isDirectory: isDirectory, order: nil)
        }
    }

    private mutating func store(_ path: String, _ kind: FileEvent.Kind, isDirectory: Bool, order: Int?) {
        guard entries[path] != nil || entries.count < maxPaths else {
            omitted += 1
            return
        }
        entries[path] = Entry(kind: kind, isDirectory: isDirectory, order: order ?? next)
        if order == nil { next += 1 }
    }
}
