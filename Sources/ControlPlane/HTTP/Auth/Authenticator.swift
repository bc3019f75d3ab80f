import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Decides who a request comes from and whether it may do what it asks.
///
/// - On `stateDir/gateway.sock`, the kernel says who the peer is
///   (`SO_PEERCRED`): the gateway's own user and root are `admin`, members of
///   `server.socketGroup` are `operator`, anyone else is refused.
/// - On TCP with `server.auth.mode: bearer`, the token decides: compared in
///   constant time (SHA-256 of the presented token against each configured
///   token's, every byte of every token), 401 without a valid one, 403 when its
///   scope is too small.
/// - On TCP with `mode: none` (a loopback host only), a caller is `loopback`
///   with every scope, but a browser must not be able to act for it: the `Host`
///   header must name the gateway (DNS rebinding), an `Origin` header must be
///   the gateway's own, and a request that changes state must say
///   `Content-Type: application/json`, which no cross-site form can send.
///
/// Every refusal is audited as `api.denied`, at most 10 a second on average
/// (bursts of 50); the entries after a quiet spell say how many were suppressed.
final class Authenticator: Sendable {
    struct Token: Sendable {
        let name: String
        let scope: Scope
        let digest: [UInt8]
    }

    let mode: AuthConfig.Mode
    /// Replaced whole by a reload that changes `server.auth.tokens`.
    private let tokenTable: Mutex<[Token]>
    private var tokens: [Token] { tokenTable.withLock { $0 } }
    private let hostNames: Set<String>
    private let port = Mutex<Int?>(nil)
    private let ownerUID: UInt32
    private let socketGID: UInt32?
    private let audit: AuditLog
    private let throttle = Mutex(AuditThrottle(perSecond: 10, burst: 50))
    /// `METHOD /hooks/<path>` of the webhooks whose triggers say `public: true`.
    let publicHooks = Mutex<Set<String>>([])

    /// Token values shorter than this are refused at start: guessable.
    static let minimumTokenLength = 16

    init(config: GatewayConfig.Server, audit: AuditLog, file: String,
         value: (AuthConfig.Token) throws -> String?) throws {
        mode = config.auth.effectiveMode(host: config.host)
        tokenTable = Mutex(try Self.resolve(config.auth.tokens, file: file, value: value))
        var names: Set<String> = ["localhost", "127.0.0.1", "::1"]
        let own = config.host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if own != "0.0.0.0", own != "::" { names.insert(own) }
        for h in config.allowedHosts { names.insert(h.lowercased()) }
        hostNames = names
        ownerUID = geteuid()
        socketGID = config.socketGroup.flatMap { getgrnam($0)?.pointee.gr_gid }
        self.audit = audit
    }

    /// A reload's tokens: every one must resolve, or none replaces the old set.
    func replaceTokens(_ configured: [AuthConfig.Token], file: String, value: (AuthConfig.Token) throws -> String?) throws {
        let new = try Self.resolve(configured, file: file, value: value)
        tokenTable.withLock { $0 = new }
    }

    /// Each token's value, from the environment or the secrets store, kept only as its digest.
    static func resolve(_ configured: [AuthConfig.Token], file: String, value: (AuthConfig.Token) throws -> String?) throws -> [Token] {
        var tokens: [Token] = []
        for (i, t) in configured.enumerated() {
            let key = "server.auth.tokens[\(i)]"
            let source = t.env.map { "environment variable \($0)" } ?? "secret \(t.secret ?? "")"
            guard let v = try value(t), !v.isEmpty else {
                throw ConfigError(file: file, line: nil, keyPath: key, message: "token '\(t.name)': \(source) is not set")
            }
            guard v.utf8.count >= Self.minimumTokenLength else {
                throw ConfigError(file: file, line: nil, keyPath: key,
                                  message: "token '\(t.name)': \(source) is shorter than \(Self.minimumTokenLength) characters")
            }
            tokens.append(Token(name: t.name, scope: t.scope, digest: Array(SHA256.hash(data: Data(v.utf8)))))
        }
        return tokens
    }

    /// The port TCP listens on, once bound: a `Host` header's port must be it.
    func listening(on port: Int) { self.port.withLock { $0 = port } }

    /// The caller, or an `APIError` to answer with. nil: a public route called without credentials.
    func authenticate(_ request: Request, channel: any Channel) async throws -> Principal? {
        // A public webhook is authenticated by its signature, if any, in its
        // handler: neither a token nor a browser's headers are asked of its sender.
        if request.uri.path.hasPrefix("/hooks/"),
           publicHooks.withLock({ $0.contains("\(request.method.rawValue) \(RouteAccess.canonical(request.uri.path))") }) {
            return nil
        }
        let required = RouteAccess.required(request.method, request.uri.path)
        do {
            if case .unixDomainSocket = channel.localAddress {
                return try await socketCaller(channel, required: required)
            }
            return try tcpCaller(request, required: required)
        } catch let error as APIError {
            deny(request, channel: channel, error)
            throw error
        }
    }

