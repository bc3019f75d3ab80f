import Foundation
import Testing
import Wire

/// The error codes the API can answer with are one enum; the docs list the same
/// codes, no more and no fewer, so a client written from the docs handles them all.
@Suite("API error codes and their docs")
struct ErrorCodeDocsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let codes = Set(APIErrorCode.allCases.map(\.rawValue))

    @Test("docs/openapi.yaml's Error schema lists exactly APIErrorCode")
    func openAPI() throws {
        let text = try String(contentsOfFile: Self.root + "/docs/openapi.yaml", encoding: .utf8)
        // The `code` property of components.schemas.Error: `enum: [a, b,\n c]`.
        let schema = try #require(text.range(of: "    Error:\n      type: object\n      required: [error]"))
        let rest = text[schema.upperBound...]
        let open = try #require(rest.range(of: "enum: ["))
        let close = try #require(rest[open.upperBound...].firstIndex(of: "]"))
        let listed = Set(rest[open.upperBound..<close].split(whereSeparator: { ", \n".contains($0) }).map(String.init))
        #expect(listed == Self.codes, "only in the docs: \(listed.subtracting(Self.codes)); only in code: \(Self.codes.subtracting(listed))")
    }

    @Test("docs/api.md's error table names every code")
    func apiMarkdown() throws {
        let text = try String(contentsOfFile: Self.root + "/docs/api.md", encoding: .utf8)
        let missing = Self.codes.filter { !text.contains("`\($0)`") }
        #expect(missing.isEmpty, "not in docs/api.md: \(missing.sorted())")
    }
}
