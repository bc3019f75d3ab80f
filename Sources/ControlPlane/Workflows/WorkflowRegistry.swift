import Foundation
import Logging
import Workflow

/// The workflows found in `workflows.dirs`. A file that does not validate is
/// listed with its problems and never stops the gateway; the rest keep working.
public actor WorkflowRegistry {
    public struct Entry: Codable, Sendable {
        public var id: String
        public var file: String
        public var valid: Bool
        public var description: String?
        public var steps: Int?
        public var input: JSONValue?
        public var output: JSONValue?
        public var issues: [WorkflowIssue]
    }

    public static let suffixes = [".workflow.yaml", ".workflow.yml", ".workflow.json"]

    private let dirs: [String]
    private let logger: Logger
    private let audit: AuditLog?
    private var workflows: [String: WorkflowDefinition] = [:]
    private var entries: [Entry] = []

    public init(dirs: [String], audit: AuditLog? = nil, logger: Logger = Logger(label: "skelm.workflows")) {
        self.dirs = dirs
        self.audit = audit
        self.logger = logger
    }

    public func workflow(_ id: String) -> WorkflowDefinition? { workflows[id] }

    public func list() -> [Entry] { entries }

    /// Reads every workflow file again; returns how many were valid and invalid.
    @discardableResult
    public func reload() async -> (valid: Int, invalid: Int) {
        let before = workflows
        let result = scan()
        // What became runnable, stopped being runnable, or changed, is audited.
        for (id, def) in workflows where before[id] != def {
            await record(before[id] == nil ? "workflow.registered" : "workflow.changed", id)
        }
        for id in before.keys where workflows[id] == nil { await record("workflow.unregistered", id) }
        for entry in entries where !entry.valid {
            await record("workflow.invalid", entry.id, ["file": entry.file, "issues": "\(entry.issues.count)"])
        }
        return result
    }

    private func record(_ action: String, _ id: String, _ extra: [String: String] = [:]) async {
        guard let audit else { return }
        var details = ["workflow": id]
        details.merge(extra) { $1 }
        do { try await audit.append(actor: "gateway", action: action, details: details) } catch {
            logger.error("audit append failed", metadata: ["error": "\(error)"])
        }
    }

    private func scan() -> (valid: Int, invalid: Int) {
        var found: [String: WorkflowDefinition] = [:]
        var listed: [Entry] = []
        for file in Self.files(in: dirs) {
            switch WorkflowLoader.load(file: file) {
            case let .valid(def):
                if let other = listed.first(where: { $0.id == def.id && $0.valid }) {
                    let issue = WorkflowIssue(file: file, path: "id", line: nil, message: "workflow id '\(def.id)' is already defined in \(other.file)")
                    listed.append(Entry(id: def.id, file: file, valid: false, issues: [issue]))
                    logger.error("invalid workflow", metadata: ["file": "\(file)", "error": "\(issue)"])
                    continue
                }
                found[def.id] = def
                listed.append(Entry(id: def.id, file: file, valid: true, description: def.description,
                                    steps: def.steps.count, input: def.input, output: def.output, issues: []))
            case let .invalid(id, issues):
                listed.append(Entry(id: id ?? WorkflowLoader.defaultId(file), file: file, valid: false, issues: issues))
                for issue in issues { logger.error("invalid workflow", metadata: ["file": "\(file)", "error": "\(issue)"]) }
            }
        }
        workflows = found
        entries = listed.sorted { $0.id < $1.id }
        return (found.count, listed.count - found.count)
    }

    /// Workflow files below `dirs`, recursively, in a stable order. A missing
    /// directory is skipped (the config check already said so).
    static func files(in dirs: [String]) -> [String] {
        var out: [String] = []
        for dir in dirs {
            guard let e = FileManager.default.enumerator(atPath: dir) else { continue }
            while let rel = e.nextObject() as? String {
                if suffixes.contains(where: { rel.hasSuffix($0) }) { out.append(dir + "/" + rel) }
            }
        }
        return out.sorted()
    }
}
