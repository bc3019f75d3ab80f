extension JSONSchema {
    /// Keywords that only describe: accepted anywhere (`$id` only at the root,
    /// which `problems(in:)` checks) and never change what validates.
    static let annotations: Set<String> = [
        "title", "description", "default", "examples", "$schema", "$comment", "deprecated",
        "readOnly", "writeOnly", "$id", "contentMediaType", "contentEncoding",
    ]

    /// Keywords validation enforces.
    static let assertions: Set<String> = [
        "type", "enum", "const",
        "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
        "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
        "items", "prefixItems", "contains", "minContains", "maxContains", "uniqueItems", "minItems", "maxItems",
        "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
        "$ref", "$defs",
    ]

    static let keywords = annotations.union(assertions)

    /// `$schema` values taken as the standard drafts. The keywords those drafts
    /// spell differently (`definitions`, `dependencies`, `items` as a list, a boolean
    /// `exclusiveMinimum`) are refused on their own; a custom metaschema could change
    /// what any keyword means, so it is refused.
    static let knownDialects: Set<String> = [
        "https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema", "http://json-schema.org/draft-06/schema",
        "http://json-schema.org/draft-04/schema",
    ]

    /// What to write instead, for keywords that come up from older drafts and OpenAPI.
    static let keywordHints: [String: String] = [
        "definitions": "use $defs",
        "dependencies": "use dependentRequired or dependentSchemas",
        "nullable": "add \"null\" to type",
        "$anchor": "refer to the subschema by JSON pointer, as in \"#/$defs/name\"",
    ]

    static func unsupported(_ keyword: String) -> String {
        "keyword '\(keyword)' is not supported" + (keywordHints[keyword].map { " (\($0))" } ?? "")
    }

    /// Keywords whose value is one subschema.
    static let schemaKeywords = ["additionalProperties", "propertyNames", "items", "contains", "not", "if", "then", "else"]
    /// Keywords whose value is a non-empty list of subschemas.
    static let schemaListKeywords = ["prefixItems", "allOf", "anyOf", "oneOf"]
    /// Keywords whose value maps names to subschemas.
    static let schemaMapKeywords = ["properties", "patternProperties", "dependentSchemas", "$defs"]
    /// Keywords that apply their subschemas to the same value, not to a part of it:
    /// a loop made only of these (and `$ref`) never ends.
    static let inPlaceKeywords: Set<String> = ["allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas"]
    /// Keywords whose value is a count.
    static let countKeywords = [
        "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains",
    ]
    /// Keywords whose value is any number.
    static let numberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
}
