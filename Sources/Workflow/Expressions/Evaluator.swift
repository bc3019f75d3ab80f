import Foundation

/// Evaluates expressions against the values a step can see. A path that leads
/// nowhere is `null`, as in GitHub Actions; an operation that makes no sense
/// (ordering a string against an object) is an error naming both sides.
public struct ExpressionScope: Sendable {
    public var roots: [String: JSONValue]
    public init(_ roots: [String: JSONValue]) { self.roots = roots }

    public func evaluate(_ e: Expression) throws(ExpressionError) -> JSONValue {
        switch e {
        case let .literal(v): return v
        case let .name(n):
            guard let v = roots[n] else { throw ExpressionError("'\(n)' is not defined here") }
            return v
        case let .member(base, key):
            return try evaluate(base)[key] ?? .null
        case let .index(base, i):
            let b = try evaluate(base), k = try evaluate(i)
            switch (b, k) {
            case let (.array(a), .number(n)):
                let idx = Int(n) < 0 ? a.count + Int(n) : Int(n)
                return a.indices.contains(idx) ? a[idx] : .null
            case let (.object(o), .string(s)): return o[s] ?? .null
            default: return .null
            }
        case let .not(x): return .bool(!(try evaluate(x)).isTruthy)
        case let .binary(op, l, r):
            let a = try evaluate(l)
            if op == "&&" { return a.isTruthy ? try evaluate(r) : a }
            if op == "||" { return a.isTruthy ? a : try evaluate(r) }
            let b = try evaluate(r)
            switch op {
            case "==": return .bool(Self.looselyEqual(a, b))
            case "!=": return .bool(!Self.looselyEqual(a, b))
            default:
                switch (a, b) {
                case let (.number(x), .number(y)): return .bool(Self.compare(op, x, y))
                case let (.string(x), .string(y)): return .bool(Self.compare(op, x, y))
                default: throw ExpressionError("cannot compare \(a.typeName) \(op) \(b.typeName)")
                }
            }
        case let .call(name, args):
            let values = try args.map { (a) throws(ExpressionError) -> JSONValue in try evaluate(a) }
            return try Self.call(name, values)
        }
    }

    /// `1 == '1'` holds: inputs from a form or a query string are text.
    static func looselyEqual(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.number(x), .string(y)), let (.string(y), .number(x)): return Double(y) == x
        default: return a == b
        }
    }

    static func compare<T: Comparable>(_ op: String, _ x: T, _ y: T) -> Bool {
        switch op {
        case "<": x < y
        case "<=": x <= y
        case ">": x > y
        default: x >= y
        }
    }

    static func call(_ name: String, _ args: [JSONValue]) throws(ExpressionError) -> JSONValue {
        func arity(_ n: Int) throws(ExpressionError) {
            guard args.count == n else { throw ExpressionError("\(name)() takes \(n) argument\(n == 1 ? "" : "s"), got \(args.count)") }
        }
        switch name {
        case "length":
            try arity(1)
            switch args[0] {
            case let .array(a): return .number(Double(a.count))
            case let .object(o): return .number(Double(o.count))
            case let .string(s): return .number(Double(s.count))
            default: return .number(0)
            }
        case "toJSON":
            try arity(1)
            return .string(args[0].jsonText)
        case "fromJSON":
            try arity(1)
            guard case let .string(s) = args[0] else { throw ExpressionError("fromJSON() needs JSON text") }
            do {
                return try JSONDecoder().decode(JSONValue.self, from: Data(s.utf8))
            } catch let DecodingError.dataCorrupted(context) where context.debugDescription == JSONValue.tooDeep {
                throw ExpressionError("fromJSON(): \(JSONValue.tooDeep)")
            } catch {
                throw ExpressionError("fromJSON() needs JSON text")
            }
        case "contains":
            try arity(2)
            switch args[0] {
            case let .array(a): return .bool(a.contains { looselyEqual($0, args[1]) })
            case let .string(s): return .bool(s.contains(args[1].interpolated))
            case let .object(o): return .bool(o[args[1].interpolated] != nil)
            default: return .bool(false)
            }
        case "join":
            guard args.count == 1 || args.count == 2 else { throw ExpressionError("join() takes 1 or 2 arguments") }
            guard case let .array(a) = args[0] else { return .string(args[0].interpolated) }
            return .string(a.map(\.interpolated).joined(separator: args.count == 2 ? args[1].interpolated : ","))
        default: // format('{0} and {1}', a, b)
            guard case let .string(f)? = args.first else { throw ExpressionError("format() needs a format string") }
            var s = f
            for (i, v) in args.dropFirst().enumerated() { s = s.replacingOccurrences(of: "{\(i)}", with: v.interpolated) }
            return .string(s)
        }
    }
}
