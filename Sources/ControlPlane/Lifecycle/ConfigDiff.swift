import Foundation

/// A config as key paths (`server.maxConcurrentRuns`, `server.auth.tokens[0].name`),
/// so a change can be audited, reported and checked against the keys that may
/// change live, one key at a time.
enum ConfigDiff {
    struct Change: Codable, Sendable, Equatable {
        let key: String
        /// The value as JSON text; nil when the key is new or removed.
        let old: String?
        let new: String?
    }

    /// Every leaf is shown: no key of the config holds a secret's value (tokens
    /// and secrets are named by environment variable or secret name), and the
    /// loader refuses any key it does not know, so none can be pasted in.
    static func flatten(_ config: GatewayConfig) -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(config), let root = try? JSONSerialization.jsonObject(with: data) else { return [:] }
        var out: [String: String] = [:]
        func walk(_ value: Any, _ path: String) {
            if let map = value as? [String: Any] {
                if map.isEmpty, !path.isEmpty { out[path] = "{}" }
                for (k, v) in map { walk(v, path.isEmpty ? k : path + "." + k) }
            } else if let list = value as? [Any], list.contains(where: { $0 is [String: Any] }) {
                for (i, v) in list.enumerated() { walk(v, "\(path)[\(i)]") }
            } else {
                if let d = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) {
                    out[path] = String(decoding: d, as: UTF8.self)
                }
            }
        }
        walk(root, "")
        return out
    }

    /// What differs, sorted by key.
    static func changes(from old: GatewayConfig, to new: GatewayConfig) -> [Change] {
        let a = flatten(old), b = flatten(new)
        return Set(a.keys).union(b.keys).sorted().compactMap { key in
            a[key] == b[key] ? nil : Change(key: key, old: a[key], new: b[key])
        }
    }
}
