import Foundation
import Workflow

/// Registering, replacing and unregistering workflows over the API.
///
/// Reading and validating a source happens before the actor is entered
/// (`RegistrationCandidate`); each change here is then one synchronous step on
/// the actor: check the ids, move an upload into place, write the
/// registrations file, update the lists. Nothing awaits in between, so of two
/// registrations of one id exactly one wins and the other sees the conflict.
extension WorkflowRegistry {
    /// Registers every workflow of `candidate`; returns their entries.
    func register(_ candidate: RegistrationCandidate, by actor: String) async throws(RegistrationError) -> [Entry] {
        let registration: Registration
        do { registration = try commit(candidate, replacing: nil, by: actor) } catch {
            candidate.discard()
            throw error
        }
        let registered = entries(of: registration)
        await record("workflow.registered", actor: actor, details(registration))
        return registered
    }

    /// Replaces the registration that defines `id` with `candidate`, which must define `id` too.
    func replace(_ id: String, with candidate: RegistrationCandidate, by actor: String) async throws(RegistrationError) -> [Entry] {
        let registration: Registration
        do { registration = try commit(candidate, replacing: id, by: actor) } catch {
            candidate.discard()
            throw error
        }
        let registered = entries(of: registration)
        var d = details(registration)
        d["replaced"] = id
        await record("workflow.replaced", actor: actor, d)
        return registered
    }

    /// Unregisters `id` (the other workflows of its registration stay).
    /// Runs already started keep the definition they were given.
    func unregister(_ id: String, by actor: String) async throws(RegistrationError) {
        let (index, _) = try registrationDefining(id)
        let old = registrations[index]
        var next = registrations
        next[index].workflows.removeAll { $0 == id }
        if next[index].workflows.isEmpty { next.remove(at: index) }
        try save(next)
        registrations = next
        registeredEntries[id] = nil
        registeredWorkflows[id] = nil
        removeUploadIfUnused(old.source)
        publish()
        var d = old.source.auditDetails
        d["workflow"] = id
        await record("workflow.unregistered", actor: actor, d)
    }

    /// Throws unless `id` is a registered workflow (404) that config does not define (409).
    @discardableResult
    func registrationDefining(_ id: String) throws(RegistrationError) -> (Int, Registration) {
        if let file = configFile(defining: id) {
            throw .conflict("workflow '\(id)' is defined by the config dir file \(file); only registered workflows can be replaced or unregistered over the API")
        }
        guard let i = registrations.firstIndex(where: { $0.workflows.contains(id) }) else {
            throw .notFound("no registered workflow named \(id)")
        }
        return (i, registrations[i])
    }

    // MARK: The one step

