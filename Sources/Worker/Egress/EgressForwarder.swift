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
    /// Ports in use now, and ports freed, oldest first.
    private static let ports = Mutex<(used: Set<UInt16>, freed: [UInt16])>(([], []))

    private init(port: UInt16, listenFD: Int32) {
        self.port = port
        self.listenFD = listenFD
    }

    /// Starts a forwarder on a port of `Egress.forwarderPorts` no earlier step
    /// of the job used, while there is one: a process a step left behind (a
    /// detached daemon) must not find a later step's forwarder, and with it
    /// that step's hosts and credentials, on the port it knew. Only a job with
    /// more egress steps than ports takes a freed one, the longest-free first.
    static func start(socket: String, jobId: String, step: String) throws -> EgressForwarder {
        let port = try reservePort()
        let fd: Int32
        do { fd = try Sockets.listenLoopback(port: port) } catch {
            releasePort(port)
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
        Self.releasePort(port)
    }

    /// A port of `Egress.forwarderPorts` for a listener of a step (a
    /// forwarder, an agent's MCP gate): the only ports the worker may bind.
    static func reservePort() throws -> UInt16 {
        let port: UInt16? = ports.withLock { p in
            if let fresh = Egress.forwarderPorts.first(where: { !p.used.contains($0) && !p.freed.contains($0) }) {
                p.used.insert(fresh)
                return fresh
            }
            guard !p.freed.isEmpty else { return nil }
            let reused = p.freed.removeFirst()
            p.used.insert(reused)
            return reused
        }
        guard let port else { throw Sockets.Failure(description: "more steps with a listener at once than ports (\(Egress.forwarderPorts))") }
        return port
    }

    static func releasePort(_ port: UInt16) {
        ports.withLock { p in
            p.used.remove(port)
            p.freed.append(port)
        }
    }
}
