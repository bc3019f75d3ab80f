@testable import ControlPlane
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How a directory watcher's events on one path collapse into a batch, and
/// how inotify's read buffer is parsed: no kernel involved.
@Suite("File event batches")
struct FileEventCollectorTests {
    func batch(filter: String? = nil, maxPaths: Int = 1000, _ feed: (inout FileEventCollector) -> Void) -> FileEventBatch {
        var collector = FileEventCollector(maxPaths: maxPaths, filter: filter)
        feed(&collector)
        return collector.take().batch
    }

    @Test("repeated events on one path collapse", arguments: [
        ([FileEvent.Kind.created, .modified, .modified], [FileEvent.Kind.created]),
        ([.created, .deleted], []),
        ([.created, .modified, .movedFrom], []),
        ([.movedTo, .modified, .deleted], []),
        ([.modified, .modified, .modified], [.modified]),
        ([.modified, .deleted], [.deleted]),
        ([.deleted, .created], [.created]),
        ([.deleted, .created, .modified], [.created]),
    ])
    func collapse(_ kinds: [FileEvent.Kind], _ expected: [FileEvent.Kind]) {
        let result = batch { c in for kind in kinds { c.record("a.txt", kind) } }
        #expect(result.events.map(\.kind) == expected)
        #expect(result.events.allSatisfy { $0.path == "a.txt" })
    }

    @Test("a created-then-deleted path leaves an empty batch, which the watcher does not emit")
    func emptyBatch() {
        #expect(batch { $0.record("x", .created); $0.record("x", .deleted) }.isEmpty)
    }

    @Test("a rename inside the watch is one moved event, paired by cookie")
    func pairedMove() {
        let result = batch { c in
            c.movedFrom("a.txt", cookie: 7)
            c.movedFrom("other", cookie: 8)
            #expect(c.movedTo("b.txt", cookie: 7) == "a.txt")
        }
        #expect(result.events == [FileEvent("other", .movedFrom), FileEvent("b.txt", .moved(from: "a.txt"))])
    }

    @Test("a file created then renamed is created under its new name (write, then rename into place)")
    func createdThenRenamed() {
        let result = batch { c in
            c.record(".tmp-123", .created)
            c.record(".tmp-123", .modified)
            c.movedFrom(".tmp-123", cookie: 1)
            c.movedTo("data.csv", cookie: 1)
        }
        #expect(result.events == [FileEvent("data.csv", .created)])
    }

    @Test("renamed then deleted is the original deleted; renamed back is nothing")
    func renameChains() {
        let deleted = batch { c in
            c.movedFrom("a", cookie: 1)
            c.movedTo("b", cookie: 1)
            c.record("b", .deleted)
        }
        #expect(deleted.events == [FileEvent("a", .deleted)])
        let back = batch { c in
            c.movedFrom("a", cookie: 1)
            c.movedTo("b", cookie: 1)
            c.movedFrom("b", cookie: 2)
            c.movedTo("a", cookie: 2)
        }
        #expect(back.isEmpty)
    }

    @Test("an unpaired move is movedFrom or movedTo; a directory moved out is returned so its watches go")
    func unpairedMoves() {
        var c = FileEventCollector(maxPaths: 10, filter: nil)
        c.movedTo("in.txt", cookie: 3)
        c.movedFrom("sub", cookie: 4, isDirectory: true)
        let (batch, movedOut) = c.take()
        #expect(batch.events == [FileEvent("in.txt", .movedTo), FileEvent("sub", .movedFrom, isDirectory: true)])
        #expect(movedOut == ["sub"])
        #expect(c.isEmpty)
    }

    @Test("the filter matches base names with fnmatch; a rename across it reads as the accepted end's")
    func filter() {
        let result = batch(filter: "*.csv") { c in
            c.record("a.txt", .created)
            c.record("sub/b.csv", .created)
            c.record(".hidden.csv", .created)
            c.movedFrom("c.part", cookie: 1)
            c.movedTo("c.csv", cookie: 1)
            c.movedFrom("d.csv", cookie: 2)
            c.movedTo("d.csv.bak", cookie: 2)
            c.movedFrom("e.csv", cookie: 3)
            c.movedTo("f.csv", cookie: 3)
        }
        #expect(result.events == [FileEvent("sub/b.csv", .created), FileEvent("c.csv", .movedTo),
                                  FileEvent("d.csv", .movedFrom), FileEvent("f.csv", .moved(from: "e.csv"))])
    }

    @Test("a batch holds at most maxPaths paths and counts the events left out")
    func bounded() {
        let result = batch(maxPaths: 3) { c in
            for i in 0..<5 { c.record("f\(i)", .created) }
            c.record("f0", .modified)     // a listed path still merges
        }
        #expect(result.events.map(\.path) == ["f1", "f2", "f0"])
        #expect(result.truncated)
        #expect(result.omitted == 2)
    }

    @Test("events are listed in the order of each path's last change")
    func order() {
        let result = batch { c in
            c.record("a", .modified)
            c.record("b", .modified)
            c.record("a", .modified)
        }
        #expect(result.events.map(\.path) == ["b", "a"])
    }

    @Test("inotify records are parsed whole, names without their NUL padding")
    func parse() {
        func record(wd: Int32, mask: UInt32, cookie: UInt32, name: String, len: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            withUnsafeBytes(of: wd.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: mask.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: cookie.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt32(len).littleEndian) { bytes += $0 }
            return bytes + Array(name.utf8) + [UInt8](repeating: 0, count: len - name.utf8.count)
        }
        let buffer = record(wd: 1, mask: UInt32(IN_CREATE), cookie: 0, name: "a.csv", len: 16)
            + record(wd: 2, mask: UInt32(IN_DELETE_SELF), cookie: 0, name: "", len: 0)
            + record(wd: 1, mask: UInt32(IN_MOVED_TO), cookie: 9, name: "ünï", len: 32)
            + record(wd: 1, mask: UInt32(IN_CREATE), cookie: 0, name: "cut", len: 16)
        let events = InotifyEvent.parse(buffer + [0, 0, 0], count: buffer.count - 4)
        #expect(events == [InotifyEvent(wd: 1, mask: UInt32(IN_CREATE), cookie: 0, name: "a.csv"),
                           InotifyEvent(wd: 2, mask: UInt32(IN_DELETE_SELF), cookie: 0, name: ""),
                           InotifyEvent(wd: 1, mask: UInt32(IN_MOVED_TO), cookie: 9, name: "ünï")])
        #expect(events[2].has(IN_MOVED_FROM | IN_MOVED_TO))
        #expect(!events[2].has(IN_CREATE))
    }
}
