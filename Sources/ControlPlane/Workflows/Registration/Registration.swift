import Foundation

/// What the API can register: a path on this host or an uploaded zip. A config
/// dir is not a registration, so it is not a case here.
public enum RegisteredSource: Sendable, Equatable {
    /// A workflow file or a directory of them, by its real path (symlinks
    /// resolved when it was registered).
    case path(String)
    /// A zip sent to the API, extracted into `stateDir/registered/<sha256>/`.
    case upload(sha256: String)

    var typeName: String {
        switch self {
        case .path: "path"
        case .upload: "upload"
        }
    }

    /// What the audit records about it.
    var auditDetails: [String: String] {
        switch self {
        case let .path(p): ["source": "path", "path": p]
        case let .upload(sha): ["source": "upload", "sha256": sha]
        }
    }
}

/// One registration: its source and the workflow ids it registered, as they
/// were validated then. A file added to a registered directory later is not
/// registered by it; that takes a registration of its own.
public struct Registration: Sendable, Equatable, Codable {
    public var source: RegisteredSource
    public var workflows: [String]
    public var registeredAt: Date
    public var registeredBy: String
}

/// Where a listed workflow comes from.
public enum WorkflowOrigin: Sendable, Equatable {
    /// One of config's `workflows.dirs`.
    case dir(String)
    /// Registered over the API.
    case registered(RegisteredSource, at: Date, by: String)
}

/// Why a registration (or a replacement, or an unregistration) was refused.
/// Each case is one HTTP status; the message names the rule.
public enum RegistrationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 400: the source is malformed, missing, empty or holds what is not allowed.
    case badSource(String)
    /// 403: the path resolves outside where registration may read.
    case forbidden(String)
    /// 404: no registered workflow has that id.
    case notFound(String)
    /// 409: the id is taken (by a config dir, or by another registration).
    case conflict(String)
    /// 413: over `workflows.upload` caps.
    case tooLarge(String)
    /// 422: a workflow in the source does not validate; nothing was registered.
    case invalid([WorkflowIssue])
    /// 503: registration is not possible on this gateway now.
    case unavailable(String)

    public var description: String {
        switch self {
        case let .badSource(m), let .forbidden(m), let .notFound(m), let .conflict(m), let .tooLarge(m), let .unavailable(m): m
        case let .invalid(issues): "\(issues.count) problem\(issues.count == 1 ? "" : "s") in the workflows: "
            + issues.prefix(3).map(\.description).joined(separator: "; ")
        }
    }
}

// The wire shape: {"type": "path", "path"} | {"type": "upload", "sha256"}, in
// the API's entries and in the registrations file alike.
extension RegisteredSource: Codable {
    private enum CodingKeys: String, CodingKey { case type, path, sha256 }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .type) {
        case "path": self = .path(try c.decode(String.self, forKey: .path))
        case "upload": self = .upload(sha256: try c.decode(String.self, forKey: .sha256))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown source type '\(other)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(typeName, forKey: .type)
        switch self {
        case let .path(p): try c.encode(p, forKey: .path)
        case let .upload(sha): try c.encode(sha, forKey: .sha256)
        }
    }
}
