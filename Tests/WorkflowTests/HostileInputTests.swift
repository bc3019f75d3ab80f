import Foundation
import Testing
import Workflow

/// Inputs written to take the gateway down: expressions and JSON nested past any
/// real use, and schema patterns that backtrack for minutes. Each must end in a
/// clean error or violation; a crash here is the bug these tests exist for.
@Suite("Hostile input")
struct HostileInputTests {
    /// Every production of the expression grammar that nests, built `depth` levels deep.
    enum Shape: String, CaseIterable, CustomTestStringConvertible {
        case parentheses, not, index, call, member, or, and, mixed

        var testDescription: String { rawValue }

        func text(depth n: Int) -> String {
            func rep(_ s: String, _ k: Int) -> String { String(repeating: s, count: k) }
            switch self {
            case .parentheses: return rep("(", n) + "1" + rep(")", n)
            case .not: return rep("!", n) + "x"
            case .index: return rep("a[", n) + "0" + rep("]", n)
            case .call: return rep("length(", n) + "1" + rep(")", n)
            case .member: return "a" + rep(".b", n)
            case .or: return "1" + rep(" || 1", n)
            case .and: return "1" + rep(" && 1", n)
            case .mixed: // `!`, `(` and `[` are a level each
                let k = (n + 2) / 3
                return rep("!(a[", k) + "0" + rep("])", k)
            }
        }

        /// What the expression gives at depth 60 in `HostileInputTests.scope`.
        var valueAtSixty: JSONValue {
            switch self {
            case .parentheses, .or, .and: 1
            case .not: true // sixty negations of true
            case .index, .call: 0 // a[0] is 0 all the way down; length(a number) is 0
            case .member: nil // .b of a list is a path to nowhere
            case .mixed: true // !(a[…]): a[0] is 0, a[true] is null, and `!` of either is true
            }
        }
    }

    static let scope = ExpressionScope(["a": [0], "x": true])

    @Test("a deeply nested expression is a clean parse error", arguments: Shape.allCases, [65, 1000, 100_000])
    func deepExpression(shape: Shape, depth: Int) {
        let text = shape.text(depth: depth)
        #expect(throws: ExpressionError("expression nested deeper than 64 levels")) { try Expression.parse(text) }
        #expect(throws: ExpressionError("expression nested deeper than 64 levels")) { try Template("${{ \(text) }}") }
    }

    @Test("an expression 60 levels deep still parses and evaluates", arguments: Shape.allCases)
    func sixtyLevels(shape: Shape) throws {
        let template = try Template("${{ \(shape.text(depth: 60)) }}")
        #expect(try template.evaluate(in: Self.scope) == shape.valueAtSixty)
    }

    @Test("the limit sits at 64 levels")
    func boundary() throws {
        _ = try Expression.parse(String(repeating: "!", count: 63) + "x")
        #expect(throws: ExpressionError.self) { try Expression.parse(String(repeating: "!", count: 64) + "x") }
        _ = try Expression.parse("a" + String(repeating: ".b", count: 63))
        #expect(throws: ExpressionError.self) { try Expression.parse("a" + String(repeating: ".b", count: 64)) }
    }

    // MARK: - JSON values

    static func nestedArrays(_ n: Int) -> String {
        String(repeating: "[", count: n) + "1" + String(repeating: "]", count: n)
    }

