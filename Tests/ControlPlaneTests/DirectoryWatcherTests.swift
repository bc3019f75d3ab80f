@testable import ControlPlane
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The directory watcher on real directories. Waits are generous (10 s for a
/// batch) and nothing asserts that anything was fast.
@Suite("Directory watcher")
struct DirectoryWatcherTests {
    /// Reads a watcher's batches on a task of its own, so a test can wait for
    /// what it expects with a deadline.
    final class Recorder: Sendable {
        struct State {
            var batches: [FileEventBatch] = []
            var ended = false
            var events: [FileEvent] { batches.flatMap(\.events) }
            func saw(_ path: String) -> Bool { events.contains { $0.path == path } }
        }

        private let state = Mutex(State())

        init(_ watcher: DirectoryWatcher) {
            let batches = watcher.batches
            Task { [self] in
                for await batch in batches { state.withLock { $0.batches.append(batch) } }
                state.withLock { $0.ended = true }
            }
        }

        /// The state once `done` holds, or as it is after `timeout`.
        func wait(timeout: Duration = .seconds(10), until done: (State) -> Bool) async -> State {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let now = state.withLock { $0 }
                if done(now) { return now }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return state.withLock { $0 }
        }
    }

    /// A fresh directory, removed by `remove()`.
    struct TempDir {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("skelm-watch-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        func callAsFunction(_ rel: String) -> String { path + "/" + rel }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    /// open, write, close: one create (or modify) and one close-write.
    func write(_ path: String, _ text: String = "x", append: Bool = false) {
        let fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        precondition(fd >= 0, "open \(path): \(errno)")
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }

    func mkdir(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    @Test("a burst of 50 writes is one batch")
    func burst() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .seconds(2), maxDelay: .seconds(60))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        for i in 0..<50 { write(dir("f\(i).txt"), "line \(i)\n") }
        let state = await recorder.wait { $0.events.count >= 50 }
        #expect(state.batches.count == 1)
        #expect(Set(state.events) == Set((0..<50).map { FileEvent("f\($0).txt", .created) }))
    }

    @Test("create, modify, delete and rename kinds; created then deleted is dropped")
    func kinds() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        for name in ["m.txt", "d.txt", "mv.txt"] { write(dir(name)) }
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .seconds(2))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        write(dir("m.txt"), "more", append: true)
        unlink(dir("d.txt"))
        rename(dir("mv.txt"), dir("mv2.txt"))
        write(dir("new.txt"))
        write(dir("brief.txt"))
        unlink(dir("brief.txt"))
        write(dir("marker"))
        let expected: Set = [FileEvent("m.txt", .modified), FileEvent("d.txt", .deleted),
                             FileEvent("mv2.txt", .moved(from: "mv.txt")), FileEvent("new.txt", .created),
                             FileEvent("marker", .created)]
        let state = await recorder.wait { expected.isSubset(of: Set($0.events)) }
        #expect(Set(state.events) == expected)
    }

    @Test("a rename in from outside is create-like, one out is delete-like")
    func renameAcross() async throws {
        let dir = try TempDir(), outside = try TempDir()
        defer { dir.remove(); outside.remove() }
        write(outside("in.txt"))
        write(dir("out.txt"))
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .milliseconds(300))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        rename(outside("in.txt"), dir("in.txt"))
        rename(dir("out.txt"), outside("out.txt"))
        let expected: Set = [FileEvent("in.txt", .movedTo), FileEvent("out.txt", .movedFrom)]
        let state = await recorder.wait { expected.isSubset(of: Set($0.events)) }
        #expect(Set(state.events) == expected)
        #expect(state.events.first { $0.path == "in.txt" }?.isCreateLike == true)
        #expect(state.events.first { $0.path == "out.txt" }?.isDeleteLike == true)
    }

    @Test("recursive: existing and new subdirectories, directories moved in, within and out")
    func recursive() async throws {
        let dir = try TempDir(), outside = try TempDir()
        defer { dir.remove(); outside.remove() }
        try mkdir(dir("pre"))
        try mkdir(outside("bundle"))
        write(outside("bundle/x.txt"))
        let watcher = try DirectoryWatcher(directory: dir.path, recursive: true, debounce: .seconds(1))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)

        write(dir("pre/a.txt"))
        try mkdir(dir("new/deep/er"))
        write(dir("new/b.txt"))
        write(dir("new/deep/er/c.txt"))
        rename(outside("bundle"), dir("bundle"))
        let first: Set = [FileEvent("pre/a.txt", .created), FileEvent("new", .created, isDirectory: true),
                          FileEvent("new/b.txt", .created), FileEvent("new/deep", .created, isDirectory: true),
                          FileEvent("new/deep/er", .created, isDirectory: true), FileEvent("new/deep/er/c.txt", .created),
                          FileEvent("bundle", .movedTo, isDirectory: true), FileEvent("bundle/x.txt", .created)]
        var state = await recorder.wait { first.isSubset(of: Set($0.events)) }
        #expect(Set(state.events) == first)

        // Renamed inside: the watches follow. Moved out: its later changes are not reported.
        let seen = state.events.count
        rename(dir("new"), dir("renamed"))
        write(dir("renamed/deep/er/d.txt"))
        rename(dir("bundle"), outside("gone"))
        write(outside("gone/y.txt"))
        write(dir("marker"))
        let second: Set = [FileEvent("renamed", .moved(from: "new"), isDirectory: true),
                           FileEvent("renamed/deep/er/d.txt", .created),
                           FileEvent("bundle", .movedFrom, isDirectory: true), FileEvent("marker", .created)]
        state = await recorder.wait { second.isSubset(of: Set($0.events.dropFirst(seen))) }
        #expect(Set(state.events.dropFirst(seen)) == second)
    }

    @Test("not recursive: changes in subdirectories are not reported")
    func notRecursive() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        try mkdir(dir("sub"))
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .milliseconds(300))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        write(dir("sub/a.txt"))
        write(dir("top.txt"))
        let state = await recorder.wait { $0.saw("top.txt") }
        #expect(state.events == [FileEvent("top.txt", .created)])
    }

    @Test("the filter keeps matching names only")
    func filter() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path, filter: "*.csv", debounce: .seconds(1))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        write(dir("a.txt"))
        write(dir("b.csv"))
        write(dir(".hidden.csv"))
        write(dir("c.part"))
        rename(dir("c.part"), dir("c.csv"))
        write(dir("done.csv"))
        let expected: Set = [FileEvent("b.csv", .created), FileEvent("c.csv", .movedTo), FileEvent("done.csv", .created)]
        let state = await recorder.wait { expected.isSubset(of: Set($0.events)) }
        #expect(Set(state.events) == expected)
    }

    @Test("a batch past its path limit is truncated and counts what it left out")
    func truncated() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .seconds(2), maxPaths: 10)
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        for i in 0..<25 { write(dir("f\(i)")) }
        let state = await recorder.wait { $0.batches.contains(where: \.truncated) }
        let batch = try #require(state.batches.first { $0.truncated })
        #expect(batch.events.count == 10)
        #expect(batch.omitted > 0)
    }

    @Test("a writer that never pauses still gets batches (maxDelay)")
    func maxDelay() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path, debounce: .seconds(5), maxDelay: .milliseconds(500))
        defer { watcher.stop() }
        let recorder = Recorder(watcher)
        // Writes every 50 ms for up to 20 s: the 5 s debounce never passes.
        var writes = 0
        var batched = false
        while writes < 400, !batched {
            write(dir("log"), "line\n", append: true)
            writes += 1
            try await Task.sleep(for: .milliseconds(50))
            batched = await recorder.wait(timeout: .zero) { !$0.batches.isEmpty }.batches.count > 0
        }
        #expect(batched, "no batch while the writer kept writing")
    }

    @Test("the consumer going away stops the watcher")
    func consumerGone() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path)
        let consumer = Task { for await _ in watcher.batches {} }
        consumer.cancel()
        let deadline = ContinuousClock.now + .seconds(10)
        while watcher.endReason == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(watcher.endReason == .stopped)
    }

    @Test("stop ends the stream")
    func stop() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let watcher = try DirectoryWatcher(directory: dir.path)
        let recorder = Recorder(watcher)
        #expect(watcher.endReason == nil)
        watcher.stop()
        let state = await recorder.wait { $0.ended }
        #expect(state.ended)
        #expect(watcher.endReason == .stopped)
    }

    @Test("the directory removed ends the stream, after a last batch of deletions")
    func removed() async throws {
        let dir = try TempDir()
        try mkdir(dir("sub"))
        write(dir("sub/a.txt"))
        write(dir("b.txt"))
        let watcher = try DirectoryWatcher(directory: dir.path, recursive: true)
        let recorder = Recorder(watcher)
        dir.remove()
        let state = await recorder.wait { $0.ended }
        #expect(state.ended)
        #expect(watcher.endReason == .deleted)
        #expect(state.events.allSatisfy { $0.isDeleteLike })
    }

    @Test("the directory renamed away ends the stream")
    func renamedAway() async throws {
        let dir = try TempDir()
        let moved = dir.path + "-moved"
        defer { try? FileManager.default.removeItem(atPath: moved) }
        let watcher = try DirectoryWatcher(directory: dir.path)
        let recorder = Recorder(watcher)
        rename(dir.path, moved)
        let state = await recorder.wait { $0.ended }
        #expect(state.ended)
        #expect(watcher.endReason == .moved)
    }

    @Test("a directory that cannot be watched is refused with its errno")
    func refused() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        write(dir("file"))
        #expect(throws: POSIXError(.ENOENT)) { try DirectoryWatcher(directory: dir("missing")) }
        #expect(throws: POSIXError(.ENOTDIR)) { try DirectoryWatcher(directory: dir("file")) }
    }
}
