import Foundation

extension JSONSchema {
    /// What a `$ref` names.
    enum Reference: Equatable {
        /// A place in this schema, as the tokens of a JSON pointer (`[]` is the root).
        case local([String])
        /// Another document (or one this schema cannot identify as itself).
        case remote
        /// A plain-name fragment (`#name`), which needs `$anchor`.
        case anchor
        /// A fragment that is not a JSON pointer: a bad escape or percent-encoding.
        case malformed
    }

    /// Reads a `$ref`. Only the root may carry an `$id`, so a reference can name this
    /// schema either by an empty base (`#/$defs/x`) or by that `$id`; every other
    /// base is another document, which is never fetched.
    static func reference(_ ref: String, rootId: String?) -> Reference {
        let hash = ref.firstIndex(of: "#")
        let base = hash.map { String(ref[..<$0]) } ?? ref
        let fragment = hash.map { String(ref[ref.index(after: $0)...]) } ?? ""
        if !base.isEmpty {
            let own = rootId.map { id in id.firstIndex(of: "#").map { String(id[..<$0]) } ?? id }
            guard base == own else { return .remote }
        }
        guard let decoded = fragment.removingPercentEncoding else { return .malformed }
        if decoded.isEmpty { return .local([]) }
        guard decoded.hasPrefix("/") else { return .anchor }
        var tokens: [String] = []
        for raw in decoded.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            guard let token = unescapePointerToken(raw) else { return .malformed }
            tokens.append(token)
        }
        return .local(tokens)
    }

    /// `~1` is `/` and `~0` is `~` (RFC 6901); any other `~` is an error.
    static func unescapePointerToken(_ raw: Substring) -> String? {
        var out = ""
        var it = raw.makeIterator()
        while let c = it.next() {
            guard c == "~" else {
                out.append(c)
                continue
            }
            switch it.next() {
            case "0": out.append("~")
            case "1": out.append("/")
            default: return nil
            }
        }
        return out
    }

    /// The value a JSON pointer leads to, nil when it leads nowhere.
    static func value(at tokens: [String], in root: JSONValue) -> JSONValue? {
        var here = root
        for token in tokens {
            switch here {
            case let .object(o):
                guard let next = o[token] else { return nil }
                here = next
            case let .array(a):
                // RFC 6901: decimal digits without a leading zero.
                guard let i = Int(token), token.allSatisfy(\.isASCII), token == String(i), a.indices.contains(i) else { return nil }
                here = a[i]
            default:
                return nil
            }
        }
        return here
    }
}
