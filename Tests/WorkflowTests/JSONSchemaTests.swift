import Foundation
import Testing
import Workflow

@Suite("JSON Schema: what is refused and what is enforced")
struct JSONSchemaTests {
    @Test("an unsupported keyword is a load problem that names it")
    func unsupportedKeyword() {
        let schema: JSONValue = ["type": "object", "properties": ["x": ["type": "object", "unevaluatedProperties": false]]]
        #expect(JSONSchema.problems(in: schema) == ["schema.properties.x: keyword 'unevaluatedProperties' is not supported"])
    }

    @Test("a schema that skipped the load check still refuses every value")
    func unsupportedKeywordFailsClosed() {
        let violations = JSONSchema(["unevaluatedProperties": false]).validate(["anything": 1])
        #expect(violations.map(\.description) == ["input: the schema's keyword 'unevaluatedProperties' is not supported; the value is refused"])
    }

    @Test("every subschema location is walked", arguments: [
        (["properties": ["a": ["bogus": 1]]], "schema.properties.a"),
        (["patternProperties": ["^a": ["bogus": 1]]], "schema.patternProperties.^a"),
        (["additionalProperties": ["bogus": 1]], "schema.additionalProperties"),
        (["propertyNames": ["bogus": 1]], "schema.propertyNames"),
        (["dependentSchemas": ["a": ["bogus": 1]]], "schema.dependentSchemas.a"),
        (["items": ["bogus": 1]], "schema.items"),
        (["prefixItems": [true, ["bogus": 1]]], "schema.prefixItems[1]"),
        (["contains": ["bogus": 1]], "schema.contains"),
        (["$defs": ["d": ["bogus": 1]]], "schema.$defs.d"),
        (["allOf": [true, ["bogus": 1]]], "schema.allOf[1]"),
        (["anyOf": [["bogus": 1]]], "schema.anyOf[0]"),
        (["oneOf": [["bogus": 1]]], "schema.oneOf[0]"),
        (["not": ["bogus": 1]], "schema.not"),
        (["if": ["bogus": 1]], "schema.if"),
        (["then": ["bogus": 1]], "schema.then"),
        (["else": ["bogus": 1]], "schema.else"),
    ] as [(JSONValue, String)])
    func everyLocation(schema: JSONValue, path: String) {
        #expect(JSONSchema.problems(in: schema) == ["\(path): keyword 'bogus' is not supported"])
    }

    @Test("older spellings are refused with what to write instead")
    func hints() {
        #expect(JSONSchema.problems(in: ["definitions": [:]]) == ["schema: keyword 'definitions' is not supported (use $defs)"])
        #expect(JSONSchema.problems(in: ["items": [["type": "string"]]]) == ["schema.items must be one schema (a list of schemas, one per position, is prefixItems)"])
        #expect(JSONSchema.problems(in: ["exclusiveMinimum": true]) == ["schema.exclusiveMinimum must be a number"])
    }

    static let named: JSONValue = [
        "$defs": ["name": ["type": "string", "minLength": 1]],
        "type": "object",
        "properties": ["name": ["$ref": "#/$defs/name"], "tags": ["type": "array", "items": ["$ref": "#/$defs/name"]]],
    ]

