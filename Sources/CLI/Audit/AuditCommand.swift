import ArgumentParser
import ControlPlane
import Foundation

/// `skelm audit …` reads the audit files in the state directory directly, so it
/// works against a stopped gateway (or a copy of its state dir) and never has to
/// trust a running process.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Query, verify and export the audit chain.",
        subcommands: [AuditQuery.self, AuditVerify.self, AuditExportCommand.self])
}

struct AuditLocation: ParsableArguments {
    @Option(help: "State directory holding audit.jsonl and audit/segments/ (default: the config's stateDir).") var stateDir: String?
    @OptionGroup var config: ConfigOptions

    func resolve() throws -> String {
        if let stateDir { return stateDir }
        return try config.load().stateDir
    }
}

struct AuditFilters: ParsableArguments {
    @Option(help: "Only entries of this run.") var run: String?
    @Option(help: "Only entries by this actor (gateway, api, …).") var actor: String?
    @Option(help: "Only this action (run.finished), or a family (run.*).") var action: String?
    @Option(help: "Only entries at or after this ISO 8601 time.") var since: String?
    @Option(help: "Only entries before this ISO 8601 time.") var until: String?
}

struct AuditQuery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "Audit entries, newest first.")
    @OptionGroup var location: AuditLocation
    @OptionGroup var filters: AuditFilters
    @Option(help: "At most this many entries.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let entries = try AuditVerifier.query(stateDir: location.resolve(), runId: filters.run, actor: filters.actor,
                                              action: filters.action, since: filters.since, until: filters.until, limit: limit)
        if json {
            print("[" + entries.map(\.line).joined(separator: ",\n") + "]")
            return
        }
        Output.table(["SEQ", "TIME", "ACTOR", "ACTION", "RUN", "DETAILS"], entries.map { e in
            [String(e.seq), e.timestamp, e.actor, e.action, e.runId ?? "-",
             e.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
        })
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every hash, link and signed checkpoint; exit 1 and name the first break.")
    @OptionGroup var location: AuditLocation
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let dir = try location.resolve()
        let every = (try? location.config.load().config.audit.checkpointEvery) ?? 1000
        let report = AuditVerifier.verify(stateDir: dir, checkpointEvery: every)
        if json {
            let data = try JSONEncoder().encode(report)
            Output.printJSON(data)
        } else {
            // Per file only when there are sealed segments: a single live log says it all in one line.
            if report.segments.count > 1 || report.segments.first?.file != "audit.jsonl" {
                for s in report.segments {
                    let range = s.firstSeq.map { "seq \($0)-\(s.lastSeq)" } ?? "empty"
                    let state = s.file == "audit.jsonl" ? "live" : s.sealed ? "sealed" : "not read-only"
                    print("  \(s.file): \(range), \(s.entries) entries, \(s.checkpoints) checkpoints, \(state)\(s.ok ? "" : ", BROKEN")")
                }
            }
            if report.ok {
                print("ok: \(report.entries) entries, \(report.checkpoints) signed checkpoints, last seq \(report.lastSeq)"
                      + (report.segments.count > 1 ? " in \(report.segments.count - 1) sealed segments and the live log" : ""))
            } else if let b = report.firstBreak {
                print("BROKEN: \(b.message)")
            }
        }
        if !report.ok { throw ExitCode(1) }
    }
}

struct AuditExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write the audit chain as JSONL or CSV, oldest first.")
    @OptionGroup var location: AuditLocation
    @OptionGroup var filters: AuditFilters
    @Option(help: "jsonl or csv.") var format = "jsonl"

    func run() async throws {
        guard format == "jsonl" || format == "csv" else { throw ValidationError("--format must be jsonl or csv") }
        let filter = AuditFilter(runId: filters.run, actor: filters.actor, action: filters.action, since: filters.since, until: filters.until)
        if format == "csv" { print(AuditExport.header) }
        // Page by page across the segments and the live log: months of log never sit in memory.
        try AuditVerifier.export(stateDir: location.resolve(), filter: filter) { page in
            print(page.map { format == "jsonl" ? $0.line + "\n" : AuditExport.row($0) }.joined(), terminator: "")
        }
    }
}
