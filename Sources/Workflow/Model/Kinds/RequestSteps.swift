import Foundation

/// One HTTP request. The worker evaluates its templates; the control plane
/// makes the request (under the step's `allowHosts`, adding any credential
/// config or the workflow binds to the host), so no credential enters the
/// sandbox. Output: `{status, headers, body}`, the body parsed as JSON when it is JSON.
public struct HTTPStep: Codable, Sendable, Equatable {
    public enum Method: String, Codable, Sendable, CaseIterable {
        case GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS
    }

    public enum Body: Codable, Sendable, Equatable {
        /// Sent as `application/json`; templates inside are evaluated.
        case json(JSONValue)
        /// Sent as `text/plain; charset=utf-8` unless a header says otherwise.
        case text(String)
        /// Sent as `application/x-www-form-urlencoded`.
        case form([String: String])
    }

    /// A status the step accepts: one code, or a class (`2xx` is `.class(2)`).
    public enum StatusMatch: Codable, Sendable, Equatable, CustomStringConvertible {
        case code(Int)
        case `class`(Int)

        public func matches(_ status: Int) -> Bool {
            switch self {
            case let .code(c): status == c
            case let .class(c): status / 100 == c
            }
        }

        public var description: String {
            switch self {
            case let .code(c): "\(c)"
            case let .class(c): "\(c)xx"
            }
        }

        /// `200`, `"404"` or `"2xx"`.
        public init?(_ text: String) {
            if text.count == 3, text.hasSuffix("xx"), let c = Int(text.prefix(1)), (1...5).contains(c) {
                self = .class(c)
            } else if let c = Int(text), (100...599).contains(c) {
                self = .code(c)
            } else {
                return nil
            }
        }
    }

    /// How the response body becomes the output's `body`.
    public enum ResponseType: String, Codable, Sendable, CaseIterable {
        /// JSON when the response says it is JSON (and parses), else text.
        case auto
        /// Must parse as JSON, or the step fails.
        case json
        /// Always text.
        case text
    }

    public var method: Method
    public var url: String
    public var headers: [String: String]
    public var query: [String: String]
    public var body: Body?
    public var expectStatus: [StatusMatch]
    public var responseType: ResponseType

    public init(method: Method = .GET, url: String, headers: [String: String] = [:], query: [String: String] = [:],
                body: Body? = nil, expectStatus: [StatusMatch] = [.class(2)], responseType: ResponseType = .auto) {
        self.method = method
        self.url = url
        self.headers = headers
        self.query = query
        self.body = body
        self.expectStatus = expectStatus
        self.responseType = responseType
    }
}

/// One chat completion against an OpenAI-compatible provider named in config.
/// Output: the reply's text, or with `responseFormat` the reply parsed as JSON
/// and checked against that schema. Tokens stream as `infer.delta` events.
public struct InferStep: Codable, Sendable, Equatable {
    public struct Message: Codable, Sendable, Equatable {
        public enum Role: String, Codable, Sendable, CaseIterable { case system, user, assistant }
        public var role: Role
        /// A template.
        public var content: String
        public init(role: Role, content: String) {
            self.role = role
            self.content = content
        }
    }

    public var provider: String
    /// Overrides the provider's default model.
    public var model: String?
    /// Either `messages`, or `prompt` (with an optional `system`).
    public var messages: [Message]?
    public var prompt: String?
    public var system: String?
    public var temperature: Double?
    public var maxTokens: Int?
    /// A JSON Schema the reply must satisfy; asked of the provider as `json_schema`.
    public var responseFormat: JSONValue?

    public init(provider: String, model: String? = nil, messages: [Message]? = nil, prompt: String? = nil, system: String? = nil,
                temperature: Double? = nil, maxTokens: Int? = nil, responseFormat: JSONValue? = nil) {
        self.provider = provider
        self.model = model
        self.messages = messages
        self.prompt = prompt
        self.system = system
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.responseFormat = responseFormat
    }
}

/// A credential the control plane adds to requests to one host, on the way
/// out: `header: format` with the secret's value in place of `{}`. Bound in
/// config (`egress.inject`) or in a workflow (`inject`).
public struct CredentialInjection: Codable, Sendable, Equatable {
    /// A host name, optionally `:port`; matched exactly, never by suffix.
    public var host: String
    public var header: String
    public var secret: String
    public var format: String

    public init(host: String, header: String = "Authorization", secret: String, format: String = "Bearer {}") {
        self.host = host
        self.header = header
        self.secret = secret
        self.format = format
    }

    /// `header` and `format` may be left out (config's `egress.inject`).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(host: try c.decode(String.self, forKey: .host),
                  header: try c.decodeIfPresent(String.self, forKey: .header) ?? "Authorization",
                  secret: try c.decode(String.self, forKey: .secret),
                  format: try c.decodeIfPresent(String.self, forKey: .format) ?? "Bearer {}")
    }
}

/// What makes a credential binding unusable, in words for the loader and config.
public enum CredentialRules {
    /// Headers a credential may not set: they frame the request, not authorize it.
    static let reserved: Set<String> = ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "proxy-connection"]

    public static func problems(_ c: CredentialInjection) -> [String] {
        var out: [String] = []
        let host = c.host.lowercased()
        if host.isEmpty || host.contains("*") || host.contains("/") || host.contains("@") || host.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7f }) {
            out.append("host '\(c.host)' must be one host name (optionally :port), matched exactly: no wildcards")
        }
        if !isToken(c.header) { out.append("header '\(c.header)' is not a valid header name") }
        if reserved.contains(c.header.lowercased()) { out.append("header '\(c.header)' frames the request and cannot carry a credential") }
        if c.format.components(separatedBy: "{}").count != 2 { out.append("format must contain {} exactly once, where the secret's value goes") }
        if c.format.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { out.append("format may not contain control characters") }
        if c.secret.isEmpty { out.append("secret must name a secret") }
        return out
    }

    /// RFC 9110 token: what a header name or a method may be.
    public static func isToken(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }
}

/// What an `http` step's URL must be, checked at load for a literal URL and
/// in the control plane for every request.
public enum HTTPURLRule {
    public static func problem(_ url: String) -> String? {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let host = c.host, !host.isEmpty else {
            return "'\(url)' is not an absolute URL"
        }
        guard scheme == "http" || scheme == "https" else { return "'\(scheme)' URLs are not supported: http or https" }
        if c.user != nil || c.password != nil { return "credentials in the URL are refused: bind them to the host with inject" }
        return nil
    }
}
