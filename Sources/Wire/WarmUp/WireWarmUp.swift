import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs each path a worker's connection takes once: the worker template calls
/// it so that the workers it forks find the Swift runtime's conformance and
/// metadata caches already filled. `run` goes through the envelopes (an error
/// too) without a thread, a loop or a task; `runPeers` connects two real peers
/// through the pipeline `RPCPeer` builds. The results are thrown away. Nothing here may leave a
/// thread behind (the template forks afterwards, and checks).
public enum WireWarmUp {
    public static func run(job: RunJobSpec, event: JobEvent, result: RunJobResult, hello: WorkerHello.Params) {
        // Requests both ways, a notification, results and an error, through the
        // same envelope types and decoders RPCPeer uses.
        let frames: [Data] = [
            try? JSONEncoder().encode(OutgoingRequest(id: .number(1), method: RunJob.name, params: job)),
            try? JSONEncoder().encode(OutgoingRequest(id: nil, method: EventEmit.name, params: event)),
            try? JSONEncoder().encode(OutgoingRequest(id: .number(2), method: WorkerHello.name, params: hello)),
            try? JSONEncoder().encode(OutgoingResult(id: .number(1), result: AnyEncodable(result))),
            try? JSONEncoder().encode(OutgoingResult(id: .number(2), result: AnyEncodable(Empty()))),
            try? JSONEncoder().encode(OutgoingError(id: .number(3), error: RPCError(code: RPCError.jobRefused, message: "warm-up"))),
        ].compactMap { $0 }
        for frame in frames {
            var buffer = ByteBufferAllocator().buffer(capacity: frame.count + 4)
            buffer.writeInteger(UInt32(frame.count))
            buffer.writeBytes(frame)
            _ = buffer.readInteger(as: UInt32.self)
            let data = Data(buffer.readableBytesView)
            _ = String(validating: data, as: UTF8.self)
            _ = try? JSONDecoder().decode(EnvelopeHeader.self, from: data)
        }
        _ = try? RPCIncoming(method: RunJob.name, id: .number(1), frame: frames[0]).params(as: RunJobSpec.self)
        _ = try? RPCIncoming(method: WorkerHello.name, id: nil, frame: frames[2]).params(as: WorkerHello.Params.self)
        _ = try? JSONDecoder().decode(ResultOf<RunJobResult>.self, from: frames[3])
        _ = try? JSONDecoder().decode(ResultOf<Empty>.self, from: frames[4])
    }
}

extension WireWarmUp {
    /// Runs an event loop on the calling thread, with Swift Concurrency's jobs
    /// on it (`EventLoopAsGlobalExecutor`), just long enough for two real
    /// `RPCPeer`s on the ends of a socketpair to do what a worker and the
    /// control plane do: connect, the worker's `worker.hello` call, an
    /// `event.emit`, a `job.run` answered with `result`, and the close. Then it
    /// stops the loop and joins the one helper thread that asked it to stop;
    /// afterwards the caller is alone again.
    ///
    /// Run for real rather than imitated: the optimizer folds a cast whose
    /// types it can see, and drops an allocation nothing reads, so an imitation
    /// left the casts NIO makes of each handler added to a pipeline, and the
    /// generic types `RPCPeer.connect` and `call` instantiate, to every forked
    /// worker (a linear scan of the binary's conformance tables each, about a
    /// quarter of a worker's own CPU).
    ///
    /// The loop's stop callback goes to the main queue, which nothing in the
    /// template drains: libdispatch never starts a thread, so forking stays safe.
    public static func runPeers(job: RunJobSpec, event: JobEvent, result: RunJobResult, hello: WorkerHello.Params) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return }
        let (workerFD, gatewayFD) = (fds[0], fds[1])
        let stopper = ThreadSlot()
        MultiThreadedEventLoopGroup.withCurrentThreadAsEventLoop { loop in
            // Stopping a loop from its own thread needs the callback queue to run;
            // from another thread it does not. Once, whichever comes first.
            @Sendable func stop() {
                guard stopper.claim() else { return }
                let box = Unmanaged.passRetained(LoopBox(loop)).toOpaque()
                var thread = pthread_t()
                guard pthread_create(&thread, nil, { raw in
                    let box = Unmanaged<LoopBox>.fromOpaque(raw!).takeRetainedValue()
                    box.loop.shutdownGracefully(queue: .main) { _ in }
                    return nil
                }, box) == 0 else {
                    // No helper thread: the loop would never stop.
                    fatalError("worker template: cannot start the warm-up's helper thread")
                }
                stopper.thread.withLock { $0 = thread }
            }
            guard EventLoopAsGlobalExecutor.install(onto: loop) else {
                close(workerFD)
                close(gatewayFD)
                return stop()
            }
            // A bound, should an answer never come: the template must go on.
            loop.scheduleTask(in: .seconds(10)) { stop() }
            Task {
                await exchange(workerFD: workerFD, gatewayFD: gatewayFD, loop: loop, job: job, event: event, result: result, hello: hello)
                stop()
            }
        }
        if let thread = stopper.thread.withLock({ $0 }) { pthread_join(thread, nil) }
    }

    private static func exchange(workerFD: Int32, gatewayFD: Int32, loop: any EventLoop, job: RunJobSpec, event: JobEvent,
                                 result: RunJobResult, hello: WorkerHello.Params) async {
        var worker = RPCRouter()
        worker.on(Ping.self) { _, _ in Empty() }
        worker.on(RunJob.self) { _, _ in result }
        var gateway = RPCRouter()
        gateway.on(WorkerHello.self) { _, _ in Empty() }
        gateway.on(EventEmit.self) { _, _ in }
        let workerPeer: RPCPeer, gatewayPeer: RPCPeer
        do {
            workerPeer = try await RPCPeer.connect(fd: workerFD, group: loop, handler: worker)
        } catch {
            close(gatewayFD)
            return
        }
        do {
            gatewayPeer = try await RPCPeer.connect(fd: gatewayFD, group: loop, handler: gateway)
        } catch {
            workerPeer.close()
            return
        }
        _ = try? await workerPeer.call(WorkerHello.self, hello, timeout: .seconds(5))
        workerPeer.notify(EventEmit.self, event)
        _ = try? await gatewayPeer.call(RunJob.self, job, timeout: .seconds(5))
        gatewayPeer.close()
        try? await workerPeer.closeFuture.get()
        try? await gatewayPeer.closeFuture.get()
    }
}

private final class ThreadSlot: Sendable {
    let thread = Mutex<pthread_t?>(nil)
    private let claimed = Mutex(false)

    /// True the first time only.
    func claim() -> Bool {
        claimed.withLock { c in
            defer { c = true }
            return !c
        }
    }
}

private final class LoopBox: Sendable {
    let loop: any EventLoop
    init(_ loop: any EventLoop) { self.loop = loop }
}
