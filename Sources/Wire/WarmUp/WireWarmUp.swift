import Foundation
import NIOCore
import NIOEmbedded
import NIOExtras
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs each path a worker's connection takes once, without a thread, an event
/// loop or a task: the worker template calls it so that the workers it forks
/// find the Swift runtime's conformance and metadata caches already filled.
///
/// Every step mirrors what `RPCPeer` does on a real channel; the results are
/// thrown away. Nothing here may start a thread (the template forks afterwards).
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

        // What RPCPeer and RPCRouter hold, allocated once so their generic storage
        // and the conformances it needs are instantiated.
        _ = [RPCID: CheckedContinuation<Data, any Error>](minimumCapacity: 4)
        var router = RPCRouter()
        router.on(Ping.self) { _, _ in Empty() }
        router.on(EventEmit.self) { _, _ in }
        // ChannelHandlerContext asks each handler which directions it handles.
        let handler = RPCChannelHandler.self as any ChannelHandler.Type
        _ = handler as? any _ChannelInboundHandler.Type
        _ = handler as? any _ChannelOutboundHandler.Type
        _ = handler as? any RemovableChannelHandler.Type

        // The channel pipeline RPCPeer builds, on an embedded channel (no thread).
        let channel = EmbeddedChannel()
        try? channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(FrameDecoder(maxFrameSize: WireLimits.defaultMaxFrameSize)),
            LengthFieldPrepender(lengthFieldBitLength: .thirtyTwoBits, lengthFieldEndianness: .big),
        ])
        var inbound = channel.allocator.buffer(capacity: frames[1].count + 4)
        inbound.writeInteger(UInt32(frames[1].count))
        inbound.writeBytes(frames[1])
        _ = try? channel.writeInbound(inbound)
        _ = try? channel.readInbound(as: ByteBuffer.self)
        var outbound = channel.allocator.buffer(capacity: frames[0].count)
        outbound.writeBytes(frames[0])
        try? channel.writeAndFlush(outbound).wait()
        _ = try? channel.readOutbound(as: ByteBuffer.self)
        _ = try? channel.finish()
    }
}

extension WireWarmUp {
    /// Runs an event loop on the calling thread just long enough to connect one
    /// end of a socketpair through the same bootstrap and handlers RPCPeer uses,
    /// and to move one frame each way; then stops it and joins the one helper
    /// thread that asked it to stop. Afterwards the caller is alone again.
    ///
    /// This fills the caches an event loop's first start fills (its selector,
    /// scheduled-task heap, socket channel metadata), which are most of what a
    /// forked worker's `MultiThreadedEventLoopGroup` and first channel would cost.
    /// The stop callback goes to the main queue, which nothing in the template
    /// drains: libdispatch never starts a thread, so forking stays safe.
    public static func runEventLoop(frame: Data) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return }
        defer { close(fds[1]) }
        // A frame already waiting, so the channel's read path runs too.
        var length = UInt32(frame.count).bigEndian
        _ = withUnsafeBytes(of: &length) { write(fds[1], $0.baseAddress, 4) }
        _ = frame.withUnsafeBytes { write(fds[1], $0.baseAddress, frame.count) }
        // RPCPeer's notification queue (the storage only: no task is started).
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        continuation.yield(1)
        continuation.finish()
        _ = stream
        let stopper = ThreadSlot()
        MultiThreadedEventLoopGroup.withCurrentThreadAsEventLoop { loop in
            // Stopping a loop from its own thread needs the callback queue to run;
            // from another thread it does not.
            @Sendable func stop() {
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
            let connected = ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(FrameDecoder(maxFrameSize: WireLimits.defaultMaxFrameSize)),
                            LengthFieldPrepender(lengthFieldBitLength: .thirtyTwoBits, lengthFieldEndianness: .big),
                            CloseOnFirstRead(),
                        ])
                    }
                }
                .withConnectedSocket(fds[0])
            connected.whenComplete { result in
                guard case let .success(channel) = result else { return stop() }
                var buffer = channel.allocator.buffer(capacity: frame.count)
                buffer.writeBytes(frame)
                channel.writeAndFlush(buffer, promise: nil)
                // The waiting frame closes it when read; a bound in case it never is.
                channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
                channel.closeFuture.whenComplete { _ in stop() }
            }
        }
        if let thread = stopper.thread.withLock({ $0 }) { pthread_join(thread, nil) }
    }
}

/// Reads one frame and closes the channel: the warm-up's read path.
private final class CloseOnFirstRead: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        _ = Data(unwrapInboundIn(data).readableBytesView)
        context.close(promise: nil)
    }
}

private final class ThreadSlot: Sendable {
    let thread = Mutex<pthread_t?>(nil)
}

private final class LoopBox: Sendable {
    let loop: any EventLoop
    init(_ loop: any EventLoop) { self.loop = loop }
}
