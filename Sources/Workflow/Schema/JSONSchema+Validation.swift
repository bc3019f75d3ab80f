import Foundation

extension JSONSchema.Checker {
    typealias Violation = JSONSchema.Violation

    mutating func check(_ v: JSONValue, against s: JSONValue, path: String, into out: inout [Violation]) {
        guard !stopped else { return }
        if ThreadCPUTime.now() >= deadline {
            outOfTime = true
            return
        }
        depth += 1
        defer { depth -= 1 }
        guard depth <= JSONSchema.maxRecursion else {
            tooDeep = true
            unchecked.append(Violation(path: path, message: "the schema recursed more than \(JSONSchema.maxRecursion) levels (a $ref that loops?); the value is refused"))
            return
        }
        let k: [String: JSONValue]
        switch s {
        case let .bool(b):
            if !b { out.append(Violation(path: path, message: "no value is allowed here")) }
            return
        case let .object(o): k = o
        default:
            unchecked.append(Violation(path: path, message: "the schema here is not an object or a boolean; the value is refused"))
            return
        }
        if k.keys.contains(where: { !JSONSchema.keywords.contains($0) }) {
            for key in k.keys.sorted() where !JSONSchema.keywords.contains(key) {
                unchecked.append(Violation(path: path, message: "the schema's \(JSONSchema.unsupported(key)); the value is refused"))
            }
        }
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }

        if let r = k["$ref"] {
            if let target = resolve(r) {
                check(v, against: target, path: path, into: &out)
            } else {
                unchecked.append(Violation(path: path, message: "$ref \(r.jsonText) does not lead to a part of this schema; the value is refused"))
            }
        }
        if let t = k["type"] {
            let allowed = t.stringValue.map { [$0] } ?? (t.arrayStrings ?? [])
            let actual = v.typeName
            if !(allowed.contains(actual) || (actual == "integer" && allowed.contains("number"))) {
                fail("expected \(allowed.joined(separator: " or ")), got \(actual)")
                return
            }
        }
        if case let .array(options)? = k["enum"], !options.contains(where: { JSONSchema.same($0, v) }) {
            fail("must be one of \(options.map(\.jsonText).joined(separator: ", "))")
        }
        if let c = k["const"], !JSONSchema.same(c, v) { fail("must be \(c.jsonText)") }

