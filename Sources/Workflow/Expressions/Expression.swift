/// The expression language inside `${{ … }}`: paths into the run's values
/// (`input.x`, `steps.fetch.output.items[0]`, `env.NAME`, `item`), literals,
/// comparisons, `&&` `||` `!`, parentheses and a few functions. Hand-written:
/// no listed package parses GitHub-Actions-style expressions, and the grammar
/// fits on one screen.
///
///     or      := and ('||' and)*
///     and     := cmp ('&&' cmp)*
///     cmp     := unary (('=='|'!='|'<'|'<='|'>'|'>=') unary)?
///     unary   := '!' unary | postfix
///     postfix := primary ('.' name | '[' or ']')*
///     primary := number | 'string' | "string" | true | false | null | name | name '(' args ')' | '(' or ')'
public indirect enum Expression: Sendable, Equatable {
    case literal(JSONValue)
    case name(String)
    case member(Expression, String)
    case index(Expression, Expression)
    case not(Expression)
    case binary(String, Expression, Expression)
    case call(String, [Expression])

    public static let functions: Set<String> = ["length", "toJSON", "fromJSON", "contains", "join", "format"]

    /// Names read as `secrets.NAME` (or `secrets['NAME']`).
    public var secretNames: Set<String> {
        var out = Set<String>()
        func walk(_ e: Expression) {
            switch e {
            case let .member(.name("secrets"), n): out.insert(n)
            case let .index(.name("secrets"), .literal(.string(n))): out.insert(n)
            case let .member(b, _): walk(b)
            case let .index(b, i): walk(b); walk(i)
            case let .not(x): walk(x)
            case let .binary(_, l, r): walk(l); walk(r)
            case let .call(_, args): args.forEach(walk)
            default: break
            }
        }
        walk(self)
        return out
    }

    /// The root names the expression reads (`input`, `steps`, …) and the step ids
    /// it reads through `steps.<id>`, for the validator.
    public var references: (roots: Set<String>, steps: Set<String>) {
        var roots = Set<String>(), steps = Set<String>()
        func walk(_ e: Expression) {
            switch e {
            case .literal: break
            case let .name(n): roots.insert(n)
            case let .member(.name("steps"), id):
                roots.insert("steps")
                steps.insert(id)
            case let .member(base, _): walk(base)
            case let .index(base, i):
                if case .name("steps") = base, case let .literal(.string(id)) = i {
                    roots.insert("steps")
                    steps.insert(id)
                } else {
                    walk(base)
                    walk(i)
                }
            case let .not(x): walk(x)
            case let .binary(_, l, r):
                walk(l)
                walk(r)
            case let .call(_, args): args.forEach(walk)
            }
        }
        walk(self)
        return (roots, steps)
    }
}

public struct ExpressionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Parsing

extension Expression {
    /// How deep an expression may nest: parentheses, `!`, `.name`, `[index]`,
    /// function arguments and chained operators each add a level. Expressions come
    /// from workflow files anyone with write access can submit, and both the parser
    /// and every walk over the tree recurse, so an unbounded depth is a stack
    /// overflow that takes the whole gateway down. Real expressions are a few levels deep.
    public static let maxDepth = 64

    public static func parse(_ text: String) throws(ExpressionError) -> Expression {
        var parser = ExpressionParser(tokens: try ExpressionLexer.tokens(text))
        let e = try parser.or()
        guard parser.atEnd else { throw ExpressionError("unexpected \(parser.peek.map { "'\($0)'" } ?? "end") in '\(text)'") }
        return e.expression
    }

    static var tooDeep: ExpressionError { ExpressionError("expression nested deeper than \(maxDepth) levels") }
}

enum Token: Equatable, CustomStringConvertible {
    case number(Double), string(String), name(String), op(String)
    var description: String {
        switch self {
        case let .number(n): "\(n)"
        case let .string(s): "'\(s)'"
        case let .name(n): n
        case let .op(o): o
        }
    }
}

enum ExpressionLexer {
    static func tokens(_ text: String) throws(ExpressionError) -> [Token] {
        var out: [Token] = []
        let chars = Array(text.unicodeScalars)
        var i = 0
        func isNameStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.properties.isAlphabetic && c.isASCII) }
        func isName(_ c: Unicode.Scalar) -> Bool { isNameStart(c) || ("0"..."9").contains(c) || c == "-" }
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" || c == "\n" { i += 1; continue }
            if ("0"..."9").contains(c) {
                var j = i
                while j < chars.count, ("0"..."9").contains(chars[j]) || chars[j] == "." { j += 1 }
                let s = String(String.UnicodeScalarView(chars[i..<j]))
                guard let n = Double(s) else { throw ExpressionError("bad number \(s)") }
                out.append(.number(n))
                i = j
            } else if c == "'" || c == "\"" {
                var j = i + 1
                var s = String.UnicodeScalarView()
                while j < chars.count, chars[j] != c {
                    if chars[j] == "\\", j + 1 < chars.count { j += 1 }
                    s.append(chars[j])
                    j += 1
                }
                guard j < chars.count else { throw ExpressionError("unterminated string in '\(text)'") }
                out.append(.string(String(s)))
                i = j + 1
            } else if isNameStart(c) {
                var j = i
                while j < chars.count, isName(chars[j]) { j += 1 }
                out.append(.name(String(String.UnicodeScalarView(chars[i..<j]))))
                i = j
            } else {
                let two = i + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[i + 1]])) : ""
                if ["==", "!=", "<=", ">=", "&&", "||"].contains(two) {
                    out.append(.op(two))
                    i += 2
                } else if "<>!.[](),".unicodeScalars.contains(c) {
                    out.append(.op(String(c)))
                    i += 1
                } else {
                    throw ExpressionError("unexpected character '\(c)' in '\(text)'")
                }
            }
        }
        return out
    }
}

