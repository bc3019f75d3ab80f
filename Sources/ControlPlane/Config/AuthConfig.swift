import Foundation

/// `server.auth`: who may call the API over TCP, and with which scope.
public struct AuthConfig: Codable, Sendable {
    public enum Mode: String, Codable, Sendable {
        /// No token: only on a loopback host, where the CSRF and rebinding
        /// checks still apply (see `Authenticator`).
        case none
        /// `Authorization: Bearer <token>` on every TCP request but the health checks.
        case bearer
    }

    public struct Token: Codable, Sendable {
        /// Who this token is, as recorded in the audit chain (`token:<name>`).
        public var name: String
        public var scope: Scope
        /// The value is the gateway's environment variable of this name…
        public var env: String?
        /// …or this secret from the secrets store.
        public var secret: String?
    }

    /// Default: `none` on a loopback host, `bearer` on any other.
    public var mode: Mode?
    public var tokens: [Token] = []
    public init() {}

    public func effectiveMode(host: String) -> Mode {
        mode ?? (Self.isLoopback(host) ? .none : .bearer)
    }

    /// `127.0.0.0/8`, `::1` and `localhost`: reachable from this host only.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "::1" || h == "[::1]" { return true }
        let parts = h.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// What a caller may do. Each includes the ones before it.
public enum Scope: String, Codable, Sendable, CaseIterable, Comparable {
    /// Reads only: runs, events, approvals, workflows, workers, the audit.
    case viewer
    /// Also starts and cancels runs and decides approvals.
    case `operator`
    /// Everything, including reload.
    case admin

    public static func < (a: Scope, b: Scope) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

extension AuthConfig {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mode = try c.decodeIfPresent(Mode.self, forKey: .mode)
        tokens = try c.decodeIfPresent([Token].self, forKey: .tokens) ?? []
    }

    /// The rules that decode but make no sense, naming the key.
    func validate(host: String, file: String) throws {
        func bad(_ key: String, _ message: String) -> ConfigError { ConfigError(file: file, line: nil, keyPath: key, message: message) }
        if mode == AuthConfig.Mode.none, !Self.isLoopback(host) {
            throw bad("server.auth.mode", "none is refused when server.host (\(host)) is not a loopback address: anyone who can reach it could start runs and decide approvals; use bearer with tokens")
        }
        if effectiveMode(host: host) == .bearer, tokens.isEmpty {
            throw bad("server.auth.tokens", "bearer authentication needs at least one token (name, scope, and env or secret)")
        }
        var names = Set<String>()
        for (i, t) in tokens.enumerated() {
            let key = "server.auth.tokens[\(i)]"
            guard !t.name.isEmpty, t.name.count <= 64,
                  t.name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0) }) else {
                throw bad(key + ".name", "must be 1 to 64 letters, digits, dots, underscores or hyphens")
            }
            guard names.insert(t.name).inserted else { throw bad(key + ".name", "'\(t.name)' is used twice") }
            guard (t.env == nil) != (t.secret == nil) else { throw bad(key, "needs exactly one of env or secret") }
        }
    }
}