        switch v {
        case let .object(o): checkObject(o, k, path: path, into: &out)
        case let .array(a): checkArray(a, k, path: path, into: &out)
        case let .string(str): checkString(str, k, path: path, into: &out)
        case let .number(x): checkNumber(x, k, path: path, into: &out)
        default: break
        }
        combine(v, k, path: path, into: &out)
    }

    func resolve(_ ref: JSONValue) -> JSONValue? {
        guard let text = ref.stringValue, case let .local(tokens) = JSONSchema.reference(text, rootId: rootId) else { return nil }
        return JSONSchema.value(at: tokens, in: root)
    }

    mutating func combine(_ v: JSONValue, _ k: [String: JSONValue], path: String, into out: inout [Violation]) {
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }
        if case let .array(all)? = k["allOf"] {
            for sub in all { check(v, against: sub, path: path, into: &out) }
        }
        if case let .array(any)? = k["anyOf"] {
            if !any.contains(where: { passes(v, $0, path: path) }) { fail("does not match any of the allowed schemas") }
        }
        if case let .array(one)? = k["oneOf"] {
            var matched = 0
            for sub in one where matched < 2 && passes(v, sub, path: path) { matched += 1 }
            if matched == 0 { fail("does not match any of the schemas in 'oneOf'") }
            if matched > 1 { fail("matches more than one of the schemas in 'oneOf'") }
        }
        if let not = k["not"], passes(v, not, path: path) { fail("must not match the schema in 'not'") }
        if let cond = k["if"] {
            if passes(v, cond, path: path) {
                if let then = k["then"] { check(v, against: then, path: path, into: &out) }
            } else if let otherwise = k["else"] {
                check(v, against: otherwise, path: path, into: &out)
            }
        }
    }

    mutating func checkObject(_ o: [String: JSONValue], _ k: [String: JSONValue], path: String, into out: inout [Violation]) {
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }
        if case let .array(req)? = k["required"] {
            for case let .string(name) in req where o[name] == nil {
                out.append(Violation(path: "\(path).\(name)", message: "is required"))
            }
        }
        if let n = k["minProperties"]?.number, Double(o.count) < n { fail("must have at least \(n.clean) properties") }
        if let n = k["maxProperties"]?.number, Double(o.count) > n { fail("must have at most \(n.clean) properties") }
        if case let .object(deps)? = k["dependentRequired"] {
            for (name, needs) in deps.sorted(by: { $0.key < $1.key }) where o[name] != nil {
                for other in needs.arrayStrings ?? [] where o[other] == nil {
                    out.append(Violation(path: "\(path).\(other)", message: "is required when '\(name)' is present"))
                }
            }
        }
        if case let .object(deps)? = k["dependentSchemas"] {
            for (name, sub) in deps.sorted(by: { $0.key < $1.key }) where o[name] != nil {
                check(.object(o), against: sub, path: path, into: &out)
            }
        }
        var props: [String: JSONValue] = [:]
        if case let .object(p)? = k["properties"] { props = p }
        var patterns: [(String, JSONValue)] = []
        if case let .object(p)? = k["patternProperties"] { patterns = p.sorted { $0.key < $1.key } }
        let extra = k["additionalProperties"]
        for (name, value) in o.sorted(by: { $0.key < $1.key }) {
            guard !stopped else { return }
            let here = "\(path).\(name)"
            if let names = k["propertyNames"], !passes(.string(name), names, path: here) {
                out.append(Violation(path: here, message: "is not an allowed property name"))
            }
            var known = false
            if let ps = props[name] {
                known = true
                check(value, against: ps, path: here, into: &out)
            }
            for (pattern, ps) in patterns {
                switch matches(pattern, name, path: here) {
                case true?:
                    known = true
                    check(value, against: ps, path: here, into: &out)
                case false?: break
                case nil: known = true // refused already; not also "not allowed"
                }
            }
            guard !known, let extra else { continue }
            if case .bool(false) = extra {
                out.append(Violation(path: here, message: "is not an allowed property"))
            } else {
                check(value, against: extra, path: here, into: &out)
            }
        }
    }

    mutating func checkArray(_ a: [JSONValue], _ k: [String: JSONValue], path: String, into out: inout [Violation]) {
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }
        if let n = k["minItems"]?.number, Double(a.count) < n { fail("must have at least \(n.clean) items") }
        if let n = k["maxItems"]?.number, Double(a.count) > n { fail("must have at most \(n.clean) items") }
        var prefix: [JSONValue] = []
        if case let .array(p)? = k["prefixItems"] { prefix = p }
        for (i, e) in a.enumerated() {
            guard !stopped else { return }
            if i < prefix.count {
                check(e, against: prefix[i], path: "\(path)[\(i)]", into: &out)
            } else if case .bool(false)? = k["items"] {
                out.append(Violation(path: "\(path)[\(i)]", message: "is not allowed: the list may have at most \(prefix.count) items"))
            } else if let items = k["items"] {
                check(e, against: items, path: "\(path)[\(i)]", into: &out)
            }
        }
        if let contains = k["contains"] {
            var matched = 0
            for (i, e) in a.enumerated() where passes(e, contains, path: "\(path)[\(i)]") { matched += 1 }
            let least = k["minContains"]?.number ?? 1
            if Double(matched) < least {
                fail("must contain at least \(least.clean) item\(least == 1 ? "" : "s") matching 'contains' (found \(matched))")
            }
            if let most = k["maxContains"]?.number, Double(matched) > most {
                fail("must contain at most \(most.clean) item\(most == 1 ? "" : "s") matching 'contains' (found \(matched))")
            }
        }
        if case .bool(true)? = k["uniqueItems"], let (i, j) = JSONSchema.firstDuplicate(in: a) {
            fail("items [\(i)] and [\(j)] are equal; items must be unique")
        }
    }

    mutating func checkString(_ str: String, _ k: [String: JSONValue], path: String, into out: inout [Violation]) {
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }
        // The spec counts code points, not grapheme clusters: "é" written as e and a
        // combining accent is two.
        let length = str.unicodeScalars.count
        if let n = k["minLength"]?.number, Double(length) < n { fail("must be at least \(n.clean) characters") }
        if let n = k["maxLength"]?.number, Double(length) > n { fail("must be at most \(n.clean) characters") }
        if let p = k["pattern"]?.stringValue, matches(p, str, path: path) == false { fail("must match /\(p)/") }
        if let f = k["format"]?.stringValue {
            switch JSONSchema.Format(rawValue: f) {
            case let format?: if !format.accepts(str) { fail("is not a valid \(f)") }
            case nil: unchecked.append(Violation(path: path, message: "format '\(f)' is not supported; the value is refused"))
            }
        }
    }

    mutating func checkNumber(_ x: Double, _ k: [String: JSONValue], path: String, into out: inout [Violation]) {
        func fail(_ m: String) { out.append(Violation(path: path, message: m)) }
        if let n = k["minimum"]?.number, x < n { fail("must be ≥ \(n.clean)") }
        if let n = k["maximum"]?.number, x > n { fail("must be ≤ \(n.clean)") }
        if let n = k["exclusiveMinimum"]?.number, x <= n { fail("must be > \(n.clean)") }
        if let n = k["exclusiveMaximum"]?.number, x >= n { fail("must be < \(n.clean)") }
        if let m = k["multipleOf"]?.number, m > 0, !Self.isMultiple(x, of: m) { fail("must be a multiple of \(m.clean)") }
    }

    /// Numbers are binary floating point, so 0.0075 / 0.0001 is 74.99999999999999:
    /// a quotient a few units in its last place from a whole number counts as one.
    /// A quotient too large to hold (1e308 / 0.5) falls back on the exact remainder.
    static func isMultiple(_ x: Double, of m: Double) -> Bool {
        let q = x / m
        guard q.isFinite else { return x.isFinite && x.truncatingRemainder(dividingBy: m) == 0 }
        return abs(q - q.rounded()) <= 4 * q.ulp
    }
}
