import HummingbirdCore
import Logging

/// Bounds one listener's open connections (`server.maxConnections`). Past the
/// bound Hummingbird's handler stops accepting: new connections wait in the
/// kernel's accept queue (the listener's backlog) until one closes, so no
/// client, however many connections it opens, can take the file descriptors
/// the worker pool, the store and the audit log need. The TCP port and the
/// Unix socket are bounded apart, so a full port leaves the socket (the CLI's
/// way in) usable.
///
/// Hummingbird's own `MaximumAvailableConnections` only counts; this one also
/// says when its listener fills and when it has room again, and exports the
/// count. "Room again" means a tenth of the bound free (at least one place),
/// so a listener kept full, where each close lets one waiting connection in,
/// says so once rather than at every turnover.
///
/// NIO accepts up to four connections per wake-up before it asks again, so a
/// burst can take the count up to three past the bound.
struct ConnectionCap: AvailableConnectionsDelegate {
    let limit: Int
    let listener: HTTPListener
    let logger: Logger
    private var open = 0
    private var full = false

    init(limit: Int, listener: HTTPListener, logger: Logger) {
        self.limit = limit
        self.listener = listener
        self.logger = logger
    }

    mutating func connectionOpened() {
        open += 1
        GatewayMetrics.httpConnections(listener, open: open)
        if open >= limit, !full {
            full = true
            GatewayMetrics.httpListenerFull(listener)
            logger.warning("server: the \(listener.rawValue) listener holds server.maxConnections (\(limit)) connections; new ones wait until one closes")
        }
    }

    mutating func connectionClosed() {
        open -= 1
        GatewayMetrics.httpConnections(listener, open: open)
        if full, open <= limit - Swift.max(1, limit / 10) {
            full = false
            logger.notice("server: the \(listener.rawValue) listener accepts connections again")
        }
    }

    func isAcceptingNewConnections() -> Bool { open < limit }
}

/// The API's two ways in.
enum HTTPListener: String, CaseIterable, Sendable {
    case tcp
    case unix
}
