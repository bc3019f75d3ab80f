import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// One end of a JSON-RPC 2.0 connection over length-prefixed frames.
///
/// Requests go both ways; responses may arrive in any order and are matched by id.
/// A malformed message gets the JSON-RPC error it deserves and the connection keeps
/// serving; only transport failures (an oversized or truncated frame) close it.
public final class RPCPeer: Sendable {
    public struct Limits: Sendable {
        public var maxFrameSize = WireLimits.defaultMaxFrameSize
        /// Requests from the other side being handled at once; more is a flood.
        public var maxInflightRequests = 64
        /// Notifications received but not yet handled; more is a flood.
        public var maxQueuedNotifications = 10_000
        public init() {}
    }

    private struct State {
        var nextID: Int64 = 1
        var pending: [RPCID: CheckedContinuation<Data, any Error>] = [:]
        /// Each pending call's timeout, cancelled when the call ends: a timer
        /// left to fire an hour later would keep the peer, its channel and its
        /// buffers alive that long after the job.
        var timers: [RPCID: Scheduled<Void>] = [:]
        /// Each pending call's `answered` hook (see `call`).
        var answered: [RPCID: @Sendable () -> Void] = [:]
        var inflight = 0
        var queued = 0
        var closed = false
    }

    public let channel: any Channel
    /// Let go once the connection is closed: a handler commonly holds what holds
    /// this peer (the gateway's record of a worker holds its peer, whose handler
    /// holds that record), and the cycle kept every finished job's state alive.
    private let handlerSlot: Mutex<(any RPCHandler)?>
    private var handler: (any RPCHandler)? { handlerSlot.withLock { $0 } }
    private let limits: Limits
    private let state = Mutex(State())
    private let notifications: AsyncStream<RPCIncoming>.Continuation

    private init(channel: any Channel, handler: any RPCHandler, limits: Limits) {
        self.channel = channel
        self.handlerSlot = Mutex(handler)
        self.limits = limits
        let (stream, continuation) = AsyncStream<RPCIncoming>.makeStream()
        self.notifications = continuation
        Task { [handler] in
            for await note in stream {
                await handler.handle(notification: note, from: self)
                self.state.withLock { $0.queued -= 1 }
            }
        }
    }

