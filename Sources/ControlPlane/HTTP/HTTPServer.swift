import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// The API on TCP (`server.host:port`) and on `stateDir/gateway.sock` (0600, or
/// 0660 for `server.socketGroup`), from one router.
final class HTTPServer: Sendable {
    private let group: ServiceGroup
    let boundPort: Int

    private init(group: ServiceGroup, port: Int) {
        self.group = group
        self.boundPort = port
    }

    /// Binds both listeners and returns once they accept connections.
    /// `socketGID`: members of this group may connect to the socket too (0660).
    /// `idleTimeout`: a connection that sends neither a complete request head
    /// nor a piece of a body for this long is closed, unless its request was
    /// read and waits on its answer (a sync run, an event stream): without it,
    /// idle connections and never-ending headers would hold a file descriptor
    /// each for as long as their client liked. (A body that trickles in is
    /// bounded by `maxBodyKB`, not by time.)
    /// `maxConnections`: what each listener holds open at once (`ConnectionCap`).
    static func start(api: API, host: String, port: Int, socketPath: String, socketGID: UInt32?, idleTimeout: Duration,
                      maxConnections: Int, logger: Logger) async throws -> (HTTPServer, Task<Void, any Error>) {
        let router = api.router()
        let server = HTTPServerBuilder.http1(configuration: .init(idleTimeout: TimeAmount(idleTimeout)))
        let (ports, portFeed) = AsyncStream<Int>.makeStream()
        let tcp = Application(router: router, server: server, configuration: .init(address: .hostname(host, port: port), serverName: "skelm",
                                                                         availableConnectionsDelegate: ConnectionCap(limit: maxConnections, listener: .tcp, logger: logger)),
                              onServerRunning: { channel in portFeed.yield(channel.localAddress?.port ?? port) },
                              logger: logger)
        unlink(socketPath)
        let unix = Application(router: router, server: server, configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "skelm",
                                                                          availableConnectionsDelegate: ConnectionCap(limit: maxConnections, listener: .unix, logger: logger)),
                               onServerRunning: { _ in
                                   // File permissions are the first gate; the peer's
                                   // credentials (Authenticator) are the second.
                                   if let socketGID {
                                       chown(socketPath, UInt32.max, socketGID)   // uid -1: unchanged
                                       chmod(socketPath, 0o660)
                                   } else {
                                       chmod(socketPath, 0o600)
                                   }
                                   portFeed.yield(-1)
                               },
                               logger: logger)
        let group = ServiceGroup(configuration: .init(services: [tcp, unix], gracefulShutdownSignals: [], logger: logger))
        // Detached: a task created here would inherit the caller's graceful-shutdown
        // context (ServiceLifecycle keeps it in a task local), and the API would stop
        // listening the moment SIGTERM arrives instead of after the drain.
        let task = Task.detached {
            defer { portFeed.finish() }
            try await group.run()
        }
        var bound = -1, ready = 0
        for await p in ports {
            if p >= 0 { bound = p }
            ready += 1
            if ready == 2 { break }
        }
        guard ready == 2 else {
            // The group ended before both listeners came up: surface why.
            try await task.value
            throw APIError.unavailable("the HTTP server did not start")
        }
        return (HTTPServer(group: group, port: bound), task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
    }
}