/// Recursive descent that carries each subtree's depth up with it, because a
/// left-associative chain (`a.b.c…`, `x || y || …`) builds a deep tree without
/// the parser itself recursing; `level` bounds the parser's own recursion, which
/// parentheses grow without adding any node.
struct ExpressionParser {
    struct Parsed {
        let expression: Expression
        let depth: Int
    }

    let tokens: [Token]
    var pos = 0
    var level = 0

    var atEnd: Bool { pos >= tokens.count }
    var peek: Token? { atEnd ? nil : tokens[pos] }

    mutating func take(_ op: String) -> Bool {
        if peek == .op(op) { pos += 1; return true }
        return false
    }

    mutating func expect(_ op: String) throws(ExpressionError) {
        guard take(op) else { throw ExpressionError("expected '\(op)' but found \(peek.map { "'\($0)'" } ?? "the end")") }
    }

    func node(_ e: Expression, over children: [Parsed] = []) throws(ExpressionError) -> Parsed {
        let depth = 1 + (children.map(\.depth).max() ?? 0)
        guard depth <= Expression.maxDepth else { throw Expression.tooDeep }
        return Parsed(expression: e, depth: depth)
    }

    mutating func or() throws(ExpressionError) -> Parsed {
        var e = try and()
        while take("||") {
            let r = try and()
            e = try node(.binary("||", e.expression, r.expression), over: [e, r])
        }
        return e
    }

    mutating func and() throws(ExpressionError) -> Parsed {
        var e = try comparison()
        while take("&&") {
            let r = try comparison()
            e = try node(.binary("&&", e.expression, r.expression), over: [e, r])
        }
        return e
    }

    mutating func comparison() throws(ExpressionError) -> Parsed {
        let e = try unary()
        for op in ["==", "!=", "<=", ">=", "<", ">"] where take(op) {
            let r = try unary()
            return try node(.binary(op, e.expression, r.expression), over: [e, r])
        }
        return e
    }

    /// Every recursion of the grammar (`!`, parentheses, `[…]`, call arguments)
    /// comes back through here, so this one counter bounds the parser's stack.
    mutating func unary() throws(ExpressionError) -> Parsed {
        level += 1
        defer { level -= 1 }
        guard level <= Expression.maxDepth else { throw Expression.tooDeep }
        if take("!") {
            let x = try unary()
            return try node(.not(x.expression), over: [x])
        }
        return try postfix()
    }

    mutating func postfix() throws(ExpressionError) -> Parsed {
        var e = try primary()
        while true {
            if take(".") {
                guard case let .name(n)? = peek else { throw ExpressionError("expected a name after '.'") }
                pos += 1
                e = try node(.member(e.expression, n), over: [e])
            } else if take("[") {
                let i = try or()
                try expect("]")
                e = try node(.index(e.expression, i.expression), over: [e, i])
            } else {
                return e
            }
        }
    }

    mutating func primary() throws(ExpressionError) -> Parsed {
        guard let t = peek else { throw ExpressionError("expression ends too early") }
        pos += 1
        switch t {
        case let .number(n): return try node(.literal(.number(n)))
        case let .string(s): return try node(.literal(.string(s)))
        case .name("true"): return try node(.literal(.bool(true)))
        case .name("false"): return try node(.literal(.bool(false)))
        case .name("null"): return try node(.literal(.null))
        case let .name(n):
            if take("(") {
                guard Expression.functions.contains(n) else {
                    throw ExpressionError("unknown function \(n)() (known: \(Expression.functions.sorted().joined(separator: ", ")))")
                }
                var args: [Parsed] = []
                if !take(")") {
                    repeat { args.append(try or()) } while take(",")
                    try expect(")")
                }
                return try node(.call(n, args.map(\.expression)), over: args)
            }
            return try node(.name(n))
        case .op("("):
            let e = try or()
            try expect(")")
            return e
        case let .op(o):
            throw ExpressionError("unexpected '\(o)'")
        }
    }
}
