import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One HTTP/1.1 connection to the gateway, kept open between requests: a
/// client that sends runs one after another pays for one connect instead of
/// one per request. Requests take turns on it, one at a time (the pool hands
/// it to one request at a time).
///
/// The caller writes its request to the channel and reads the response from
/// a stream fed straight from the channel's event loop (`ResponseRouter`):
/// one hop each way. A task of its own that owned the channel and relayed
/// both (NIO's scoped `executeThenClose`) cost about a millisecond more per
/// request on two cores, measured.
final class KeptConnection: Sendable {
    typealias Parts = AsyncThrowingStream<HTTPClientResponsePart, any Error>

    private let channel: any Channel
    private let router: ResponseRouter

    /// False once the connection cannot take another request: closed by
    /// either side, or a response was not read to its end.
    var isReusable: Bool { router.isReusable && channel.isActive }

    private init(channel: any Channel, router: ResponseRouter) {
        self.channel = channel
        self.router = router
    }

    static func connect(_ target: GatewayClient.Target) async throws -> KeptConnection {
        let router = ResponseRouter()
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(router)
                }
            }
        let channel: any Channel
        switch target {
        case let .tcp(host, port): channel = try await bootstrap.connect(host: host, port: port).get()
        case let .unix(path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
        }
        return KeptConnection(channel: channel, router: router)
    }

    /// Sends one request; its response arrives on the returned stream, which
    /// ends after the response's `.end`, or with an error if the connection does.
    /// `whole`: the parts are handed over together once the response is
    /// complete, one wake-up of the reader rather than one per part (for a
    /// reader that keeps the whole response anyway; never for a stream).
    func send(_ request: [HTTPClientRequestPart], whole: Bool = false) -> Parts {
        let (parts, continuation) = Parts.makeStream()
        guard router.begin(continuation, whole: whole) else {
            continuation.finish(throwing: ChannelError.ioOnClosedChannel)
            return parts
        }
        continuation.onTermination = { [router, channel] end in
            // Its reader stopped before the end: the rest of the response would be the next one's start.
            if case .cancelled = end, router.abandon() { channel.close(promise: nil) }
        }
        // Written in one flush; a failed write is not the answer: the server may
        // answer (and close) before the last part lands, and the response, or
        // the connection's end, comes through the router either way.
        for part in request.dropLast() { channel.write(part, promise: nil) }
        if let last = request.last { channel.writeAndFlush(last, promise: nil) }
        return parts
    }

    /// Closes it now, a response in flight or not.
    func close() {
        router.abandon()
        channel.close(promise: nil)
    }
}

/// The last handler of a kept connection: hands each response part to the
/// request waiting for it, on the event loop, and remembers whether the
/// connection can take another request.
final class ResponseRouter: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private struct State {
        /// The request whose response is being read.
        var current: KeptConnection.Parts.Continuation?
        /// Its parts so far, when it takes the response whole.
        var held: [HTTPClientResponsePart]?
        var reusable = true
        var closed = false
    }
    private let state = Mutex(State())

    var isReusable: Bool { state.withLock { $0.reusable && !$0.closed } }

    /// Makes `response` the one the next parts go to; false if the connection is gone.
    func begin(_ response: KeptConnection.Parts.Continuation, whole: Bool) -> Bool {
        state.withLock { s in
            guard !s.closed, s.reusable, s.current == nil else { return false }
            s.current = response
            s.held = whole ? [] : nil
            return true
        }
    }

    /// The response will not be read to its end: the connection is not reused.
    /// True if a response was still under way.
    @discardableResult
    func abandon() -> Bool {
        state.withLock { s in
            s.reusable = false
            defer { s.current = nil }
            return s.current != nil
        }
    }

    /// What one part of a response is for.
    private enum Delivery {
        /// Kept until the end, for a request that takes the response whole.
        case held
        /// A part nobody asked for (the server spoke out of turn): the
        /// connection is not to be trusted.
        case unasked
        case deliver(KeptConnection.Parts.Continuation, [HTTPClientResponsePart], isEnd: Bool)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        let delivery = state.withLock { s -> Delivery in
            if case let .head(head) = part, !head.isKeepAlive { s.reusable = false }
            guard let target = s.current else {
                s.reusable = false
                return .unasked
            }
            guard case .end = part else {
                if s.held != nil {
                    s.held?.append(part)
                    return .held
                }
                return .deliver(target, [part], isEnd: false)
            }
            let parts = (s.held ?? []) + [part]
            s.current = nil
            s.held = nil
            return .deliver(target, parts, isEnd: true)
        }
        switch delivery {
        case .held:
            return
        case .unasked:
            context.close(promise: nil)
        case let .deliver(target, parts, isEnd):
            for part in parts {
                if case .terminated = target.yield(part) {
                    abandon()
                    context.close(promise: nil)
                    return
                }
            }
            if isEnd { target.finish() }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ended(throwing: error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended(throwing: ChannelError.eof)
        context.fireChannelInactive()
    }

    private func ended(throwing error: any Error) {
        let target = state.withLock { s -> KeptConnection.Parts.Continuation? in
            s.closed = true
            s.reusable = false
            s.held = nil
            defer { s.current = nil }
            return s.current
        }
        target?.finish(throwing: error)
    }
}

/// Connections kept open per gateway, shared by every copy of a client: a
/// request takes an idle one (or makes one) and gives it back once its
/// response was read to the end.
final class ConnectionPool: Sendable {
    private let idle = Mutex<[KeptConnection]>([])
    /// More idle connections than this are closed rather than kept.
    static let maxIdle = 8

    func take() -> KeptConnection? {
        idle.withLock { list in
            while let c = list.popLast() {
                if c.isReusable { return c }
                c.close()
            }
            return nil
        }
    }

    /// The last copy of the client is gone: nothing can take these again.
    /// Left open, each would hold a socket here and a connection at the
    /// gateway until its idle timeout (a minute by default).
    deinit {
        for connection in idle.withLock({ $0 }) { connection.close() }
    }

    func give(_ connection: KeptConnection) {
        guard connection.isReusable else {
            connection.close()
            return
        }
        let kept = idle.withLock { list -> Bool in
            guard list.count < Self.maxIdle else { return false }
            list.append(connection)
            return true
        }
        if !kept { connection.close() }
    }
}