    /// Wraps a connected stream socket (a socketpair end, an accepted Unix socket).
    /// Takes ownership of `fd`.
    public static func connect(fd: Int32, group: any EventLoopGroup, handler: any RPCHandler,
                               limits: Limits = Limits()) async throws -> RPCPeer {
        let box = Mutex<RPCPeer?>(nil)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                let peer = RPCPeer(channel: channel, handler: handler, limits: limits)
                box.withLock { $0 = peer }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(FrameDecoder(maxFrameSize: limits.maxFrameSize)),
                        LengthFieldPrepender(lengthFieldBitLength: .thirtyTwoBits, lengthFieldEndianness: .big),
                        RPCChannelHandler(peer: peer),
                    ])
                }
            }
            .withConnectedSocket(fd).get()
        _ = channel
        return box.withLock { $0! }
    }

    /// Completes when the connection is gone, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Sends a request and waits for its answer. Throws the peer's `RPCError`,
    /// `WireError.connectionClosed`, or `RPCTimeout` after `timeout`.
    /// `answered`: run on the connection's event loop as the answer's frame is
    /// read (a result or an error; not a timeout or a close), before anything
    /// read after it is admitted (`RPCHandler.admit`) and before the caller resumes.
    public func call<M: RPCMethod>(_ method: M.Type, _ params: M.Params,
                                   timeout: Duration? = nil, answered: (@Sendable () -> Void)? = nil) async throws -> M.Result {
        let id: RPCID = state.withLock { s in
            defer { s.nextID += 1 }
            return .number(s.nextID)
        }
        let payload = try JSONEncoder().encode(OutgoingRequest(id: id, method: M.name, params: params))
        let frame: Data = try await withCheckedThrowingContinuation { cont in
            let accepted = state.withLock { s -> Bool in
                if s.closed { return false }
                s.pending[id] = cont
                if let answered { s.answered[id] = answered }
                return true
            }
            guard accepted else {
                cont.resume(throwing: WireError.connectionClosed)
                return
            }
            if let timeout {
                let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanoseconds))) { [weak self] () -> Void in
                    self?.resolve(id, with: .failure(RPCTimeout(method: M.name, after: timeout)))
                }
                // The call may have ended already (the connection closed meanwhile).
                let live = state.withLock { s -> Bool in
                    guard s.pending[id] != nil else { return false }
                    s.timers[id] = timer
                    return true
                }
                if !live { timer.cancel() }
            }
            send(payload)
        }
        return try JSONDecoder().decode(ResultOf<M.Result>.self, from: frame).result
    }

    /// Sends a notification; no answer comes back.
    public func notify<N: RPCNotificationMethod>(_ method: N.Type, _ params: N.Params) {
        guard let payload = try? JSONEncoder().encode(OutgoingRequest(id: nil, method: N.name, params: params)) else { return }
        send(payload)
    }

    public func close() {
        channel.close(promise: nil)
    }

    // MARK: - Receiving (on the channel's event loop)

    func receive(_ buffer: ByteBuffer) {
        let data = Data(buffer.readableBytesView)
        // JSON text is UTF-8 (RFC 8259); decoders differ in what they let through, so check first.
        guard String(validating: data, as: UTF8.self) != nil else {
            reject(RPCError(code: RPCError.parseError, message: "frame is not valid UTF-8"), id: nil)
            return
        }
        let header: EnvelopeHeader
        do {
            header = try JSONDecoder().decode(EnvelopeHeader.self, from: data)
        } catch let error as RPCError {
            reject(error, id: nil)
            return
        } catch {
            let parsed = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
            reject(parsed ? RPCError(code: RPCError.invalidRequest, message: "not a JSON-RPC 2.0 message")
                          : RPCError(code: RPCError.parseError, message: "frame is not valid UTF-8 JSON"), id: nil)
            return
        }
        switch header.kind {
        case let .response(id):
            state.withLock { $0.answered.removeValue(forKey: id) }?()
            resolve(id, with: .success(data))
        case let .errorResponse(id, error):
            if let id {
                state.withLock { $0.answered.removeValue(forKey: id) }?()
                resolve(id, with: .failure(error))
            } else {
                handler?.protocolError(error, from: self)
            }
        case let .notification(method):
            let over = state.withLock { s -> Bool in
                s.queued += 1
                return s.queued > limits.maxQueuedNotifications
            }
            if over { return fail(WireError.tooManyPendingRequests(limit: limits.maxQueuedNotifications)) }
            notifications.yield(RPCIncoming(method: method, id: nil, frame: data))
        case let .request(id, method):
            let over = state.withLock { s -> Bool in
                s.inflight += 1
                return s.inflight > limits.maxInflightRequests
            }
            if over { return fail(WireError.tooManyPendingRequests(limit: limits.maxInflightRequests)) }
            let incoming = RPCIncoming(method: method, id: id, frame: data)
            // The handler that admitted it handles it, even if the connection
            // closes (and lets go of its handler) before the task runs.
            let handler = self.handler
            if let refused = handler?.admit(request: incoming, from: self) {
                state.withLock { $0.inflight -= 1 }
                return respond(id, refused)
            }
            Task {
                let reply = await handler?.handle(request: incoming, from: self)
                    ?? .error(RPCError(code: RPCError.internalError, message: "the connection is closing"))
                state.withLock { $0.inflight -= 1 }
                respond(id, reply)
            }
        }
    }

    func transportFailed(_ error: any Error) {
        fail(error)
    }

    func channelClosed() {
        let (waiting, timers) = state.withLock { s -> ([CheckedContinuation<Data, any Error>], [Scheduled<Void>]) in
            s.closed = true
            defer {
                s.pending.removeAll()
                s.timers.removeAll()
                s.answered.removeAll()
            }
            return (Array(s.pending.values), Array(s.timers.values))
        }
        timers.forEach { $0.cancel() }
        for cont in waiting { cont.resume(throwing: WireError.connectionClosed) }
        // Notifications already queued are still delivered: the loop above holds its own handler.
        notifications.finish()
        handlerSlot.withLock { $0 = nil }
    }

    // MARK: - Helpers

    private func fail(_ error: any Error) {
        handler?.protocolError(error, from: self)
        channel.close(promise: nil)
    }

    private func reject(_ error: RPCError, id: RPCID?) {
        if let payload = try? JSONEncoder().encode(OutgoingError(id: id, error: error)) { send(payload) }
        handler?.protocolError(error, from: self)
    }

    private func respond(_ id: RPCID, _ reply: RPCReply) {
        let payload: Data?
        switch reply {
        case let .result(value):
            payload = (try? JSONEncoder().encode(OutgoingResult(id: id, result: AnyEncodable(value))))
                ?? (try? JSONEncoder().encode(OutgoingError(id: id, error: RPCError(code: RPCError.internalError, message: "result could not be encoded"))))
        case let .error(error):
            payload = try? JSONEncoder().encode(OutgoingError(id: id, error: error))
        }
        if let payload { send(payload) }
    }

    private func resolve(_ id: RPCID, with result: Result<Data, any Error>) {
        let (cont, timer) = state.withLock { s in
            s.answered.removeValue(forKey: id)
            return (s.pending.removeValue(forKey: id), s.timers.removeValue(forKey: id))
        }
        timer?.cancel()
        cont?.resume(with: result)
    }

    private func send(_ payload: Data) {
        var buffer = channel.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        channel.writeAndFlush(buffer, promise: nil)
    }
}

/// A call that got no answer in time. The connection stays open.
public struct RPCTimeout: Error, CustomStringConvertible {
    public let method: String
    public let after: Duration
    public var description: String { "\(method) got no answer within \(after)" }
}

struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}

/// Feeds decoded frames to the peer and reports the connection's end.
final class RPCChannelHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let peer: RPCPeer

    init(peer: RPCPeer) { self.peer = peer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        peer.receive(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        peer.transportFailed(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.channelClosed()
        context.fireChannelInactive()
    }
}
