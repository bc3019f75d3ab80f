/// One thing wrong with a workflow file: where (key path and line) and what.
public struct WorkflowIssue: Codable, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var path: String
    public var line: Int?
    public var message: String

    public var description: String {
        "\(file)\(line.map { ":\($0)" } ?? ""): \(path.isEmpty ? "" : path + ": ")\(message)"
    }
}