    private func commit(_ c: RegistrationCandidate, replacing: String?, by actor: String) throws(RegistrationError) -> Registration {
        guard let settings else { throw .unavailable("this gateway takes no registrations") }
        if let storeProblem { throw .unavailable("registering is off: \(storeProblem)") }
        var old: Registration?
        if let replacing {
            old = try registrationDefining(replacing).1
            guard c.ids.contains(replacing) else {
                throw .badSource("the new source defines \(c.ids.map { "'\($0)'" }.joined(separator: ", ")), not '\(replacing)': PUT /v1/workflows/\(replacing) must keep that id")
            }
        }
        for id in c.ids {
            if let file = configFile(defining: id) {
                throw .conflict("workflow '\(id)' is already defined by the config dir file \(file); a registration may not shadow it")
            }
            if let other = registrations.first(where: { $0 != old && $0.workflows.contains(id) }) {
                throw .conflict("workflow '\(id)' is already registered (from \(Self.describe(other.source))); use PUT /v1/workflows/\(id) to replace it")
            }
        }
        let store = RegistrationStore(dir: settings.registeredDir)
        // Whole milliseconds: what the file keeps, so a restart shows the same time.
        let now = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded() / 1000)
        let registration = Registration(source: c.source, workflows: c.ids, registeredAt: now, registeredBy: actor)
        var moved: String?
        if case let .upload(sha, staging) = c.origin {
            let target = store.uploadDir(sha)
            if old?.source == c.source {
                // The same zip again: its tree is already in place, byte for byte.
                c.discard()
            } else {
                // A tree no registration names is a leftover; the new one replaces it.
                if !registrations.contains(where: { $0.source == c.source }) { try? FileManager.default.removeItem(atPath: target) }
                guard rename(staging, target) == 0 else {
                    throw .unavailable("cannot move the upload into \(target): \(String(cString: strerror(errno)))")
                }
                moved = target
            }
        }
        var next = registrations.filter { $0 != old }
        next.append(registration)
        do { try save(next) } catch {
            if let moved { try? FileManager.default.removeItem(atPath: moved) }
            throw error
        }
        registrations = next
        for id in old?.workflows ?? [] {
            registeredEntries[id] = nil
            registeredWorkflows[id] = nil
        }
        if let old { removeUploadIfUnused(old.source) }
        let root = Self.root(of: registration.source, settings)
        for w in c.workflows {
            let file = if case .upload = registration.source { root + "/" + w.file } else { w.file }
            registeredEntries[w.definition.id] = Entry(w.definition, file: file, origin: origin(registration))
            registeredWorkflows[w.definition.id] = w.definition
        }
        publish()
        return registration
    }

    private func save(_ next: [Registration]) throws(RegistrationError) {
        guard let settings else { throw .unavailable("this gateway takes no registrations") }
        if let storeProblem { throw .unavailable("registering is off: \(storeProblem)") }
        do { try RegistrationStore(dir: settings.registeredDir).save(next) } catch {
            throw .unavailable("the registration was not recorded: \(error)")
        }
    }

    private func removeUploadIfUnused(_ source: RegisteredSource) {
        guard case let .upload(sha) = source, let settings, !registrations.contains(where: { $0.source == source }) else { return }
        try? FileManager.default.removeItem(atPath: RegistrationStore(dir: settings.registeredDir).uploadDir(sha))
    }

    // MARK: Reading registrations at a reload

    /// Loads each registration's workflows from disk: an upload from its tree,
    /// a path again through the path rules (a symlink swapped in since must
    /// not take effect). Only the ids it registered are taken.
    func scanRegistered() {
        registeredEntries = [:]
        registeredWorkflows = [:]
        guard let settings else { return }
        for r in registrations {
            let root = Self.root(of: r.source, settings)
            var loaded: [String: (file: String, outcome: WorkflowLoader.Outcome)] = [:]
            var refusal: String?
            if case .path = r.source {
                do throws(RegistrationError) {
                    let real = try RegistrationPaths.resolve(root, settings)
                    for file in Self.sourceFiles(real) {
                        guard let rf = RegistrationPaths.realPath(file) else { continue }
                        do throws(RegistrationError) { try RegistrationPaths.check(rf, spelled: file, settings) } catch { continue }
                        Self.add(WorkflowLoader.load(file: rf), file: rf, to: &loaded)
                    }
                } catch { refusal = error.description }
            } else {
                for file in Self.sourceFiles(root) { Self.add(WorkflowLoader.load(file: file), file: file, to: &loaded) }
            }
            for id in r.workflows {
                let problem: WorkflowIssue?
                if let refusal {
                    problem = WorkflowIssue(file: root, path: "", line: nil, message: refusal)
                } else if let file = configFile(defining: id) {
                    problem = WorkflowIssue(file: root, path: "id", line: nil, message: "workflow id '\(id)' is now defined by the config dir file \(file), which wins; unregister this one")
                } else if loaded[id] == nil {
                    problem = WorkflowIssue(file: root, path: "", line: nil, message: "registered workflow '\(id)' is no longer in \(root)")
                } else { problem = nil }
                switch (problem, loaded[id]) {
                case let (nil, (file, .valid(def))?):
                    registeredEntries[id] = Entry(def, file: file, origin: origin(r))
                    registeredWorkflows[id] = def
                case let (nil, (file, .invalid(_, issues))?):
                    registeredEntries[id] = Entry(id: id, file: file, valid: false, issues: issues, origin: origin(r))
                default:
                    registeredEntries[id] = Entry(id: id, file: loaded[id]?.file ?? root, valid: false, issues: problem.map { [$0] } ?? [], origin: origin(r))
                }
            }
        }
    }

    private static func add(_ outcome: WorkflowLoader.Outcome, file: String, to loaded: inout [String: (file: String, outcome: WorkflowLoader.Outcome)]) {
        let id: String
        switch outcome {
        case let .valid(def): id = def.id
        case let .invalid(found, _): id = found ?? WorkflowLoader.defaultId(file)
        }
        if loaded[id] == nil { loaded[id] = (file, outcome) }
    }

    private static func sourceFiles(_ root: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir) else { return [] }
        return isDir.boolValue ? files(in: [root]) : [root]
    }

    static func root(of source: RegisteredSource, _ settings: RegistrationSettings) -> String {
        switch source {
        case let .path(p): p
        case let .upload(sha): RegistrationStore(dir: settings.registeredDir).uploadDir(sha)
        }
    }

    static func describe(_ source: RegisteredSource) -> String {
        switch source {
        case let .path(p): "path \(p)"
        case let .upload(sha): "upload \(sha)"
        }
    }

    private func origin(_ r: Registration) -> WorkflowOrigin { .registered(r.source, at: r.registeredAt, by: r.registeredBy) }

    private func details(_ r: Registration) -> [String: String] {
        var d = r.source.auditDetails
        d["workflow"] = r.workflows.joined(separator: ",")
        return d
    }

    private func entries(of r: Registration) -> [Entry] { r.workflows.compactMap { registeredEntries[$0] } }
}
