import Foundation
import PostgresFixture
import Testing
import Workflow

extension PostgresStoreTests {
    /// Where a run's end is held open on the database's side when the database goes.
    enum EndWrite: String, CaseIterable, CustomTestStringConvertible {
        /// The `run.finished` audit entry's transaction (it goes first: an action is audited before it is done).
        case auditEntry
        /// The run row's move to `succeeded`, with its `run.succeeded` event.
        case runRow

        var testDescription: String { self == .auditEntry ? "its audit entry" : "its run row" }

        /// A trigger that holds the first such write for 30 s (a sequence counts:
        /// a transaction ended by the cut-off does not give back what it took).
        var trigger: String {
            let (table, event, condition) = switch self {
            case .auditEntry: ("audit_entries", "INSERT", "NEW.line LIKE '%run.finished%'")
            case .runRow: ("runs", "UPDATE", "NEW.status = 'succeeded'")
            }
            return """
                CREATE SEQUENCE held_end;
                CREATE FUNCTION held_end() RETURNS trigger AS $$
                BEGIN
                  IF \(condition) AND nextval('held_end') = 1 THEN PERFORM pg_sleep(30); END IF;
                  RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER held_end BEFORE \(event) ON \(table) FOR EACH ROW EXECUTE FUNCTION held_end();
                """
        }
    }

    @Test("the database lost while a run's end is written: the end waits for it and is written once when it is back", arguments: EndWrite.allCases)
    func databaseLostAtRunEnd(_ held: EndWrite) async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        // One pooled session, the one the trigger holds: a retry cannot run on a
        // second session the cut-off has not reached yet, only on a new one once
        // the database is back. (A retry whose COMMIT the cut-off interrupts is
        // of unknown outcome, and is left to the stranded-run sweep by design.)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url, poolSize: 1))
        defer { gw.cleanupLater() }
        try await PostgresCluster.shared.execute(held.trigger, database: name)
        let id = try #require(try await gw.run("hello", ["name": "x"], sync: false)["id"]?.stringValue)
        // The end's transaction is open, held by the trigger: now the database goes.
        var holding = false
        for _ in 0..<1500 where !holding {
            holding = try await PostgresCluster.shared.query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '\(name)' AND wait_event = 'PgSleep'", database: "postgres") == ["1"]
            if !holding { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(holding, "the run's end never reached the database\n\(gw.logText.suffix(3000))")
        try await Self.cutOff(name)
        // Away for longer than a lease (10 s).
        try await Task.sleep(for: .seconds(12))
        try await PostgresCluster.shared.execute("ALTER DATABASE \(name) ALLOW_CONNECTIONS true", database: "postgres")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded", "\(done)\n\(gw.logText.suffix(3000))")
        let (events, _) = try await gw.events(id)
        #expect(events.filter { $0.type == "run.succeeded" }.count == 1 && events.last?.type == "run.succeeded", "\(events.map(\.type))")
        #expect(events.filter { $0.type == "step.started" }.count == 1, "the step ran again: \(events.map(\.type))")
        // One entry for the one end, in a chain that still verifies.
        let audit = try #require(try await gw.get("/audit?run=\(id)&action=run.finished").json?["entries"].list)
        #expect(audit.count == 1, "\(audit)\n\(gw.logText.suffix(3000))")
        #expect(try await gw.get("/audit/verify").json?["ok"] == true)
    }
}
