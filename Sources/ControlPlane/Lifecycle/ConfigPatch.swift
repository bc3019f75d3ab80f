import Foundation
import Workflow

/// `PATCH /v1/config`: the keys an operator may change on a running gateway
/// without editing the file. Only limits that are safe to turn either way are
/// here; permissions, secrets, tokens and anything that widens what a step may
/// do are changed in the file (and reviewed there), never over the API.
public enum ConfigPatch {
    public enum Refusal: Error, Sendable, CustomStringConvertible {
        case notHot(String)
        case badValue(String, String)
        case invalid(String)

        public var description: String {
            switch self {
            case let .notHot(key):
                "'\(key)' cannot be changed over the API (hot keys: \(ConfigPatch.hotKeys.joined(separator: ", "))); edit the config file and reload"
            case let .badValue(key, why): "'\(key)': \(why)"
            case let .invalid(why): why
            }
        }
    }

    /// One key and its new value (Sendable, unlike a tuple of them).
    struct Item: Sendable {
        let key: String
        let value: JSONValue
    }

    public static let hotKeys = [
        "server.maxConcurrentRuns", "server.runTimeoutSeconds", "server.maxRunStorageMB", "server.maxBatchItems",
        "server.drainTimeoutSeconds", "workers.minSpare", "workers.max", "workers.limits.timeoutSeconds",
    ]

    /// Sets one hot key; false when `key` is not one.
    static func set(_ key: String, _ value: Int, on config: inout GatewayConfig) -> Bool {
        switch key {
        case "server.maxConcurrentRuns": config.server.maxConcurrentRuns = value
        case "server.runTimeoutSeconds": config.server.runTimeoutSeconds = value
        case "server.maxRunStorageMB": config.server.maxRunStorageMB = value
        case "server.maxBatchItems": config.server.maxBatchItems = value
        case "server.drainTimeoutSeconds": config.server.drainTimeoutSeconds = value
        case "workers.minSpare": config.workers.minSpare = value
        case "workers.max": config.workers.max = value
        case "workers.limits.timeoutSeconds": config.workers.limits.timeoutSeconds = value
        default: return false
        }
        return true
    }

    /// A JSON object as key paths: `{"server": {"maxConcurrentRuns": 4}}` and
    /// `{"server.maxConcurrentRuns": 4}` say the same.
    public static func flatten(_ body: [String: JSONValue]) -> [(key: String, value: JSONValue)] {
        var out: [(String, JSONValue)] = []
        func walk(_ value: JSONValue, _ path: String) {
            if case let .object(map) = value, !map.isEmpty {
                for (k, v) in map.sorted(by: { $0.key < $1.key }) { walk(v, path.isEmpty ? k : path + "." + k) }
            } else {
                out.append((path, value))
            }
        }
        walk(.object(body), "")
        return out
    }

    static func apply(_ changes: [(key: String, value: JSONValue)], to config: GatewayConfig, file: String) throws(Refusal) -> GatewayConfig {
        guard !changes.isEmpty else { throw .invalid("the patch names no key") }
        var new = config
        for (key, value) in changes {
            guard hotKeys.contains(key) else { throw .notHot(key) }
            guard case let .number(n) = value, n == n.rounded(), abs(n) < 1e15 else {
                throw .badValue(key, "must be an integer")
            }
            _ = set(key, Int(n), on: &new)
        }
        do { try new.validate(file: file) } catch let error as ConfigError {
            throw .badValue(error.keyPath, error.message)
        } catch {
            throw .invalid("\(error)")
        }
        return new
    }
}
