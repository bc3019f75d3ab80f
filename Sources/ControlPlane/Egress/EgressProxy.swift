import Foundation
import Logging
import Sandbox
import Synchronization
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// The only way out for a step: an HTTP proxy (CONNECT for TLS, absolute-form
/// requests for plain HTTP) on a Unix socket that only workers' forwarders use.
/// Each connection says which job and step it carries; the proxy checks that
/// against the connecting process (SO_PEERCRED: it must be that job's worker
/// itself, and the step one the control plane knows to be running there),
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
    private let workerOf: @Sendable (String) -> WorkerPool.Assignment?
    private let audit: AuditLog
    private let logger: Logger
    /// The gateway's own TCP listeners: never a destination, whatever allowHosts says.
    private let ownPorts = Mutex<Set<Int>>([])
    /// Connections served at once: by all workers, and by one job. Each holds a
    /// thread and two descriptors here, so both are bounded; beyond them a
    /// connection is refused at once (503), not queued.
    public static let maxConnections = 256
    public static let maxConnectionsPerJob = 32
    private let open = Atomic<Int>(0)

    public init(socketPath: String, directory: EgressDirectory, audit: AuditLog, logger: Logger,
                workerOf: @escaping @Sendable (String) -> WorkerPool.Assignment?) throws {
        self.socketPath = socketPath
        self.directory = directory
        self.audit = audit
        self.logger = logger
        self.workerOf = workerOf
        // 0666 in a 0711 directory: worker uids can connect, nobody can list.
        // Who may actually use a connection is decided per connection (serve).
        listenFD = try Sockets.listenUnix(path: socketPath, mode: 0o666)
    }

    /// A port this gateway listens on (its API): refused to steps on any local address.
    public func protect(port: Int) {
        guard port > 0 else { return }
        ownPorts.withLock { _ = $0.insert(port) }
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
                guard self.open.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxConnections else {
                    self.open.wrappingSubtract(1, ordering: .relaxed)
                    self.busy(client)
                    continue
                }
                Thread {
                    self.serve(client)
                    self.open.wrappingSubtract(1, ordering: .relaxed)
                }.start()
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
        var host: HostName
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
        guard let job = directory.job(jobId), let worker = workerOf(jobId) else {
            return refuse(client, nil, jobId: jobId, host: "?", port: 0, step: step, why: "no such job")
        }
        // Only the job's worker process itself may speak here: its forwarder
        // threads live in it. A step's processes share the worker's uid, so the
        // uid alone cannot tell them apart; the pid can (the worker is alive for
        // as long as its job, so its pid cannot have been reused).
        guard let cred = Sockets.peerCredentials(client), cred.pid == worker.pid, cred.uid == worker.uid else {
            let who = Sockets.peerCredentials(client).map { "pid \($0.pid), uid \($0.uid)" } ?? "unknown"
            return refuse(client, job, jobId: jobId, host: "?", port: 0, step: step,
                          why: "the caller (\(who)) is not the forwarder of job \(jobId)'s worker", claimed: true)
        }
        guard directory.openConnection(jobId: jobId, limit: Self.maxConnectionsPerJob) else {
            return refuse(client, job, jobId: jobId, host: "?", port: 0, step: step,
                          why: "job \(jobId) already has \(Self.maxConnectionsPerJob) connections open", status: "503 Service Unavailable")
        }
        defer { directory.closeConnection(jobId: jobId) }
        // The step must be one the control plane knows is running in that worker now.
        guard directory.waitUntilRunning(jobId: jobId, step: step, limit: .seconds(2)) else {
            return refuse(client, job, jobId: jobId, host: "?", port: 0, step: step, why: "step \(step) is not running in job \(jobId)", claimed: true)
        }
        guard let head = Sockets.readUntil(client, [13, 10, 13, 10], max: 65_536) else {
            return refuse(client, job, jobId: jobId, host: "?", port: 0, step: step, why: "not an HTTP proxy request", status: "400 Bad Request")
        }
        let request: Request
        switch Self.parse(head) {
        case let .failure(why): return refuse(client, job, jobId: jobId, host: "?", port: 0, step: step, why: why.reason, status: "400 Bad Request")
        case let .success(r): request = r
        }
        let stepId = StepPath.id(of: step)
        let policy = job.policies[stepId] ?? StepPolicy()
        switch decide(request, policy: policy) {
        case let .failure(why):
            refuse(client, job, jobId: jobId, host: request.host.text, port: request.port, step: step, why: why.reason)
        case let .success(address):
            let upstream = connectTo(address)
            guard upstream >= 0 else {
                return refuse(client, job, jobId: jobId, host: request.host.text, port: request.port, step: step,
                              why: "cannot connect to \(address.ip): \(String(cString: strerror(errno)))", status: "502 Bad Gateway")
            }
            defer { close(upstream) }
            audit.record(actor: "gateway", action: "egress.allowed", runId: job.runId, details: [
                "host": request.host.text, "port": "\(request.port)", "address": address.ip, "step": step, "workflow": job.workflow,
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
        let host = r.host.text
        let matching = policy.allowHosts.filter { HostPattern.matches($0, host: host, port: r.port) }
        if matching.isEmpty, !policy.unrestricted {
            return .failure(EgressDenial("\(host):\(r.port) is not in networkEgress.allowHosts"))
        }
        let addresses = AddressClass.resolve(host, port: r.port)
        guard let first = addresses.first else { return .failure(EgressDenial("\(host) does not resolve")) }
        // The gateway's own API is never a step's destination, whatever config
        // names: a step that could reach it could approve its own approval.
        if ownPorts.withLock({ $0.contains(r.port) }), let own = addresses.first(where: { AddressClass.isLocal($0.ip) }) {
            return .failure(EgressDenial("\(host):\(r.port) (\(own.ip)) is the gateway's own API, which steps can never reach"))
        }
        // A private address is allowed only when config names that very address.
        let namedLiteral = r.host.isLiteral && matching.contains { HostPattern.host(of: $0) == host }
        if !namedLiteral, let bad = addresses.first(where: { AddressClass.isSpecial($0.ip) }) {
            return .failure(EgressDenial("\(host) resolves to \(bad.ip), a private, loopback, link-local or metadata address"))
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

    /// `claimed`: the step name is what an unverified caller said, recorded as
    /// such rather than as the step's own.
    private func refuse(_ client: Int32, _ job: EgressDirectory.Job?, jobId: String, host: String, port: Int, step: String, why: String,
                        status: String = "403 Forbidden", claimed: Bool = false) {
        let body = "skelm egress: \(why)\n"
        _ = Sockets.writeAll(client, Array("HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8))
        // Unread request bytes would turn the close into a reset that discards
        // the answer: end our side, then read what is left (bounded) first.
        shutdown(client, Int32(SHUT_WR))
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var scratch = [UInt8](repeating: 0, count: 4096)
        var drained = 0
        while drained < 65_536 {
            let n = read(client, &scratch, scratch.count)
            if n <= 0 { break }
            drained += n
        }
        guard let suppressed = directory.admitDenial(jobId: jobId) else { return }
        var details = [
            "host": host, "port": "\(port)", claimed ? "claimedStep" : "step": step, "workflow": job?.workflow ?? "", "reason": why,
        ]
        if suppressed > 0 { details["suppressedBefore"] = "\(suppressed)" }
        audit.record(actor: "gateway", action: "egress.denied", runId: job?.runId, details: details)
    }

    /// Over `maxConnections`: answered and closed on the accepting thread, with
    /// no thread of its own and nothing read. Not audited: the caller is not
    /// identified yet, and a flood of these must cost nothing.
    private func busy(_ client: Int32) {
        _ = Sockets.writeAll(client, Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        close(client)
    }

    /// `CONNECT host:port HTTP/1.1` or `GET http://host[:port]/path HTTP/1.1`.
    /// Every host (the target, and a `Host` header) is parsed strictly: a
    /// request whose host is not a DNS name or an IP literal is refused before
    /// any pattern sees it. Headers pass through except hop-by-hop proxy ones;
    /// they are never logged.
    static func parse(_ head: [UInt8]) -> Result<Request, EgressDenial> {
        // Only printable ASCII, tabs and CRLF line ends: a NUL or a bare CR/LF
        // could mean one thing here and another to the upstream server.
        for (i, b) in head.enumerated() where b < 0x20 || b == 0x7f {
            if b == 9 { continue }
            if b == 13, i + 1 < head.count, head[i + 1] == 10 { continue }
            if b == 10, i > 0, head[i - 1] == 13 { continue }
            return .failure(EgressDenial("control characters in the request head"))
        }
        guard let text = String(bytes: head, encoding: .utf8) else { return .failure(EgressDenial("the request head is not UTF-8")) }
        var lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return .failure(EgressDenial("not an HTTP proxy request")) }
        let hostHeaders = lines.dropFirst().filter { $0.lowercased().hasPrefix("host:") }
            .map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
        guard hostHeaders.count <= 1 else { return .failure(EgressDenial("more than one Host header")) }
        let target: (host: HostName, port: Int)
        var rewritten: [UInt8] = []
        if parts[0] == "CONNECT" {
            guard let t = HostName.parseAuthority(parts[1], defaultPort: nil) else {
                return .failure(EgressDenial("invalid CONNECT target: not host:port with a DNS name or an IP address"))
            }
            target = t
        } else {
            guard let url = URLComponents(string: parts[1]), url.scheme == "http", let raw = url.percentEncodedHost else {
                return .failure(EgressDenial("not an absolute http:// URL"))
            }
            guard url.user == nil, url.password == nil else { return .failure(EgressDenial("credentials in the URL")) }
            let port = url.port ?? 80
            guard let host = HostName.parse(raw), (1...65535).contains(port) else {
                return .failure(EgressDenial("invalid host in the URL: not a DNS name or an IP address"))
            }
            target = (host, port)
            let path = (url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath) + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
            lines[0] = "\(parts[0]) \(path) \(parts[2])"
            lines = lines.filter { l in
                let lower = l.lowercased()
                return !lower.hasPrefix("proxy-authorization:") && !lower.hasPrefix("proxy-connection:")
            }
            rewritten = Array(lines.joined(separator: "\r\n").utf8)
        }
        // A Host header names the same host (a mismatch would let the allowed
        // connection carry a request for another site).
        if let h = hostHeaders.first {
            guard let named = HostName.parseAuthority(h, defaultPort: target.port), named.host == target.host else {
                return .failure(EgressDenial("the Host header does not name \(target.host.text)"))
            }
        }
        return .success(Request(connect: parts[0] == "CONNECT", host: target.host, port: target.port, head: rewritten))
    }
}

struct EgressDenial: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
