import Foundation
import Sandbox
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A step's door to the network: listens on 127.0.0.1:<port> in the worker's
/// network namespace (the step gets it as HTTP_PROXY/HTTPS_PROXY) and hands
/// every connection to the control plane's egress proxy, prefixed with the job
/// and step it comes from. The proxy decides; this only carries bytes.
final class EgressForwarder: Sendable {
    let port: UInt16
    private let listenFD: Int32
    private static let ports = Mutex<Set<UInt16>>([])

    private init(port: UInt16, listenFD: Int32) {
        self.port = port
        self.listenFD = listenFD
    }

    /// Starts a forwarder on a free port of `Egress.forwarderPorts`.
    static func start(socket: String, jobId: String, step: String) throws -> EgressForwarder {
        let port: UInt16? = ports.withLock { used in
            guard let p = Egress.forwarderPorts.first(where: { !used.contains($0) }) else { return nil }
            used.insert(p)
            return p
        }
        guard let port else { throw Sockets.Failure(description: "more exec steps at once than egress ports") }
        let fd: Int32
        do { fd = try Sockets.listenLoopback(port: port) } catch {
            _ = ports.withLock { $0.remove(port) }
            throw error
        }
        let forwarder = EgressForwarder(port: port, listenFD: fd)
        let preamble = Array("\(Egress.preamble) \(jobId) \(step)\n".utf8)
        Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return   // closed by stop()
                }
                // Not inherited by a step process forked meanwhile.
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                Thread {
                    defer { close(client) }
                    guard let upstream = try? Sockets.connectUnix(path: socket) else { return }
                    defer { close(upstream) }
                    guard Sockets.writeAll(upstream, preamble) else { return }
                    Sockets.relay(client, upstream)
                }.start()
            }
        }.start()
        return forwarder
    }

    var proxyURL: String { "http://127.0.0.1:\(port)" }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        _ = Self.ports.withLock { $0.remove(port) }
    }
}
