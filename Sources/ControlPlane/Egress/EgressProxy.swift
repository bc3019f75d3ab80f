import Foundation
import Logging
import Sandbox
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// The only way out for a step: an HTTP proxy (CONNECT for TLS, absolute-form
/// requests for plain HTTP) on a Unix socket that only workers' forwarders use.
/// Each connection says which job and step it carries; the proxy checks that
/// against the connecting worker's uid (SO_PEERCRED) and the job it was given,
/// applies that step's `allowHosts`, resolves the name itself and refuses
/// private, loopback, link-local and metadata addresses unless config names the
/// address, connects to the address it checked (no second lookup), and audits
/// every decision. Redirects are new requests from the client: checked again.
///
/// Hand-written on blocking sockets, one thread per connection: NIO gives no
/// access to SO_PEERCRED on an accepted Unix socket, and egress is low-volume.
public final class EgressProxy: Sendable {
    public let socketPath: String
    private let listenFD: Int32
    private let directory: EgressDirectory
    private let jobOfUid: @Sendable (UInt32) -> String?
    private let audit: AuditLog
    private let logger: Logger

    public init(socketPath: String, directory: EgressDirectory, audit: AuditLog, logger: Logger,
                jobOfUid: @escaping @Sendable (UInt32) -> String?) throws {
        self.socketPath = socketPath
        self.directory = directory
        self.audit = audit
        self.logger = logger
        self.jobOfUid = jobOfUid
        // 0666 in a 0711 directory: worker uids can connect, nobody can list.
        listenFD = try Sockets.listenUnix(path: socketPath, mode: 0o666)
    }

    public func start() {
        let fd = listenFD
        Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return
                }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                Thread { self.serve(client) }.start()
            }
        }.start()
    }

    public func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        unlink(socketPath)
    }

    struct Request {
        var connect: Bool
        var host: String
        var port: Int
        /// The request head to send upstream (absolute form rewritten to origin form).
        var head: [UInt8]
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let line = Sockets.readUntil(client, [10], max: 512),
              let preamble = String(bytes: line.dropLast(), encoding: .utf8)?.split(separator: " ").map(String.init),
              preamble.count == 3, preamble[0] == Egress.preamble else { return }
        let (jobId, step) = (preamble[1], preamble[2])
        guard let job = directory.job(jobId) else { return refuse(client, nil, host: "?", port: 0, step: step, why: "no such job") }
        // When workers have uids of their own, the caller's uid must be the one running that job.
        if geteuid() == 0, let cred = Sockets.peerCredentials(client), cred.uid != 0, jobOfUid(cred.uid) != jobId {
            return refuse(client, job, host: "?", port: 0, step: step, why: "the calling worker does not run job \(jobId)")
        }
        guard let head = Sockets.readUntil(client, [13, 10, 13, 10], max: 65_536), let request = Self.parse(head) else {
            return refuse(client, job, host: "?", port: 0, step: step, why: "not an HTTP proxy request")
        }
        let stepId = StepPath.id(of: step)
        let policy = job.policies[stepId] ?? StepPolicy()
        switch decide(request, policy: policy) {
        case let .failure(why):
            refuse(client, job, host: request.host, port: request.port, step: step, why: why.reason)
        case let .success(address):
            let upstream = connectTo(address)
            guard upstream >= 0 else {
                return refuse(client, job, host: request.host, port: request.port, step: step,
                              why: "cannot connect to \(address.ip): \(String(cString: strerror(errno)))", status: "502 Bad Gateway")
            }
            defer { close(upstream) }
            audit.record(actor: "gateway", action: "egress.allowed", runId: job.runId, details: [
                "host": request.host, "port": "\(request.port)", "address": address.ip, "step": step, "workflow": job.workflow,
                "method": request.connect ? "CONNECT" : "HTTP",
            ])
            if request.connect {
                guard Sockets.writeAll(client, Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8)) else { return }
            } else {
                guard Sockets.writeAll(upstream, request.head) else { return }
            }
            Sockets.relay(client, upstream)
        }
    }

    /// The decision: allowed by the step's hosts, and every address the name
    /// resolves to acceptable. Returns the address to connect to.
    func decide(_ r: Request, policy: StepPolicy) -> Result<(ip: String, sockaddr: Data), EgressDenial> {
        if policy.denied != nil { return .failure(EgressDenial("the step was denied")) }
        let matching = policy.allowHosts.filter { HostPattern.matches($0, host: r.host, port: r.port) }
        if matching.isEmpty, !policy.unrestricted {
            return .failure(EgressDenial("\(r.host):\(r.port) is not in networkEgress.allowHosts"))
        }
        let addresses = AddressClass.resolve(r.host, port: r.port)
        guard let first = addresses.first else { return .failure(EgressDenial("\(r.host) does not resolve")) }
        // A private address is allowed only when config names that very address.
        let namedLiteral = AddressClass.isLiteral(r.host) && matching.contains { HostPattern.split($0).host == r.host.lowercased() }
        if !namedLiteral, let bad = addresses.first(where: { AddressClass.isSpecial($0.ip) }) {
            return .failure(EgressDenial("\(r.host) resolves to \(bad.ip), a private, loopback, link-local or metadata address"))
        }
        return .success(first)
    }

    private func connectTo(_ address: (ip: String, sockaddr: Data)) -> Int32 {
        let family = address.ip.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let r = address.sockaddr.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.sockaddr.count))
        }
        if r != 0 {
            let e = errno
            close(fd)
            errno = e
            return -1
        }
        return fd
    }

    private func refuse(_ client: Int32, _ job: EgressDirectory.Job?, host: String, port: Int, step: String, why: String,
                        status: String = "403 Forbidden") {
        let body = "skelm egress: \(why)\n"
        _ = Sockets.writeAll(client, Array("HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8))
        audit.record(actor: "gateway", action: "egress.denied", runId: job?.runId, details: [
            "host": host, "port": "\(port)", "step": step, "workflow": job?.workflow ?? "", "reason": why,
        ])
    }

    /// `CONNECT host:port HTTP/1.1` or `GET http://host[:port]/path HTTP/1.1`.
    /// Headers pass through except hop-by-hop proxy ones; they are never logged.
    static func parse(_ head: [UInt8]) -> Request? {
        guard let text = String(bytes: head, encoding: .utf8) else { return nil }
        var lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ").map(String.init)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return nil }
        if parts[0] == "CONNECT" {
            let hp = HostPattern.split(parts[1])
            guard let port = hp.port.flatMap(Int.init), (1...65535).contains(port), !hp.host.isEmpty else { return nil }
            return Request(connect: true, host: hp.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port, head: [])
        }
        guard let url = URLComponents(string: parts[1]), url.scheme == "http", let host = url.host, !host.isEmpty else { return nil }
        let path = (url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath) + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
        lines[0] = "\(parts[0]) \(path) \(parts[2])"
        lines = lines.filter { l in
            let lower = l.lowercased()
            return !lower.hasPrefix("proxy-authorization:") && !lower.hasPrefix("proxy-connection:")
        }
        return Request(connect: false, host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: url.port ?? 80,
                       head: Array(lines.joined(separator: "\r\n").utf8))
    }
}

struct EgressDenial: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