    private func socketCaller(_ channel: any Channel, required: Scope?) async throws -> Principal {
        guard let asked = PeerCredentials.of(channel) else {
            throw APIError(status: .forbidden, code: .forbidden, message: "the peer of this socket cannot be identified")
        }
        let cred = try await asked.get()
        let scope: Scope
        if cred.uid == 0 || cred.uid == ownerUID {
            scope = .admin
        } else if let gid = socketGID, cred.gid == gid || Self.supplementaryGroups(of: cred.pid).contains(gid) {
            scope = .operator
        } else {
            throw APIError(status: .forbidden, code: .forbidden, message: "uid \(cred.uid) may not use this socket (server.socketGroup)")
        }
        let principal = Principal(via: .unixSocket(uid: cred.uid), scope: scope, name: "unix:" + Self.userName(cred.uid))
        try check(principal, required: required)
        return principal
    }

    private func tcpCaller(_ request: Request, required: Scope?) throws -> Principal? {
        switch mode {
        case .none:
            try checkBrowserSafety(request)
            return Principal(via: .loopback, scope: .admin, name: "loopback")
        case .bearer:
            guard let header = request.headers[.authorization] else {
                if required == nil { return nil }
                throw APIError(status: .unauthorized, code: .unauthorized,
                               message: "this gateway needs a bearer token: Authorization: Bearer <token>",
                               headers: [.wwwAuthenticate: #"Bearer realm="skelm""#])
            }
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer", let token = match(String(parts[1])) else {
                throw APIError(status: .unauthorized, code: .unauthorized, message: "the bearer token is not valid",
                               headers: [.wwwAuthenticate: #"Bearer realm="skelm", error="invalid_token""#])
            }
            let principal = Principal(via: .token(name: token.name), scope: token.scope, name: "token:" + token.name)
            try check(principal, required: required)
            return principal
        }
    }

    private func check(_ p: Principal, required: Scope?) throws {
        guard let required, p.scope < required else { return }
        throw APIError(status: .forbidden, code: .forbidden,
                       message: "\(p.name) has scope \(p.scope.rawValue); this needs \(required.rawValue)")
    }

    /// Every configured token is compared, each over all its bytes, so the time
    /// taken says nothing about which token (or how much of one) matched.
    private func match(_ presented: String) -> Token? {
        let digest = Array(SHA256.hash(data: Data(presented.utf8)))
        var found: Token?
        for t in tokens {
            var diff: UInt8 = 0
            for i in 0..<digest.count { diff |= digest[i] ^ t.digest[i] }
            if diff == 0 { found = t }
        }
        return found
    }

    /// With auth off, a browser on this host is the threat: a page it loaded may
    /// send requests here (CSRF) or resolve its own name to 127.0.0.1 (DNS
    /// rebinding). Neither can send a `Host` naming the gateway with a JSON
    /// content type without the browser's preflight, which the gateway never grants.
    private func checkBrowserSafety(_ request: Request) throws {
        let host = request.head.authority ?? ""
        guard hostAllowed(host) else {
            throw APIError(status: .forbidden, code: .hostNotAllowed,
                           message: "Host '\(host)' does not name this gateway (add it to server.allowedHosts if it should)")
        }
        if let origin = request.headers[.origin] {
            let stripped = origin.hasPrefix("http://") ? String(origin.dropFirst(7)) : nil
            guard let stripped, hostAllowed(stripped) else {
                throw APIError(status: .forbidden, code: .originNotAllowed, message: "requests from origin \(origin) are refused")
            }
        }
        // A webhook fires a run whatever its method: a GET one too must not be an <img> away.
        if RouteAccess.changesState(request.method) || request.uri.path.hasPrefix("/hooks/") {
            let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
            guard let type, Self.writeTypes.contains(type) else {
                throw APIError(status: .unsupportedMediaType, code: .unsupportedMediaType,
                               message: "a request that changes state must have Content-Type: application/json (or application/yaml for a workflow)")
            }
        }
    }

    /// Content types a cross-site form or a no-cors fetch cannot send.
    static let writeTypes: Set<String> = ["application/json", "application/yaml", "application/x-yaml"]

    /// `authority` is `host[:port]`; without a port (0 here: no real port is 0) any is fine.
    private func hostAllowed(_ authority: String) -> Bool {
        guard let parsed = HostName.parseAuthority(authority, defaultPort: 0), hostNames.contains(parsed.host.text) else { return false }
        return parsed.port == 0 || port.withLock { $0 == nil || $0 == parsed.port }
    }

    // MARK: Auditing refusals

    private func deny(_ request: Request, channel: any Channel, _ error: APIError) {
        let suppressed = throttle.withLock { $0.admit() }
        guard let suppressed else { return }
        var details = [
            "method": request.method.rawValue, "path": request.uri.path, "status": "\(error.status.code)",
            "code": error.code.rawValue, "reason": error.message,
            "peer": channel.remoteAddress.map { "\($0)" } ?? "unix socket",
        ]
        if suppressed > 0 { details["suppressedBefore"] = "\(suppressed)" }
        audit.record(actor: "gateway", action: "api.denied", details: details)
    }

    // MARK: Peers

    static func userName(_ uid: UInt32) -> String {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 1024)
        if getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, let r = result, let name = r.pointee.pw_name {
            return String(cString: name)
        }
        return "uid-\(uid)"
    }

    /// The peer process's supplementary groups (`SO_PEERCRED` carries only its primary one).
    static func supplementaryGroups(of pid: Int32) -> Set<UInt32> {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
        return Set(line.dropFirst(7).split(separator: " ").compactMap { UInt32($0.trimmingCharacters(in: .whitespaces)) })
    }
}
