import Testing
import Workflow

@Suite struct ExpressionTests {
    let scope = ExpressionScope([
        "input": ["name": "ada", "n": 3, "list": [1, 2, 3], "flag": false],
        "steps": ["fetch": ["output": ["items": ["a", "b"]], "status": "succeeded"]],
        "env": ["GREETING": "hello"],
    ])

    @Test func wholeExpressionKeepsItsType() throws {
        #expect(try Template("${{ input.list }}").evaluate(in: scope) == [1, 2, 3])
        #expect(try Template("${{ steps.fetch.output.items[1] }}").evaluate(in: scope) == "b")
        #expect(try Template("${{ input.n }}").evaluate(in: scope) == 3)
    }

    @Test func textInterpolates() throws {
        #expect(try Template("${{ env.GREETING }}, ${{ input.name }}! n=${{ input.n }} ${{ input.list }}").evaluate(in: scope)
            == "hello, ada! n=3 [1,2,3]")
    }

    @Test func operatorsAndFunctions() throws {
        #expect(try Template("${{ input.n > 2 && !input.flag }}").evaluate(in: scope) == true)
        #expect(try Template("${{ input.n == '3' }}").evaluate(in: scope) == true)
        #expect(try Template("${{ length(steps.fetch.output.items) >= 2 || false }}").evaluate(in: scope) == true)
        #expect(try Template("${{ contains(input.list, 2) }}").evaluate(in: scope) == true)
        #expect(try Template("${{ join(input.list, '-') }}").evaluate(in: scope) == "1-2-3")
        #expect(try Template("${{ format('{0}/{1}', input.name, input.n) }}").evaluate(in: scope) == "ada/3")
        #expect(try Template("${{ input.missing.deeper }}").evaluate(in: scope) == .null)
    }

    @Test func errorsSayWhatIsWrong() {
        #expect(throws: ExpressionError.self) { try Template("${{ input.n > }}") }
        #expect(throws: ExpressionError.self) { try Template("${{ input.n") }
        #expect(throws: ExpressionError.self) { try Template("${{ nope(1) }}") }
        #expect(throws: ExpressionError.self) { try Template("${{ secrets.X }}").evaluate(in: scope) }
        #expect(throws: ExpressionError.self) { try Template("${{ input.list < 2 }}").evaluate(in: scope) }
    }

    @Test func referencesNameTheStepsRead() throws {
        let e = try Expression.parse("steps.a.output.x == steps['b'].status && input.y")
        #expect(e.references.steps == ["a", "b"])
        #expect(e.references.roots == ["steps", "input"])
    }
}

@Suite struct SchemaTests {
    let schema = JSONSchema([
        "type": "object",
        "required": ["name", "count"],
        "additionalProperties": false,
        "properties": [
            "name": ["type": "string", "minLength": 1, "pattern": "^[a-z]+$"],
            "count": ["type": "integer", "minimum": 1, "maximum": 10],
            "mode": ["enum": ["fast", "slow"]],
            "tags": ["type": "array", "items": ["type": "string"], "maxItems": 2],
        ],
    ])

    @Test func validInputPasses() {
        #expect(schema.validate(["name": "ada", "count": 3, "mode": "fast", "tags": ["x"]]).isEmpty)
    }

    @Test func everyViolationIsNamedByPath() {
        let v = schema.validate(["name": "Ada!", "count": 11.5, "mode": "other", "tags": ["x", 2, "z"], "extra": true])
        let paths = Set(v.map(\.path))
        #expect(paths == ["input.name", "input.count", "input.mode", "input.tags[1]", "input.tags", "input.extra"])
        #expect(schema.validate(["name": "ada"]).map(\.description) == ["input.count: is required"])
        #expect(schema.validate("text").map(\.message) == ["expected object, got string"])
    }

    @Test func integerIsANumber() {
        #expect(JSONSchema(["type": "number"]).validate(2).isEmpty)
        #expect(!JSONSchema(["type": "integer"]).validate(2.5).isEmpty)
    }

    @Test func brokenSchemasAreReported() {
        #expect(!JSONSchema.problems(in: ["type": "strng"]).isEmpty)
        #expect(!JSONSchema.problems(in: ["type": "string", "pattern": "(["]).isEmpty)
        #expect(JSONSchema.problems(in: schema.schema).isEmpty)
    }
}
