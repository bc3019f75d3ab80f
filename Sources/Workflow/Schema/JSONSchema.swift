import Foundation

/// JSON Schema (draft 2020-12) validation for workflow `input` and `output`.
///
/// Supported, and enforced:
/// - any value: `type`, `enum`, `const`
/// - objects: `properties`, `required`, `additionalProperties`, `patternProperties`,
///   `propertyNames`, `minProperties`/`maxProperties`, `dependentRequired`, `dependentSchemas`
/// - arrays: `items`, `prefixItems`, `contains` with `minContains`/`maxContains`,
///   `uniqueItems`, `minItems`/`maxItems`
/// - strings: `minLength`/`maxLength` (in Unicode code points), `pattern`, and
///   `format` as an assertion for `date-time`, `date`, `email`, `uri`, `uuid`,
///   `ipv4`, `ipv6` and `hostname`
/// - numbers: `minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`
/// - combining: `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`
/// - references: `$ref` and `$defs`, within this one schema: `#`, JSON pointers such
///   as `#/$defs/name` (with `~0`, `~1` and percent-escapes), and the root's own `$id`
///   followed by such a fragment
/// - accepted and ignored (annotations): `title`, `description`, `default`,
///   `examples`, `$comment`, `deprecated`, `readOnly`, `writeOnly`,
///   `contentMediaType`, `contentEncoding`, `$id` at the root, and `$schema` when it
///   names a standard draft (`https://json-schema.org/draft/2020-12/schema`, or
///   2019-09, draft-07, -06, -04, whose differing keywords are refused on their own)
///
/// Everything else (`unevaluatedProperties`, `$anchor`, `$dynamicRef`, a `$id` below
/// the root, an unknown format, a `$ref` to another document, a custom metaschema,
/// a keyword whose value has the wrong shape, a `$ref` loop that never steps into
/// the value) is a problem when the workflow loads, not a keyword quietly skipped:
/// a skipped keyword would let through values the author meant to refuse. For a
/// schema that never went through `problems(in:)`, validation refuses every value
/// where it meets an unknown keyword, an unknown format or a `$ref` it cannot follow.
///
/// Hand-written: no listed package validates JSON Schema.
public struct JSONSchema: Sendable {
    public struct Violation: Sendable, Equatable, Codable, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    public let schema: JSONValue

    public init(_ schema: JSONValue) { self.schema = schema }

    /// How long one `pattern` may take against one string, in CPU time of the
    /// validating thread (`ThreadCPUTime`). Ordinary patterns take microseconds;
    /// a megabyte-long string scanned end to end takes tens of milliseconds, so
    /// the limit leaves room for that.
    public static let patternTimeLimit: Duration = .milliseconds(100)
    /// How long validating one value may take in all (CPU time, likewise), so
    /// that many strings or many patterns cannot add up what each one alone is refused.
    public static let validationTimeLimit: Duration = .milliseconds(250)
    /// How deep validation may recurse through subschemas. A value nests at most
    /// `JSONValue.maxDepth` levels and each level costs a few subschemas, so only a
    /// `$ref` that loops without stepping into the value gets near this.
    public static let maxRecursion = 400

    /// Every place the value breaks the schema, each with its path (`input.items[2].name`).
    /// A pattern that runs out of time, a validation that does, or a schema that
    /// cannot be applied is a violation: a value that could not be checked is never
    /// taken as valid.
    public func validate(_ value: JSONValue, root: String = "input") -> [Violation] {
        var checker = Checker(root: schema, deadline: ThreadCPUTime.now() + Self.validationTimeLimit)
        var out: [Violation] = []
        checker.check(value, against: schema, path: root, into: &out)
        // Recorded apart from `out`: inside `not`, `anyOf` or `oneOf` a timeout
        // would otherwise read as "this branch failed", which `not` turns into a pass.
        for v in checker.unchecked where !out.contains(v) { out.append(v) }
        if checker.outOfTime {
            out.append(Violation(path: root, message: "validation took longer than \(Self.validationTimeLimit.wholeMilliseconds) ms; the value is refused"))
        }
        return out
    }

    /// Problems with the schema itself: anything validation could not enforce as
    /// written. Each starts with `schema` and the location (`schema.properties.x: ...`).
    public static func problems(in schema: JSONValue) -> [String] {
        var walker = ProblemWalker(root: schema)
        walker.run()
        return walker.out
    }

    static let types: Set<String> = ["null", "boolean", "integer", "number", "string", "array", "object"]

    /// One validation's clock, its compiled patterns and what it could not check.
    struct Checker {
        let root: JSONValue
        let rootId: String?
        /// In `ThreadCPUTime`: the validation's CPU budget ends here.
        let deadline: Duration
        var patterns: [String: BoundedRegex?] = [:]
        var unchecked: [Violation] = []
        var outOfTime = false
        var tooDeep = false
        var depth = 0

        init(root: JSONValue, deadline: Duration) {
            self.root = root
            self.rootId = root["$id"]?.stringValue
            self.deadline = deadline
        }

        var stopped: Bool { outOfTime || tooDeep }

        mutating func regex(_ p: String) -> BoundedRegex? {
            if let known = patterns[p] { return known }
            let compiled = BoundedRegex(p)
            patterns[p] = compiled
            return compiled
        }

        /// Whether `pattern` matches `text`; nil when that could not be found out,
        /// which is recorded as a violation of its own.
        mutating func matches(_ p: String, _ text: String, path: String) -> Bool? {
            // An invalid pattern is reported when the workflow loads (`problems(in:)`).
            guard let re = regex(p) else {
                unchecked.append(Violation(path: path, message: "pattern /\(p)/ is not a valid regular expression; the value is refused"))
                return nil
            }
            let limit = min(ThreadCPUTime.now() + JSONSchema.patternTimeLimit, deadline)
            switch re.firstMatch(in: text, cpuDeadline: limit) {
            case .match: return true
            case .noMatch: return false
            case .timedOut:
                if ThreadCPUTime.now() >= deadline { outOfTime = true }
                unchecked.append(Violation(path: path, message: "pattern /\(p)/ took too long to match (limit \(JSONSchema.patternTimeLimit.wholeMilliseconds) ms); the value is refused"))
            case .failed:
                unchecked.append(Violation(path: path, message: "pattern /\(p)/ could not be matched (the regular expression engine gave up); the value is refused"))
            }
            return nil
        }

        /// Whether `v` passes `s`, its violations dropped: for `anyOf`, `oneOf`,
        /// `not`, `if` and `contains`, where failing is an answer, not an error.
        mutating func passes(_ v: JSONValue, _ s: JSONValue, path: String) -> Bool {
            var scratch: [Violation] = []
            check(v, against: s, path: path, into: &scratch)
            return scratch.isEmpty
        }
    }
}

extension JSONValue {
    var number: Double? {
        if case let .number(n) = self { return n }
        return nil
    }

    var arrayStrings: [String]? {
        guard case let .array(a) = self else { return nil }
        return a.compactMap(\.stringValue)
    }

    /// A count a keyword such as `minItems` gives: a non-negative integral number.
    var nonNegativeInt: Int? {
        guard case let .number(n) = self, n >= 0, n.rounded() == n, n < 1e15 else { return nil }
        return Int(n)
    }
}

extension Double {
    var clean: String { rounded() == self && abs(self) < 1e15 ? String(Int64(self)) : String(self) }
}

extension Duration {
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
