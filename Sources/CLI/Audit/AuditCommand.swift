import ArgumentParser
import ControlPlane
import Foundation

/// `skelm audit …` reads the chain itself (the audit files in the state
/// directory, or the database gateways sharing a PostgreSQL store append to),
/// so it works with the gateways stopped (or on a copy, or an export) and never
/// has to trust a running process.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Query, verify and export the audit chain.",
        subcommands: [AuditQuery.self, AuditVerify.self, AuditExportCommand.self])
}

struct AuditLocation: ParsableArguments {
    @Option(help: """
        State directory (or `skelm audit export --to` directory) holding audit.jsonl (default: the config's \
        stateDir, or its PostgreSQL store's shared chain when storage.driver is postgres).
        """) var stateDir: String?
    @OptionGroup var config: ConfigOptions

    func open() throws -> AuditSource {
        if let stateDir { return .files(stateDir: stateDir) }
        do { return try AuditSource.open(try config.load(), stateDir: nil) } catch let error as CLIFailure { throw error } catch {
            throw CLIFailure("audit: \(error)")
        }
    }
}

struct AuditFilters: ParsableArguments {
    @Option(help: "Only entries of this run.") var run: String?
    @Option(help: "Only entries by this actor (gateway, api, …).") var actor: String?
    @Option(help: "Only this action (run.finished), or a family (run.*).") var action: String?
    @Option(help: "Only entries at or after this ISO 8601 time.") var since: String?
    @Option(help: "Only entries before this ISO 8601 time.") var until: String?
    @Option(help: "Only entries written by this gateway (a chain several gateways share).") var gateway: String?

    var filter: AuditFilter {
        AuditFilter(runId: run, actor: actor, action: action, since: since, until: until, gateway: gateway)
    }
}

struct AuditQuery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "Audit entries, newest first.")
    @OptionGroup var location: AuditLocation
    @OptionGroup var filters: AuditFilters
    @Option(help: "At most this many entries.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let source = try location.open()
        let entries: [AuditEntry]
        do { entries = try await source.query(filters.filter, limit: limit) } catch {
            await source.close()
            throw CLIFailure("audit query: \(error)")
        }
        await source.close()
        if json {
            print("[" + entries.map(\.line).joined(separator: ",\n") + "]")
            return
        }
        let shared = entries.contains { $0.gateway != nil }
        Output.table(["SEQ", "TIME"] + (shared ? ["GATEWAY"] : []) + ["ACTOR", "ACTION", "RUN", "DETAILS"], entries.map { e in
            [String(e.seq), e.timestamp] + (shared ? [e.gateway ?? "-"] : []) + [e.actor, e.action, e.runId ?? "-",
             e.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
        })
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every hash, link and signed checkpoint; exit 1 and name the first break.")
    @OptionGroup var location: AuditLocation
    @Option(help: """
        A chain several gateways share: trust only these keys, one '<gateway> <hex of its audit.pub>' per line \
        (kept apart from the database), not the keys the chain records.
        """) var keys: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let source = try location.open()
        let every = (try? location.config.load().config.audit.checkpointEvery) ?? 1000
        let report: AuditVerifier.Report
        do { report = try await source.verify(checkpointEvery: every, trusted: keys) } catch {
            await source.close()
            throw CLIFailure("audit verify: \(error)")
        }
        await source.close()
        if json {
            let data = try JSONEncoder().encode(report)
            Output.printJSON(data)
        } else {
            // Per file only when there are sealed segments: a single live log says it all in one line.
            if report.segments.count > 1 || (report.segments.first.map { $0.file != "audit.jsonl" && $0.file != "database" } ?? false) {
                for s in report.segments {
                    let range = s.firstSeq.map { "seq \($0)-\(s.lastSeq)" } ?? "empty"
                    let state = s.file == "audit.jsonl" ? "live" : s.sealed ? "sealed" : "not read-only"
                    print("  \(s.file): \(range), \(s.entries) entries, \(s.checkpoints) checkpoints, \(state)\(s.ok ? "" : ", BROKEN")")
                }
            }
            if report.ok {
                let signers = (report.signers ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
                print("ok: \(report.entries) entries, \(report.checkpoints) signed checkpoints" + (signers.isEmpty ? "" : " (\(signers))")
                      + ", last seq \(report.lastSeq)"
                      + (report.segments.count > 1 ? " in \(report.segments.count - 1) sealed segments and the live log" : ""))
                for (gateway, hexes) in (report.keys ?? [:]).sorted(by: { $0.key < $1.key }) {
                    print("  \(gateway) signed with " + hexes.joined(separator: ", ") + (keys == nil ? "" : " (trusted)"))
                }
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
    @Option(help: """
        Write the chain several gateways share (entries, checkpoints and every gateway's public keys) \
        into this new directory, to verify offline with `skelm audit verify --state-dir DIR`.
        """) var to: String?

    func run() async throws {
        guard format == "jsonl" || format == "csv" else { throw ValidationError("--format must be jsonl or csv") }
        let source = try location.open()
        if let to {
            guard case let .database(store) = source else {
                await source.close()
                throw CLIFailure("audit export --to: \(source.description) is a gateway's own chain, already files that verify offline: copy audit.jsonl, audit.checkpoints.jsonl, audit.pub and audit/segments/")
            }
            do {
                let written = try await AuditBundle.write(from: store, to: to)
                await source.close()
                print("wrote \(written.entries) entries, \(written.checkpoints) checkpoints and the keys of \(written.gateways.joined(separator: ", ")) to \(to)")
                print("verify with: skelm audit verify --state-dir \(to)")
            } catch {
                await source.close()
                throw CLIFailure("audit export: \(error)")
            }
            return
        }
        let shared = if case .database = source { true } else { false }
        if format == "csv" { print(AuditExport.header(shared: shared)) }
        // Page by page across the segments and the live log (or the database): months of log never sit in memory.
        do {
            try await source.export(filters.filter) { page in
                print(page.map { format == "jsonl" ? $0.line + "\n" : AuditExport.row($0, shared: shared) }.joined(), terminator: "")
            }
        } catch {
            await source.close()
            throw CLIFailure("audit export: \(error)")
        }
        await source.close()
    }
}
