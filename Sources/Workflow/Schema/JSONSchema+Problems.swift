import Foundation

/// Walks every subschema for `JSONSchema.problems(in:)`: keywords validation would
/// not enforce, keyword values of the wrong shape, `$ref`s that lead nowhere or
/// out of the document, and `$ref` loops that never step into the value.
struct ProblemWalker {
    typealias Pointer = [String]

    let root: JSONValue
    let rootId: String?
    var out: [String] = []
    /// Every subschema walked, by JSON pointer, with its name in messages.
    var names: [Pointer: String] = [:]
    /// Subschemas each one applies to the same value (through `allOf`, `$ref`, ...).
    var inPlace: [Pointer: [Pointer]] = [:]
    /// Where `$ref`s lead, walked in turn: a pointer may lead outside the places
    /// a subschema normally sits (`#/properties`), and what it leads to is a schema too.
    var targets: [Pointer] = []

    init(root: JSONValue) {
        self.root = root
        self.rootId = root["$id"]?.stringValue
    }

    mutating func run() {
        walk(root, at: [], path: "schema", depth: 0)
        var i = 0
        while i < targets.count {
            let t = targets[i]
            i += 1
            if names[t] == nil, let s = JSONSchema.value(at: t, in: root) { walk(s, at: t, path: name(of: t), depth: 0) }
        }
        reportLoops()
    }

    /// `schema.properties.x`, `schema.allOf[1]`: the same names validation paths use.
    func name(of pointer: Pointer) -> String {
        var out = "schema", here = root
        for token in pointer {
            if case let .array(a) = here, let i = Int(token), a.indices.contains(i) {
                out += "[\(i)]"
                here = a[i]
            } else {
                out += ".\(token)"
                here = here[token] ?? .null
            }
        }
        return out
    }

    /// `#/$defs/a~1b`: a place as a `$ref` would name it.
    static func fragment(_ pointer: Pointer) -> String {
        "#" + pointer.map { "/" + $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }.joined()
    }

    mutating func walk(_ s: JSONValue, at pointer: Pointer, path: String, depth: Int) {
        guard names[pointer] == nil else { return }
        names[pointer] = path
        guard depth <= JSONSchema.maxRecursion else {
            out.append("\(path): the schema nests deeper than \(JSONSchema.maxRecursion) levels")
            return
        }
        let k: [String: JSONValue]
        switch s {
        case .bool: return
        case let .object(o): k = o
        default:
            out.append("\(path) must be an object or a boolean")
            return
        }
        func child(_ key: String, _ sub: JSONValue, _ tokens: Pointer, _ name: String) {
            let at = pointer + tokens
            if JSONSchema.inPlaceKeywords.contains(key) { inPlace[pointer, default: []].append(at) }
            walk(sub, at: at, path: name, depth: depth + 1)
        }
        for key in k.keys.sorted() {
            let value = k[key]!
            let here = "\(path).\(key)"
            guard JSONSchema.keywords.contains(key) else {
                out.append("\(path): \(JSONSchema.unsupported(key))")
                continue
            }
            if key == "items", case .array = value {
                out.append("\(here) must be one schema (a list of schemas, one per position, is prefixItems)")
            } else if JSONSchema.schemaKeywords.contains(key) {
                child(key, value, [key], here)
            } else if JSONSchema.schemaListKeywords.contains(key) {
                guard case let .array(list) = value, !list.isEmpty else {
                    out.append("\(here) must be a non-empty list of schemas")
                    continue
                }
                for (i, sub) in list.enumerated() { child(key, sub, [key, String(i)], "\(here)[\(i)]") }
            } else if JSONSchema.schemaMapKeywords.contains(key) {
                guard case let .object(map) = value else {
                    out.append("\(here) must be an object whose values are schemas")
                    continue
                }
                for (name, sub) in map.sorted(by: { $0.key < $1.key }) {
                    if key == "patternProperties", BoundedRegex(name) == nil {
                        out.append("\(here): '\(name)' is not a valid regular expression")
                    }
                    child(key, sub, [key, name], "\(here).\(name)")
                }
            } else if JSONSchema.countKeywords.contains(key) {
                if value.nonNegativeInt == nil { out.append("\(here) must be a non-negative integer") }
            } else if JSONSchema.numberKeywords.contains(key) {
                if value.number == nil { out.append("\(here) must be a number") }
            } else {
                checkValue(key, value, at: pointer, path: path)
            }
        }
    }

