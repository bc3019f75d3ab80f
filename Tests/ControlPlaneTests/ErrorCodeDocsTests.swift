import Foundation
import Testing
import Wire

/// The error codes the API can answer with are one enum; the docs list the same
/// codes, no more and no fewer, so a client written from the docs handles them all.
@Suite("The wire's vocabulary and its docs")
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

    /// The `enum: [...]` of `components.schemas.<name>`.
    static func openAPIEnum(_ name: String) throws -> Set<String> {
        let text = try String(contentsOfFile: root + "/docs/openapi.yaml", encoding: .utf8)
        let start = try #require(text.range(of: "\n    \(name):"))
        let rest = text[start.upperBound...]
        let open = try #require(rest.range(of: "enum: ["))
        let close = try #require(rest[open.upperBound...].firstIndex(of: "]"))
        return Set(rest[open.upperBound..<close].split(whereSeparator: { ", \n".contains($0) }).map(String.init))
    }

    @Test("failure codes, event types and step statuses: docs/openapi.yaml lists exactly what both sides of the wire use")
    func vocabulary() throws {
        for (name, code) in [("FailureCode", Set(FailureCode.allCases.map(\.rawValue))),
                             ("EventType", Set(RunEventType.allCases.map(\.rawValue))),
                             ("StepStatus", Set(StepStatus.allCases.map(\.rawValue)))] {
            let listed = try Self.openAPIEnum(name)
            #expect(listed == code, "\(name): only in the docs: \(listed.subtracting(code)); only in code: \(code.subtracting(listed))")
        }
        // Every type a worker may claim is one the run's log can hold.
        #expect(JobEventType.allCases.filter { $0 != .jobStarted }.allSatisfy { RunEventType(rawValue: $0.rawValue) != nil })
    }

    @Test("docs/api.md's error table names every code")
    func apiMarkdown() throws {
        let text = try String(contentsOfFile: Self.root + "/docs/api.md", encoding: .utf8)
        let missing = Self.codes.filter { !text.contains("`\($0)`") }
        #expect(missing.isEmpty, "not in docs/api.md: \(missing.sorted())")
    }
}
