import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One HTTP/1.1 connection to the gateway, kept open between requests: a
/// client that sends runs one after another pays for one connect instead of
/// one per request. Requests take turns on it, one at a time; NIO's scoped
/// `executeThenClose` owns the channel in a task of its own, and requests
/// reach that task through a stream.
final class KeptConnection: Sendable {
    typealias Parts = AsyncThrowingStream<HTTPClientResponsePart, any Error>

    private struct Exchange: Sendable {
        let request: [HTTPClientRequestPart]
        let response: Parts.Continuation
    }

    private let exchanges: AsyncStream<Exchange>.Continuation
    private let channel: any Channel
    /// False once the connection cannot take another request: closed by
    /// either side, or a response was not read to its end.
    private let reusable = Mutex(true)

    var isReusable: Bool { reusable.withLock { $0 } && channel.isActive }

    private init(channel: any Channel, exchanges: AsyncStream<Exchange>.Continuation) {
        self.channel = channel
        self.exchanges = exchanges
    }

    static func connect(_ target: GatewayClient.Target) async throws -> KeptConnection {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(5))
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
            }
        }
        let async: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        switch target {
        case let .tcp(host, port): async = try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
        case let .unix(path): async = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
        }
        let (stream, continuation) = AsyncStream.makeStream(of: Exchange.self)
        let connection = KeptConnection(channel: async.channel, exchanges: continuation)
        Task { await connection.serve(async, stream) }
        return connection
    }

    /// Sends one request; its response arrives on the returned stream, which
    /// ends after the response's `.end`, or with an error if the connection does.
    func send(_ request: [HTTPClientRequestPart]) -> Parts {
        let (parts, continuation) = Parts.makeStream()
        if case .terminated = exchanges.yield(Exchange(request: request, response: continuation)) {
            continuation.finish(throwing: ChannelError.ioOnClosedChannel)
        }
        return parts
    }

    /// Closes it now, a response in flight or not.
    func close() {
        reusable.withLock { $0 = false }
        exchanges.finish()
        channel.close(promise: nil)
    }

    private func serve(_ async: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, _ stream: AsyncStream<Exchange>) async {
        do {
            try await async.executeThenClose { inbound, outbound in
                var responses = inbound.makeAsyncIterator()
                for await exchange in stream {
                    do {
                        try await outbound.write(contentsOf: exchange.request)
                    } catch ChannelError.ioOnClosedChannel {
                        // The server may answer (and close) before the last write lands.
                    }
                    var ended = false
                    do {
                        while let part = try await responses.next() {
                            if case let .head(head) = part, !head.isKeepAlive { reusable.withLock { $0 = false } }
                            if case .terminated = exchange.response.yield(part) {
                                // Its reader stopped before the end: the rest of the response would be the next one's start.
                                reusable.withLock { $0 = false }
                                break
                            }
                            if case .end = part {
                                ended = true
                                break
                            }
                        }
                    } catch {
                        exchange.response.finish(throwing: error)
                        throw error
                    }
                    if ended {
                        exchange.response.finish()
                    } else {
                        exchange.response.finish(throwing: ChannelError.eof)
                        reusable.withLock { $0 = false }
                    }
                    if !reusable.withLock({ $0 }) { return }
                }
            }
        } catch {}
        reusable.withLock { $0 = false }
        exchanges.finish()
        // Requests that came in after the end are told so.
        for await exchange in stream { exchange.response.finish(throwing: ChannelError.ioOnClosedChannel) }
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