    /// Keywords whose value is not a subschema, a count or a bound.
    mutating func checkValue(_ key: String, _ value: JSONValue, at pointer: Pointer, path: String) {
        let here = "\(path).\(key)"
        switch key {
        case "type":
            let names: [String]
            switch value {
            case let .string(n): names = [n]
            case let .array(a) where !a.isEmpty && a.allSatisfy({ $0.stringValue != nil }): names = a.compactMap(\.stringValue)
            default:
                out.append("\(here) must be a type name or a list of them")
                return
            }
            for n in names where !JSONSchema.types.contains(n) { out.append("\(here): unknown type '\(n)'") }
        case "enum":
            if case .array = value {} else { out.append("\(here) must be a list of values") }
        case "required":
            if value.arrayStrings?.count != value.arrayCount { out.append("\(here) must be a list of property names") }
        case "dependentRequired":
            guard case let .object(deps) = value, deps.values.allSatisfy({ $0.arrayStrings?.count == $0.arrayCount }) else {
                out.append("\(here) must map property names to lists of property names")
                return
            }
        case "uniqueItems":
            if case .bool = value {} else { out.append("\(here) must be true or false") }
        case "multipleOf":
            if !(value.number.map { $0 > 0 && $0.isFinite } ?? false) { out.append("\(here) must be a number greater than 0") }
        case "pattern":
            if value.stringValue.flatMap(BoundedRegex.init) == nil { out.append("\(here) is not a valid regular expression") }
        case "format":
            guard let f = value.stringValue else {
                out.append("\(here) must be a string")
                return
            }
            if JSONSchema.Format(rawValue: f) == nil {
                let known = JSONSchema.Format.allCases.map(\.rawValue).sorted().joined(separator: ", ")
                out.append("\(here): unknown format '\(f)' (supported: \(known))")
            }
        case "$id":
            if !pointer.isEmpty {
                out.append("\(path): keyword '$id' is only supported at the root of the schema (references resolve within this one document)")
            } else if value.stringValue == nil {
                out.append("\(here) must be a string")
            }
        case "$ref":
            reference(value, from: pointer, path: here)
        case "$schema":
            guard let uri = value.stringValue, JSONSchema.knownDialects.contains(uri.hasSuffix("#") ? String(uri.dropLast()) : uri) else {
                out.append("\(here) \(value.jsonText) is not a JSON Schema draft this validator knows (a custom dialect may change what keywords mean); use \"https://json-schema.org/draft/2020-12/schema\" or leave it out")
                return
            }
        default: // const and the annotations: any value
            break
        }
    }

    mutating func reference(_ value: JSONValue, from pointer: Pointer, path: String) {
        guard let ref = value.stringValue else {
            out.append("\(path) must be a string")
            return
        }
        switch JSONSchema.reference(ref, rootId: rootId) {
        case let .local(tokens):
            guard JSONSchema.value(at: tokens, in: root) != nil else {
                out.append("\(path) '\(ref)' does not lead to a part of this schema")
                return
            }
            inPlace[pointer, default: []].append(tokens)
            targets.append(tokens)
        case .remote:
            out.append("\(path) '\(ref)' refers to another document; only references within this schema (starting with '#') are supported")
        case .anchor:
            out.append("\(path) '\(ref)' names an anchor, which is not supported; refer by JSON pointer, as in '#/$defs/name'")
        case .malformed:
            out.append("\(path) '\(ref)' is not a valid JSON pointer fragment")
        }
    }

    /// A loop of `$ref`s (with `allOf` and the like) applies the same schemas to the
    /// same value forever. Depth-first, without recursion: a chain of references may
    /// be as long as the schema is large.
    mutating func reportLoops() {
        var state: [Pointer: Bool] = [:] // true while on the path, false once finished
        for (start, _) in names.sorted(by: { $0.value < $1.value }) where state[start] == nil {
            var stack: [(node: Pointer, next: Int)] = [(start, 0)]
            state[start] = true
            while let (node, i) = stack.last {
                let edges = inPlace[node] ?? []
                guard i < edges.count else {
                    state[node] = false
                    stack.removeLast()
                    continue
                }
                stack[stack.count - 1].next += 1
                let next = edges[i]
                switch state[next] {
                case true?:
                    let from = stack.firstIndex { $0.node == next } ?? 0
                    let loop = (stack[from...].map(\.node) + [next]).map(Self.fragment)
                    out.append("\(names[next] ?? name(of: next)): $ref loop \(loop.joined(separator: " → ")) never steps into the value, so validation could not end")
                case nil:
                    state[next] = true
                    stack.append((next, 0))
                case false?:
                    break
                }
            }
        }
    }
}

extension JSONValue {
    var arrayCount: Int? {
        if case let .array(a) = self { return a.count }
        return nil
    }
}
