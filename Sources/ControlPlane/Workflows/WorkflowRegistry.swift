import Foundation
import Logging
import Workflow

/// The workflows found in `workflows.dirs`, and those registered over the API
/// (`WorkflowRegistry+Registration.swift`). A file that does not validate is
/// listed with its problems and never stops the gateway; the rest keep working.
/// A registration never shadows a config-dir workflow: the config wins, and
/// the registered one is listed as invalid, saying why.
public actor WorkflowRegistry {
    public struct Entry: Sendable {
        public var id: String
        public var file: String
        public var valid: Bool
        public var description: String?
        public var steps: Int?
        public var input: JSONValue?
        public var output: JSONValue?
        public var issues: [WorkflowIssue]
        public var origin: WorkflowOrigin

        init(id: String, file: String, valid: Bool, description: String? = nil, steps: Int? = nil, input: JSONValue? = nil,
             output: JSONValue? = nil, issues: [WorkflowIssue], origin: WorkflowOrigin) {
            self.id = id
            self.file = file
            self.valid = valid
            self.description = description
            self.steps = steps
            self.input = input
            self.output = output
            self.issues = issues
            self.origin = origin
        }

        init(_ def: WorkflowDefinition, file: String, origin: WorkflowOrigin) {
            self.init(id: def.id, file: file, valid: true, description: def.description, steps: def.steps.count,
                      input: def.input, output: def.output, issues: [], origin: origin)
        }
    }

    public static let suffixes = [".workflow.yaml", ".workflow.yml", ".workflow.json"]

    private(set) var dirs: [String]
    let logger: Logger
    let audit: AuditLog?
    /// nil: this registry takes no registrations (a harness without a state dir).
    private(set) var settings: RegistrationSettings?
    /// Read from the registrations file once, at the first reload; from then
    /// on this is the truth, and every change is written before it is made here.
    var registrations: [Registration] = []
    /// Why the registrations file could not be read; while set, nothing is
    /// registered or unregistered, so a damaged file is never overwritten.
    var storeProblem: String?
    private var registrationsLoaded = false

    private var configEntries: [Entry] = []
    private var configWorkflows: [String: WorkflowDefinition] = [:]
    var registeredEntries: [String: Entry] = [:]
    var registeredWorkflows: [String: WorkflowDefinition] = [:]
    private var workflows: [String: WorkflowDefinition] = [:]
    private var entries: [Entry] = []

    public init(dirs: [String], registration: RegistrationSettings? = nil, audit: AuditLog? = nil,
                logger: Logger = Logger(label: "skelm.workflows")) {
        self.dirs = dirs
        self.settings = registration
        self.audit = audit
        self.logger = logger
    }

    public func workflow(_ id: String) -> WorkflowDefinition? { workflows[id] }

    public func list() -> [Entry] { entries }

    /// Every valid workflow (what triggers may fire).
    public func definitions() -> [WorkflowDefinition] { Array(workflows.values) }

    public var registrationSettings: RegistrationSettings? { settings }

    /// For a config hot reload: new `workflows.dirs`, then everything read again.
    @discardableResult
    public func setDirs(_ dirs: [String]) async -> (valid: Int, invalid: Int) {
        self.dirs = dirs
        return await reload()
    }

    /// For a config hot reload: new allowed dirs and upload caps. Registrations
    /// already made stay; a path one that now lies outside the allowed dirs is
    /// listed invalid at the next reload.
    public func setRegistration(_ settings: RegistrationSettings) {
        self.settings = settings
    }

    /// Reads every workflow file again (config dirs and registrations); returns
    /// how many were valid and invalid.
    @discardableResult
    public func reload() async -> (valid: Int, invalid: Int) {
        let before = workflows
        scanConfig()
        await loadRegistrationsOnce()
        scanRegistered()
        publish()
        // What became runnable, stopped being runnable, or changed, is audited.
        for (id, def) in workflows where before[id] != def {
            await record(before[id] == nil ? "workflow.registered" : "workflow.changed", ["workflow": id])
        }
        for id in before.keys where workflows[id] == nil { await record("workflow.unregistered", ["workflow": id]) }
        for entry in entries where !entry.valid {
            await record("workflow.invalid", ["workflow": entry.id, "file": entry.file, "issues": "\(entry.issues.count)"])
        }
        return (workflows.count, entries.count - workflows.count)
    }

    func record(_ action: String, actor: String = "gateway", _ details: [String: String]) async {
        guard let audit else { return }
        do { try await audit.append(actor: actor, action: action, details: details) } catch {
            logger.error("audit append failed", metadata: ["error": "\(error)"])
        }
    }

    /// The config dir's file that defines `id`, valid or not.
    func configFile(defining id: String) -> String? { configEntries.first { $0.id == id }?.file }

    /// Makes the merged view the routes and the run service read.
    /// A workflow whose `invoke`s cannot run (a missing workflow, a cycle) is listed invalid.
    func publish() {
        var merged = configWorkflows.merging(registeredWorkflows) { config, _ in config }
        var listed = configEntries + registeredEntries.values
        for (id, problem) in InvokeGraph.problems(merged) {
            merged[id] = nil
            for i in listed.indices where listed[i].id == id && listed[i].valid {
                listed[i] = Entry(id: id, file: listed[i].file, valid: false,
                                  issues: [WorkflowIssue(file: listed[i].file, path: "steps", line: nil, message: problem)], origin: listed[i].origin)
            }
        }
        workflows = merged
        entries = listed.sorted { ($0.id, $0.file) < ($1.id, $1.file) }
        onChange?()
    }

    /// Told after every change to the set of workflows (the trigger scheduler re-syncs).
    private var onChange: (@Sendable () -> Void)?

    public func setOnChange(_ callback: @escaping @Sendable () -> Void) { onChange = callback }

    private func scanConfig() {
        var found: [String: WorkflowDefinition] = [:]
        var listed: [Entry] = []
        for (dir, file) in Self.filesByDir(in: dirs) {
            switch WorkflowLoader.load(file: file) {
            case let .valid(def):
                if let other = listed.first(where: { $0.id == def.id && $0.valid }) {
                    let issue = WorkflowIssue(file: file, path: "id", line: nil, message: "workflow id '\(def.id)' is already defined in \(other.file)")
                    listed.append(Entry(id: def.id, file: file, valid: false, issues: [issue], origin: .dir(dir)))
                    logger.error("invalid workflow", metadata: ["file": "\(file)", "error": "\(issue)"])
                    continue
                }
                found[def.id] = def
                listed.append(Entry(def, file: file, origin: .dir(dir)))
            case let .invalid(id, issues):
                listed.append(Entry(id: id ?? WorkflowLoader.defaultId(file), file: file, valid: false, issues: issues, origin: .dir(dir)))
                for issue in issues { logger.error("invalid workflow", metadata: ["file": "\(file)", "error": "\(issue)"]) }
            }
        }
        configWorkflows = found
        configEntries = listed
    }

    private func loadRegistrationsOnce() async {
        guard !registrationsLoaded, let settings else { return }
        registrationsLoaded = true
        let store = RegistrationStore(dir: settings.registeredDir)
        do {
            try store.prepare()
            registrations = try store.load()
        } catch {
            storeProblem = "\(error)"
            logger.error("registrations not loaded; registering is off until this is fixed", metadata: ["error": "\(error)"])
            await record("workflow.registrations_unreadable", ["error": "\(error)"])
            return
        }
        for stale in store.sweep(keeping: registrations) {
            logger.info("removed a leftover of an unfinished registration", metadata: ["name": "\(stale)"])
        }
    }

    /// Workflow files below `dirs`, recursively, in a stable order. A missing
    /// directory is skipped (the config check already said so).
    static func files(in dirs: [String]) -> [String] { filesByDir(in: dirs).map(\.file) }

    /// The same, each with the dir it was found in.
    static func filesByDir(in dirs: [String]) -> [(dir: String, file: String)] {
        var out: [(dir: String, file: String)] = []
        for dir in dirs {
            guard let e = FileManager.default.enumerator(atPath: dir) else { continue }
            while let rel = e.nextObject() as? String {
                if suffixes.contains(where: { rel.hasSuffix($0) }) { out.append((dir, dir + "/" + rel)) }
            }
        }
        return out.sorted { $0.file < $1.file }
    }
}
