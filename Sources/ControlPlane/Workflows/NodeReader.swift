import Workflow
import Yams

/// Reads a YAML node tree into workflow values, collecting every problem with
/// its key path and line instead of stopping at the first.
struct NodeReader {
    let file: String
    var issues: [WorkflowIssue] = []
    /// The workflow's `env`, read before its steps: a step's script that reads
    /// an env value made from input is as exposed as one that reads the input.
    var workflowEnv: [String: String] = [:]

    mutating func issue(_ path: String, _ node: Node?, _ message: String) {
        issues.append(WorkflowIssue(file: file, path: path, line: node?.mark.map(\.line), message: message))
    }

    /// A mapping's entries, after checking that every key is one of `allowed`.
    mutating func mapping(_ node: Node, _ path: String, allowed: Set<String>) -> [String: Node]? {
        guard let m = node.mapping else {
            issue(path, node, "must be a mapping")
            return nil
        }
        var out: [String: Node] = [:]
        for (k, v) in m {
            let key = k.string ?? ""
            let full = path.isEmpty ? key : "\(path).\(key)"
            if !allowed.contains(key) {
                issue(full, k, "unknown key (expected one of: \(allowed.sorted().joined(separator: ", ")))")
            } else {
                out[key] = v
            }
        }
        return out
    }

    mutating func string(_ node: Node?, _ path: String) -> String? {
        guard let node else { return nil }
        guard case .scalar = node, node.tagName != .null else {
            issue(path, node, "must be a string")
            return nil
        }
        return node.string
    }

    mutating func bool(_ node: Node?, _ path: String) -> Bool? {
        guard let node else { return nil }
        guard node.tagName == .bool, let b = node.bool else {
            issue(path, node, "must be true or false")
            return nil
        }
        return b
    }

    /// One of an enum's raw values; the error lists them.
    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node?, _ path: String, as: T.Type) -> T? where T.RawValue == String {
        guard let text = string(node, path) else { return nil }
        guard let value = T(rawValue: text) else {
            issue(path, node, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
            return nil
        }
        return value
    }

    mutating func int(_ node: Node?, _ path: String, range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard node.tagName == .int, let n = node.int else {
            issue(path, node, "must be an integer")
            return nil
        }
        guard range.contains(n) else {
            issue(path, node, "must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return n
    }

    mutating func double(_ node: Node?, _ path: String) -> Double? {
        guard let node else { return nil }
        guard node.tagName == .int || node.tagName == .float, let n = node.float else {
            issue(path, node, "must be a number")
            return nil
        }
        return n
    }

    mutating func strings(_ node: Node?, _ path: String) -> [String]? {
        guard let node else { return nil }
        guard let seq = node.sequence else {
            issue(path, node, "must be a list of strings")
            return nil
        }
        return seq.enumerated().compactMap { string($0.element, "\(path)[\($0.offset)]") }
    }

    mutating func stringMap(_ node: Node?, _ path: String) -> [String: String]? {
        guard let node else { return nil }
        guard let m = node.mapping else {
            issue(path, node, "must be a mapping of names to strings")
            return nil
        }
        var out: [String: String] = [:]
        for (k, v) in m {
            let key = k.string ?? ""
            if case .scalar = v, v.tagName != .null { out[key] = v.string } else { issue("\(path).\(key)", v, "must be a string") }
        }
        return out
    }

    /// The longest duration any key takes (a year, in milliseconds): past it a
    /// value is refused, so no conversion can overflow.
    static let maxDurationMs: Double = 366 * 86_400_000

    /// `30s`, `500ms`, `2m`, `1h`, or a number of seconds; at most a year.
    mutating func durationMs(_ node: Node?, _ path: String) -> Int? {
        guard let node else { return nil }
        if node.tagName == .int || node.tagName == .float, let s = node.float, s > 0, s * 1000 <= Self.maxDurationMs { return Int(s * 1000) }
        if let text = node.string, let ms = Self.parseDuration(text), ms > 0 { return ms }
        issue(path, node, "must be a duration such as 500ms, 30s, 5m or 1h (at most a year)")
        return nil
    }

    static func parseDuration(_ text: String) -> Int? {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            // `infh`, `nanh` and `1e300s` parse as Doubles: only finite values within a year convert.
            if let n = Double(text.dropLast(suffix.count)), n.isFinite, abs(n * factor) <= maxDurationMs { return Int(n * factor) }
        }
        return nil
    }

    /// Any node as JSON: YAML's resolved tags decide numbers, booleans and null.
    static func json(_ node: Node) -> JSONValue {
        switch node {
        case let .scalar(s):
            switch node.tagName {
            case .null: return .null
            case .bool: return .bool(node.bool ?? false)
            case .int, .float: return .number(node.float ?? 0)
            default: return .string(s.string)
            }
        case let .sequence(seq): return .array(seq.map(json))
        case let .mapping(m):
            var out: [String: JSONValue] = [:]
            for (k, v) in m { out[k.string ?? ""] = json(v) }
            return .object(out)
        case .alias: return .null // compose resolves aliases, and files with any are refused before it (YAMLLimits)
        }
    }
}

extension Node {
    /// The tag YAML's resolver gave the node (int, float, bool, null, str, …).
    var tagName: Tag.Name { Tag.Name(rawValue: tag.rawValue) }
}
