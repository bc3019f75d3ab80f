import Foundation

/// JSON Schema (draft 2020-12) validation for workflow `input` and `output`:
/// type, enum, const, properties, required, additionalProperties, items,
/// minItems/maxItems, minLength/maxLength, pattern, minimum/maximum,
/// exclusiveMinimum/exclusiveMaximum, anyOf/oneOf/allOf/not. Keywords outside
/// this set are ignored, as the spec says of unknown keywords. Hand-written: no
/// listed package validates JSON Schema.
public struct JSONSchema: Sendable {
    public struct Violation: Sendable, Equatable, Codable, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    public let schema: JSONValue

    public init(_ schema: JSONValue) { self.schema = schema }

    /// How long one `pattern` may take against one string. Ordinary patterns take
    /// microseconds; a megabyte-long string scanned end to end takes tens of
    /// milliseconds, so the limit leaves room for that.
    public static let patternTimeLimit: Duration = .milliseconds(100)
    /// How long validating one value may take in all, so that many strings or many
    /// patterns cannot add up what each one alone is refused.
    public static let validationTimeLimit: Duration = .milliseconds(250)

    /// Every place the value breaks the schema, each with its path (`input.items[2].name`).
    /// A pattern that runs out of time, or a validation that does, is a violation:
    /// a value that could not be checked is never taken as valid.
    public func validate(_ value: JSONValue, root: String = "input") -> [Violation] {
        var checker = Checker(deadline: ContinuousClock.now + Self.validationTimeLimit)
        var out: [Violation] = []
        Self.check(value, against: schema, path: root, into: &out, &checker)
        // Recorded apart from `out`: inside `not`, `anyOf` or `oneOf` a timeout
        // would otherwise read as "this branch failed", which `not` turns into a pass.
        for v in checker.unchecked where !out.contains(v) { out.append(v) }
        if checker.outOfTime {
            out.append(Violation(path: root, message: "validation took longer than \(Self.validationTimeLimit.wholeMilliseconds) ms; the value is refused"))
        }
        return out
    }

    /// Problems with the schema itself that would make validation meaningless.
    public static func problems(in schema: JSONValue) -> [String] {
        var out: [String] = []
        func walk(_ s: JSONValue, _ path: String) {
            guard case let .object(o) = s else {
                if case .bool = s { return }
                out.append("\(path) must be an object or a boolean")
                return
            }
            if let t = o["type"] {
                let names = t.stringValue.map { [$0] } ?? (t.arrayStrings ?? [])
                for n in names where !Self.types.contains(n) { out.append("\(path).type: unknown type '\(n)'") }
                if names.isEmpty { out.append("\(path).type must be a type name or a list of them") }
            }
            if let p = o["pattern"] {
                if p.stringValue.flatMap(BoundedRegex.init) == nil {
                    out.append("\(path).pattern is not a valid regular expression")
                }
            }
            if case let .object(props)? = o["properties"] { for (k, v) in props { walk(v, "\(path).properties.\(k)") } }
            if let items = o["items"] { walk(items, "\(path).items") }
            if let ap = o["additionalProperties"] { walk(ap, "\(path).additionalProperties") }
            for key in ["anyOf", "oneOf", "allOf"] {
                if case let .array(list)? = o[key] { for (i, v) in list.enumerated() { walk(v, "\(path).\(key)[\(i)]") } }
            }
        }
        walk(schema, "schema")
        return out
    }

    static let types: Set<String> = ["null", "boolean", "integer", "number", "string", "array", "object"]

    /// One validation's clock, its compiled patterns and what it could not check.
    struct Checker {
        let deadline: ContinuousClock.Instant
        var patterns: [String: BoundedRegex?] = [:]
        var unchecked: [Violation] = []
        var outOfTime = false

        init(deadline: ContinuousClock.Instant) { self.deadline = deadline }

        mutating func regex(_ p: String) -> BoundedRegex? {
            if let known = patterns[p] { return known }
            let compiled = BoundedRegex(p)
            patterns[p] = compiled
            return compiled
        }
    }

    static func check(_ v: JSONValue, against s: JSONValue, path: String, into out: inout [Violation], _ checker: inout Checker) {
        guard !checker.outOfTime else { return }
        if ContinuousClock.now >= checker.deadline {
            checker.outOfTime = true
            return
        }
        if case let .bool(b) = s {
            if !b { out.append(Violation(path: path, message: "no value is allowed here")) }
            return
        }
        guard case let .object(k) = s else { return }
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }

