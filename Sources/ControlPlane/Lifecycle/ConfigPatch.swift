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

    /// The keys `PATCH /v1/config` may change, each with where it lives: one
    /// list, so the keys shown, accepted and set cannot drift apart.
    enum HotKey: String, CaseIterable {
        case maxConcurrentRuns = "server.maxConcurrentRuns"
        case runTimeoutSeconds = "server.runTimeoutSeconds"
        case maxRunStorageMB = "server.maxRunStorageMB"
        case maxBatchItems = "server.maxBatchItems"
        case drainTimeoutSeconds = "server.drainTimeoutSeconds"
        case minSpare = "workers.minSpare"
        case maxWorkers = "workers.max"
        case stepTimeoutSeconds = "workers.limits.timeoutSeconds"

        func set(_ value: Int, on config: inout GatewayConfig) {
            switch self {
            case .maxConcurrentRuns: config.server.maxConcurrentRuns = value
            case .runTimeoutSeconds: config.server.runTimeoutSeconds = value
            case .maxRunStorageMB: config.server.maxRunStorageMB = value
            case .maxBatchItems: config.server.maxBatchItems = value
            case .drainTimeoutSeconds: config.server.drainTimeoutSeconds = value
            case .minSpare: config.workers.minSpare = value
            case .maxWorkers: config.workers.max = value
            case .stepTimeoutSeconds: config.workers.limits.timeoutSeconds = value
            }
        }
    }

    public static var hotKeys: [String] { HotKey.allCases.map(\.rawValue) }

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
            guard let hot = HotKey(rawValue: key) else { throw .notHot(key) }
            guard case let .number(n) = value, n == n.rounded(), abs(n) < 1e15 else {
                throw .badValue(key, "must be an integer")
            }
            hot.set(Int(n), on: &new)
        }
        do { try new.validate(file: file) } catch let error as ConfigError {
            throw .badValue(error.keyPath, error.message)
        } catch {
            throw .invalid("\(error)")
        }
        return new
    }
}
