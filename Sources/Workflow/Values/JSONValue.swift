import Foundation

/// Any JSON value: workflow inputs, step outputs, event data. Integral numbers
/// encode without a fractional part, so `{"x": 2}` round-trips as written.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var isTruthy: Bool {
        switch self {
        case .null: false
        case let .bool(b): b
        case let .number(n): n != 0
        case let .string(s): !s.isEmpty
        case .array, .object: true
        }
    }

    /// The name JSON Schema gives this value's type.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case let .number(n): n.rounded() == n && abs(n) < 9.007e15 ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Compact JSON text with sorted keys (stable: used for request hashes).
    public var jsonText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "null"
    }

    /// How a value reads when interpolated into text: strings as they are, the rest as JSON.
    public var interpolated: String {
        if case let .string(s) = self { return s }
        return jsonText
    }

    public static func parse(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}

extension JSONValue: Codable {
    /// How many arrays and objects a decoded value may nest. Run inputs, step
    /// outputs and frames from workers all decode here, and everything that walks a
    /// value afterwards (encoding, equality, redaction, schema validation) recurses,
    /// so the depth is bounded once, at the door, instead of in every walk (each of
    /// which would otherwise overflow the stack on a value a client chose).
    public static let maxDepth = 128

    static let tooDeep = "JSON nested deeper than \(maxDepth) levels"

    private struct ObjectKey: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        guard decoder.codingPath.count <= Self.maxDepth else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: Self.tooDeep))
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        // Containers are opened rather than decoded with `try?`, so an error deep
        // inside (such as the depth limit) reaches the caller instead of turning
        // into a vague "not a JSON value" at every level on the way up.
        else if var list = try? decoder.unkeyedContainer() {
            var a: [JSONValue] = []
            while !list.isAtEnd { a.append(try list.decode(JSONValue.self)) }
            self = .array(a)
        } else if let map = try? decoder.container(keyedBy: ObjectKey.self) {
            var o: [String: JSONValue] = [:]
            for key in map.allKeys { o[key.stringValue] = try map.decode(JSONValue.self, forKey: key) }
            self = .object(o)
        } else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value") }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .number(n):
            if n.rounded() == n, abs(n) < 9.007e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
    public init(nilLiteral: ()) { self = .null }
}

extension Optional where Wrapped == JSONValue {
    /// The array inside, or empty: for reading lists out of API answers.
    public var list: [JSONValue] {
        if case let .array(a)? = self { return a }
        return []
    }
}
