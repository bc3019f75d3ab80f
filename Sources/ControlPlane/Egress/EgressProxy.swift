import Foundation
import Logging
import NIOCore
import NIOPosix
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
/// Served on the gateway's NIO event loops: a connection costs two descriptors
/// and a few buffers, not a thread, so thousands can wait on slow upstreams at
/// once. `EgressConnection` takes a connection from accept to relay (or to its
/// refusal), `EgressGlue` relays it; name lookups, which block, run on
/// `EgressResolver`'s small thread pool, never on an event loop.
public final class EgressProxy: Sendable {
    public let socketPath: String
    /// Behind a lock only because the child channel initializer captures
    /// `self` before init could assign a `let`; written once, in init.
    private let listener = Mutex<(any Channel)?>(nil)
    let directory: EgressDirectory
    let workerOf: @Sendable (String) -> WorkerPool.Assignment?
    let audit: AuditLog
    private let logger: Logger
    let resolver = EgressResolver()
    /// The gateway's event loops: requests the control plane makes for steps run on them too.
    let group: any EventLoopGroup
    /// The gateway's own TCP listeners: never a destination, whatever allowHosts says.
    private let ownPorts = Mutex<Set<Int>>([])
    /// Connections served at once, by all workers: beyond it a connection is
    /// answered 503 at once, not queued. Each holds two descriptors here, so the
    /// cap is a quarter of the open-file limit (the rest is the gateway's own),
    /// and at most `maxConnectionsCeiling`.
    public let maxConnections: Int
    public static let maxConnectionsCeiling = 4096
    /// One job's share: a step that opens connections in a loop cannot take
    /// the slots of every other job.
    public static let maxConnectionsPerJob = 32
    private let open = Atomic<Int>(0)

    public init(socketPath: String, group: any EventLoopGroup, directory: EgressDirectory, audit: AuditLog, logger: Logger,
                workerOf: @escaping @Sendable (String) -> WorkerPool.Assignment?) throws {
        self.socketPath = socketPath
        self.directory = directory
        self.audit = audit
        self.logger = logger
        self.workerOf = workerOf
        self.group = group
        maxConnections = min(Self.maxConnectionsCeiling, max(1, Self.openFileLimit() / 4))
        guard let bootstrap = ServerBootstrap(validatingGroup: group) else {
            throw Sockets.Failure(description: "the egress proxy needs NIO's own event loops")
        }
        // Bound now (the socket exists once the gateway is built, as workers
        // expect), accepting only from start(): see there.
        let listener = try bootstrap
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.autoRead, value: false)
            // The connection handler asks for bytes only while it parses; the
            // relay turns reading back on, paced by the other side.
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in accepted(channel) }
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true)
            .wait()
        // 0666 in a 0711 directory: worker uids can connect, nobody can list.
        // Who may actually use a connection is decided per connection
        // (EgressConnection). Before this chmod the umask (0077) leaves the
        // socket to the gateway's own user: the gap narrows who may connect.
        guard chmod(socketPath, 0o666) == 0 else {
            let failure = Sockets.Failure(description: "chmod \(socketPath): \(String(cString: strerror(errno)))")
            try? listener.close().wait()
            throw failure
        }
        self.listener.withLock { $0 = listener }
    }

    /// A port this gateway listens on (its API): refused to steps on any local address.
    public func protect(port: Int) {
        guard port > 0 else { return }
        ownPorts.withLock { _ = $0.insert(port) }
    }

    /// Accepting begins here, after the gateway has protected its own ports:
    /// no connection is ever decided without them.
    public func start() {
        listener.withLock { $0 }?.setOption(.autoRead, value: true).whenFailure { [logger] error in
            logger.error("the egress proxy cannot accept connections", metadata: ["error": "\(error)"])
        }
    }

    public func stop() {
        listener.withLock { $0 }?.close(promise: nil)
        unlink(socketPath)
        resolver.shutdown()
    }

    /// Every accepted connection: counted against `maxConnections` until it
    /// closes, whichever way it closes.
    private func accepted(_ channel: any Channel) -> EventLoopFuture<Void> {
        let busy = open.wrappingAdd(1, ordering: .relaxed).newValue > maxConnections
        channel.closeFuture.whenComplete { [self] _ in open.wrappingSubtract(1, ordering: .relaxed) }
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(EgressConnection(proxy: self, busy: busy))
        }
    }

    /// The soft RLIMIT_NOFILE, which is what accept() runs into (unlimited
    /// is the largest rlim_t, clamped).
    private static func openFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }

    struct Request: Sendable {
        var connect: Bool
        var host: HostName
        var port: Int
        /// The request head to send upstream (absolute form rewritten to origin form).
        var head: [UInt8]
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