    @Test("JSON nested past the limit is refused when decoded", arguments: [129, 1000, 100_000])
    func deepJSON(depth: Int) {
        let text = Self.nestedArrays(depth)
        #expect(JSONValue.parse(text) == nil)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }
        let objects = String(repeating: #"{"k":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        #expect(JSONValue.parse(objects) == nil)
    }

    @Test("the decoding error names the limit")
    func deepJSONMessage() {
        do {
            _ = try JSONDecoder().decode(JSONValue.self, from: Data(Self.nestedArrays(200).utf8))
            Issue.record("decoded JSON 200 levels deep")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription == "JSON nested deeper than 128 levels")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("JSON at the limit decodes, round-trips and redacts")
    func jsonAtLimit() throws {
        func nested(_ s: String) -> String { String(repeating: "[", count: 127) + s + String(repeating: "]", count: 127) }
        #expect(JSONValue.parse(Self.nestedArrays(128))?.jsonText == Self.nestedArrays(128))
        let value = try #require(JSONValue.parse(nested(#"{"k":"s3cret"}"#)))
        #expect(Redactor(["s3cret"]).json(value).jsonText == nested(#"{"k":"***"}"#))
        let mixed = try #require(JSONValue.parse(#"{"a": [null, true, 2.5, "s", {"b": []}], "c": {}}"#))
        #expect(mixed == ["a": [nil, true, 2.5, "s", ["b": []]], "c": [:]])
    }

    @Test("fromJSON() on deep text is an expression error")
    func fromJSONDeep() throws {
        let scope = ExpressionScope(["input": ["text": .string(Self.nestedArrays(300))]])
        #expect(throws: ExpressionError("fromJSON(): JSON nested deeper than 128 levels")) {
            try Template("${{ fromJSON(input.text) }}").evaluate(in: scope)
        }
        let huge = ExpressionScope(["input": ["text": .string(Self.nestedArrays(100_000))]])
        #expect(throws: ExpressionError.self) { try Template("${{ fromJSON(input.text) }}").evaluate(in: huge) }
    }

    // MARK: - Patterns

    static let catastrophic: [(pattern: String, text: String)] = [
        ("^(a+)+$", String(repeating: "a", count: 40) + "!"),
        ("(a|aa)+$", String(repeating: "a", count: 80) + "!"),
        ("(x+x+)+y", String(repeating: "x", count: 80)),
    ]

    /// A hang guard, not a speed claim: the limits themselves are shown by the
    /// violations' messages; this only fails a run that would take minutes.
    static let patience: Duration = .seconds(30)

    @Test("a catastrophic pattern is a violation, within the time limit", arguments: HostileInputTests.catastrophic)
    func catastrophicPattern(pattern: String, text: String) {
        let schema = JSONSchema(["type": "string", "pattern": .string(pattern)])
        let start = ContinuousClock.now
        let violations = schema.validate(.string(text))
        #expect(ContinuousClock.now - start < Self.patience)
        #expect(violations.map(\.description) == ["input: pattern /\(pattern)/ took too long to match (limit 100 ms); the value is refused"])
    }

    @Test("BoundedRegex reports a timeout, not a match or a miss", arguments: HostileInputTests.catastrophic)
    func boundedRegex(pattern: String, text: String) throws {
        let re = try #require(BoundedRegex(pattern))
        let start = ContinuousClock.now
        #expect(re.firstMatch(in: text, before: start + .milliseconds(20)) == .timedOut)
        #expect(ContinuousClock.now - start < Self.patience)
    }

    @Test("a timeout inside not, anyOf or oneOf still refuses the value", arguments: [
        ["not": ["pattern": "^(a+)+$"]],
        ["anyOf": [["pattern": "^(a+)+$"], ["type": "number"]]],
        ["oneOf": [["pattern": "^(a+)+$"], ["type": "number"]]],
    ] as [JSONValue])
    func timeoutFailsClosed(schema: JSONValue) {
        let violations = JSONSchema(schema).validate(.string(String(repeating: "a", count: 40) + "!"))
        #expect(violations.contains { $0.message.contains("took too long to match") })
    }

    @Test("many slow strings share one budget")
    func sharedBudget() {
        let schema = JSONSchema(["type": "array", "items": ["type": "string", "pattern": "^(a+)+$"]])
        let slow = JSONValue.string(String(repeating: "a", count: 40) + "!")
        let start = ContinuousClock.now
        let violations = schema.validate(.array(Array(repeating: slow, count: 50)))
        #expect(ContinuousClock.now - start < Self.patience)
        #expect(violations.contains { $0.path == "input" && $0.message == "validation took longer than 250 ms; the value is refused" })
        // 50 × 100 ms would be 5 s: the budget stops it after a few.
        #expect(violations.filter { $0.message.contains("took too long to match") }.count <= 3)
    }

    @Test("ordinary patterns still match and reject", arguments: [
        ("^[a-z]+$", "hello", true),
        ("^[a-z]+$", "Hello1", false),
        ("^\\d{3}-\\d{4}$", "555-1234", true),
        ("^\\d{3}-\\d{4}$", "555-12345", false),
        ("b", "abc", true), // JSON Schema patterns are not anchored
        ("^(a+)+$", "aaaa", true),
    ])
    func ordinaryPatterns(pattern: String, text: String, matches: Bool) {
        let violations = JSONSchema(["type": "string", "pattern": .string(pattern)]).validate(.string(text))
        #expect(violations.map(\.description) == (matches ? [] : ["input: must match /\(pattern)/"]))
    }

    @Test("a long string against a linear pattern fits in the limit")
    func longString() {
        let text = String(repeating: "abcdefghij", count: 20_000)
        #expect(JSONSchema(["pattern": "z"]).validate(.string(text)).map(\.message) == ["must match /z/"])
        #expect(JSONSchema(["pattern": "^[a-j]+$"]).validate(.string(text)).isEmpty)
    }
}
