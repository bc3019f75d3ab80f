/// A string that may hold `${{ expression }}` parts. A string that is exactly one
/// expression evaluates to that expression's value, keeping its type (so
/// `items: ${{ input.list }}` is a list); anything else interpolates to text.
public struct Template: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case text(String)
        case expression(Expression, source: String)
    }
    public let parts: [Part]

    public init(_ text: String) throws(ExpressionError) {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "${{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ExpressionError("'${{' without a closing '}}' in '\(text)'")
            }
            let source = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard !source.isEmpty else { throw ExpressionError("empty ${{ }} in '\(text)'") }
            parts.append(.expression(try Expression.parse(source), source: source))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    public var expressions: [Expression] {
        parts.compactMap { if case let .expression(e, _) = $0 { e } else { nil } }
    }

    public func evaluate(in scope: ExpressionScope) throws(ExpressionError) -> JSONValue {
        if parts.count == 1, case let .expression(e, _) = parts[0] { return try scope.evaluate(e) }
        var out = ""
        for part in parts {
            switch part {
            case let .text(t): out += t
            case let .expression(e, _): out += try scope.evaluate(e).interpolated
            }
        }
        return .string(out)
    }

    /// Evaluates every string inside a JSON value as a template.
    public static func evaluate(_ value: JSONValue, in scope: ExpressionScope) throws(ExpressionError) -> JSONValue {
        switch value {
        case let .string(s): return try Template(s).evaluate(in: scope)
        case let .array(a): return .array(try a.map { (v) throws(ExpressionError) -> JSONValue in try evaluate(v, in: scope) })
        case let .object(o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o { out[k] = try evaluate(v, in: scope) }
            return .object(out)
        default: return value
        }
    }

    /// `if: input.x > 1` and `if: ${{ input.x > 1 }}` mean the same.
    public static func condition(_ text: String) -> String {
        text.contains("${{") ? text : "${{ \(text) }}"
    }

    public static func string(_ text: String, in scope: ExpressionScope) throws(ExpressionError) -> String {
        try Template(text).evaluate(in: scope).interpolated
    }
}

import Foundation