        if let t = k["type"] {
            let allowed = t.stringValue.map { [$0] } ?? (t.arrayStrings ?? [])
            let actual = v.typeName
            let ok = allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))
            if !ok {
                fail("expected \(allowed.joined(separator: " or ")), got \(actual)")
                return
            }
        }
        if case let .array(options)? = k["enum"], !options.contains(v) {
            fail("must be one of \(options.map(\.jsonText).joined(separator: ", "))")
        }
        if let c = k["const"], c != v { fail("must be \(c.jsonText)") }

        switch v {
        case let .object(o):
            if case let .array(req)? = k["required"] {
                for case let .string(name) in req where o[name] == nil {
                    out.append(Violation(path: "\(path).\(name)", message: "is required"))
                }
            }
            var props: [String: JSONValue] = [:]
            if case let .object(p)? = k["properties"] { props = p }
            for (name, value) in o.sorted(by: { $0.key < $1.key }) {
                if let ps = props[name] {
                    check(value, against: ps, path: "\(path).\(name)", into: &out, &checker)
                } else if let extra = k["additionalProperties"] {
                    if case .bool(false) = extra {
                        out.append(Violation(path: "\(path).\(name)", message: "is not an allowed property"))
                    } else {
                        check(value, against: extra, path: "\(path).\(name)", into: &out, &checker)
                    }
                }
            }
        case let .array(a):
            if let items = k["items"] {
                for (i, e) in a.enumerated() { check(e, against: items, path: "\(path)[\(i)]", into: &out, &checker) }
            }
            if let n = k["minItems"]?.number, Double(a.count) < n { fail("must have at least \(Int(n)) items") }
            if let n = k["maxItems"]?.number, Double(a.count) > n { fail("must have at most \(Int(n)) items") }
        case let .string(str):
            if let n = k["minLength"]?.number, Double(str.count) < n { fail("must be at least \(Int(n)) characters") }
            if let n = k["maxLength"]?.number, Double(str.count) > n { fail("must be at most \(Int(n)) characters") }
            // An invalid pattern is reported when the workflow loads (`problems(in:)`).
            if let p = k["pattern"]?.stringValue, let re = checker.regex(p) {
                let limit = min(ContinuousClock.now + patternTimeLimit, checker.deadline)
                switch re.firstMatch(in: str, before: limit) {
                case .match: break
                case .noMatch: fail("must match /\(p)/")
                case .timedOut:
                    if ContinuousClock.now >= checker.deadline { checker.outOfTime = true }
                    checker.unchecked.append(Violation(path: path, message: "pattern /\(p)/ took too long to match (limit \(patternTimeLimit.wholeMilliseconds) ms); the value is refused"))
                case .failed:
                    checker.unchecked.append(Violation(path: path, message: "pattern /\(p)/ could not be matched (the regular expression engine gave up); the value is refused"))
                }
            }
        case let .number(x):
            if let n = k["minimum"]?.number, x < n { fail("must be ≥ \(n.clean)") }
            if let n = k["maximum"]?.number, x > n { fail("must be ≤ \(n.clean)") }
            if let n = k["exclusiveMinimum"]?.number, x <= n { fail("must be > \(n.clean)") }
            if let n = k["exclusiveMaximum"]?.number, x >= n { fail("must be < \(n.clean)") }
        default: break
        }

        if case let .array(all)? = k["allOf"] {
            for sub in all { check(v, against: sub, path: path, into: &out, &checker) }
        }
        if case let .array(any)? = k["anyOf"] {
            let matched = any.contains { sub in
                var tmp: [Violation] = []
                check(v, against: sub, path: path, into: &tmp, &checker)
                return tmp.isEmpty
            }
            if !matched { fail("does not match any of the allowed schemas") }
        }
        if case let .array(one)? = k["oneOf"] {
            let n = one.filter { sub in
                var tmp: [Violation] = []
                check(v, against: sub, path: path, into: &tmp, &checker)
                return tmp.isEmpty
            }.count
            if n != 1 { fail("must match exactly one of the schemas (matched \(n))") }
        }
        if let not = k["not"] {
            var tmp: [Violation] = []
            check(v, against: not, path: path, into: &tmp, &checker)
            if tmp.isEmpty { fail("must not match the schema in 'not'") }
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
}

extension Double {
    var clean: String { rounded() == self && abs(self) < 1e15 ? String(Int64(self)) : String(self) }
}

extension Duration {
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
