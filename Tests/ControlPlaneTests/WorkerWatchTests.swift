@testable import ControlPlane
import Foundation
import NIOCore
import NIOPosix
import Sandbox
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The one timer that keeps every worker's deadlines, on real processes
/// standing in for workers (the pool's own tests cover it with real workers).
@Suite("Worker watch")
struct WorkerWatchTests {
    /// A process to stand in for a worker, and the record the pool would keep of it.
    final class Subject: Sendable {
        let process: Process
        let worker: ManagedWorker
        init() throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sleep")
            p.arguments = ["30"]
            try p.run()
            process = p
            worker = ManagedWorker(pid: p.processIdentifier, uid: getuid())
        }

        /// Whether it was SIGKILLed within `limit` (polled: never blocks a task's thread).
        func killed(within limit: Duration) async throws -> Bool {
            let deadline = ContinuousClock.now + limit
            while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            guard !process.isRunning else { return false }
            return process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
        }

        func end() {
            if process.isRunning { process.terminate() }
        }
    }

    static func withWatch(diskInterval: Duration = .milliseconds(100), _ body: (WorkerWatch) async throws -> Void) async throws {
        let threads = NIOThreadPool(numberOfThreads: 1)
        threads.start()
        let watch = WorkerWatch(loop: MultiThreadedEventLoopGroup.singleton.next(), threads: threads, diskInterval: diskInterval)
        do { try await body(watch) } catch {
            watch.stop()
            try await threads.shutdownGracefully()
            throw error
        }
        watch.stop()
        try await threads.shutdownGracefully()
    }

    @Test("a worker with no hello by its deadline is killed, naming why; one whose hello came is left alone")
    func handshake() async throws {
        try await Self.withWatch { watch in
            let silent = try Subject(), polite = try Subject()
            defer { silent.end(); polite.end() }
            watch.expectHello(silent.worker, within: .milliseconds(50))
            watch.expectHello(polite.worker, within: .milliseconds(50))
            watch.helloSettled(polite.worker)
            #expect(try await silent.killed(within: .seconds(5)))
            #expect(silent.worker.killReason == "no handshake within 0.05 seconds")
            #expect(try await !polite.killed(within: .milliseconds(300)))
            #expect(polite.worker.killReason == nil)
        }
    }

    @Test("a worker alive past its grace after its channel closed is killed as lingering; one that exited is not signalled")
    func lingering() async throws {
        try await Self.withWatch { watch in
            let stuck = try Subject(), gone = try Subject()
            defer { stuck.end(); gone.end() }
            watch.expectExit(stuck.worker, within: .milliseconds(50))
            watch.expectExit(gone.worker, within: .milliseconds(50))
            // The template reported its exit: the pid is no longer the worker's to signal.
            gone.worker.markExited(ExitStatus(waitStatus: 0))
            #expect(try await stuck.killed(within: .seconds(5)))
            #expect(stuck.worker.killReason == "channel closed but process did not exit")
            #expect(try await !gone.killed(within: .milliseconds(300)))
        }
    }

    @Test("a job's files are measured while it runs: past the limit its worker is killed; a job that ended is not")
    func disk() async throws {
        try await Self.withWatch(diskInterval: .milliseconds(50)) { watch in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let limits = WorkerWatch.DiskLimits(maxBytes: 1 << 20, maxEntries: 100, interval: .milliseconds(50))
            let filler = try Subject(), ended = try Subject()
            defer { filler.end(); ended.end() }
            _ = watch.watchDisk(of: filler.worker, paths: [dir], limits: limits)
            watch.forget(watch.watchDisk(of: ended.worker, paths: [dir], limits: limits))
            #expect(try await !filler.killed(within: .milliseconds(200)), "within its budget")
            try Data(repeating: 7, count: 2 << 20).write(to: URL(fileURLWithPath: dir + "/big"))
            #expect(try await filler.killed(within: .seconds(5)))
            #expect(filler.worker.killReason == "disk limit: the job's files passed 1 MiB (workers.limits.diskMB)")
            #expect(ended.worker.killReason == nil)
            #expect(ended.process.isRunning)
        }
    }
}
