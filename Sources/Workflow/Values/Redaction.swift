/// Replaces every occurrence of a secret value with `***`, in text and in every
/// string inside a JSON value. Longer secrets first, so one that contains
/// another is replaced whole.
public struct Redactor: Sendable {
    public let secrets: [String]

    public init(_ secrets: some Sequence<String>) {
        self.secrets = Set(secrets).filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    public var isEmpty: Bool { secrets.isEmpty }

    public func text(_ s: String) -> String {
        guard !secrets.isEmpty else { return s }
        var out = s
        for secret in secrets where out.contains(secret) { out = out.replacingOccurrences(of: secret, with: "***") }
        return out
    }

    public func json(_ v: JSONValue) -> JSONValue {
        guard !secrets.isEmpty else { return v }
        switch v {
        case let .string(s): return .string(text(s))
        case let .array(a): return .array(a.map(json))
        case let .object(o):
            var out: [String: JSONValue] = [:]
            for (k, x) in o { out[text(k)] = json(x) }
            return .object(out)
        default: return v
        }
    }
}

import Foundation