    @Test("$ref into $defs is enforced")
    func refIntoDefs() {
        #expect(JSONSchema.problems(in: Self.named).isEmpty)
        let schema = JSONSchema(Self.named)
        #expect(schema.validate(["name": "ada", "tags": ["x"]]).isEmpty)
        #expect(schema.validate(["name": "", "tags": ["x", 2]]).map(\.description) == [
            "input.name: must be at least 1 characters",
            "input.tags[1]: expected string, got integer",
        ])
    }

    @Test("references that lead nowhere or out of the document are load problems")
    func badReferences() {
        #expect(JSONSchema.problems(in: ["$ref": "#/$defs/missing"]) == ["schema.$ref '#/$defs/missing' does not lead to a part of this schema"])
        #expect(JSONSchema.problems(in: ["$ref": "https://example.com/other.json"]).first?.contains("refers to another document") == true)
        #expect(JSONSchema.problems(in: ["$ref": "#name"]).first?.contains("names an anchor") == true)
        #expect(JSONSchema.problems(in: ["$defs": ["a": ["$id": "a.json"]]]).first?.contains("only supported at the root") == true)
    }

    @Test("the root's own $id and pointer escapes resolve")
    func ownIdAndEscapes() {
        let schema: JSONValue = [
            "$id": "urn:example:root",
            "$defs": ["a/b": ["type": "integer"], "c~d": ["type": "string"], "e f": ["type": "boolean"]],
            "prefixItems": [["$ref": "urn:example:root#/$defs/a~1b"], ["$ref": "#/$defs/c~0d"], ["$ref": "#/$defs/e%20f"]],
        ]
        #expect(JSONSchema.problems(in: schema).isEmpty)
        #expect(JSONSchema(schema).validate([1, "x", true]).isEmpty)
        #expect(JSONSchema(schema).validate(["1", 2, "no"]).count == 3)
    }

    @Test("a $ref loop that never steps into the value is a load problem, and fails closed")
    func refLoop() {
        let loop: JSONValue = ["$defs": ["a": ["allOf": [["$ref": "#/$defs/b"]]], "b": ["$ref": "#/$defs/a"]], "$ref": "#/$defs/a"]
        #expect(JSONSchema.problems(in: loop) == [
            "schema.$defs.a: $ref loop #/$defs/a → #/$defs/a/allOf/0 → #/$defs/b → #/$defs/a never steps into the value, so validation could not end",
        ])
        #expect(JSONSchema.problems(in: ["$ref": "#"]) == ["schema: $ref loop # → # never steps into the value, so validation could not end"])
        let violations = JSONSchema(loop).validate(1)
        #expect(violations.contains { $0.message.contains("recursed more than 400 levels") })
    }

    @Test("a recursive schema that steps into the value validates deep values")
    func recursion() throws {
        let tree: JSONValue = ["type": "object", "properties": ["child": ["$ref": "#"], "n": ["type": "integer"]]]
        #expect(JSONSchema.problems(in: tree).isEmpty)
        var value: JSONValue = ["n": 0]
        for _ in 0..<(JSONValue.maxDepth - 1) { value = ["child": value] }
        #expect(JSONSchema(tree).validate(value).isEmpty)
        let bad = JSONSchema(tree).validate(["child": ["child": ["n": "zero"]]])
        #expect(bad.map(\.description) == ["input.child.child.n: expected integer, got string"])
    }

    @Test("a format violation names the path")
    func formatPath() {
        let schema = JSONSchema(["properties": ["when": ["format": "date-time"], "hosts": ["items": ["format": "hostname"]]]])
        #expect(schema.validate(["when": "1963-06-19T08:30:06Z", "hosts": ["example.com"]]).isEmpty)
        #expect(schema.validate(["when": "yesterday", "hosts": ["ok.example", "-bad"]]).map(\.description) == [
            "input.hosts[1]: is not a valid hostname",
            "input.when: is not a valid date-time",
        ])
        #expect(schema.validate(["when": 12]).isEmpty) // formats constrain strings only
    }

    @Test("an unknown format or a custom metaschema is a load problem")
    func unknownFormatAndDialect() {
        #expect(JSONSchema.problems(in: ["format": "phone"]).first?.hasPrefix("schema.format: unknown format 'phone'") == true)
        #expect(JSONSchema.problems(in: ["$schema": "https://example.com/my-dialect"]).count == 1)
        #expect(JSONSchema.problems(in: ["$schema": "https://json-schema.org/draft/2020-12/schema"]).isEmpty)
    }

    @Test("strings compare by code point, lengths count code points")
    func codePoints() {
        #expect(!JSONSchema(["const": "\u{E4}"]).validate("a\u{308}").isEmpty)
        #expect(!JSONSchema(["uniqueItems": true]).validate(["\u{E4}", "\u{E4}"]).isEmpty)
        #expect(JSONSchema(["uniqueItems": true]).validate(["\u{E4}", "a\u{308}"]).isEmpty)
        #expect(JSONSchema(["maxLength": 1]).validate("a\u{308}").map(\.message) == ["must be at most 1 characters"])
    }
}
