import Foundation
import PostgresFixture
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

extension PostgresStoreTests {
    /// A throwaway database reached through `blackhole_proxy.py`: the
    /// database's own URL and the forwarder's, the forwarder, and its log.
    struct Forwarded {
        let database: String
        let url: String
        let proxy: FixturePeer
        let log: String

        var forwarderLog: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        static func start(_ arguments: [String] = []) async throws -> Forwarded {
            let url = try await PostgresCluster.shared.database()
            let port = try #require(url.split(separator: ":").last?.split(separator: "/").first.map(String.init))
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("blackhole-\(UUID().uuidString).log").path
            let proxy = try await FixturePeer.start("blackhole_proxy.py", ["--to", port] + arguments, log: log)
            return Forwarded(database: PostgresStoreTests.databaseName(url), url: url.replacingOccurrences(of: ":\(port)/", with: ":\(proxy.port)/"),
                             proxy: proxy, log: log)
        }

        func stop() {
            proxy.stop()
            try? FileManager.default.removeItem(atPath: log)
        }
    }

    @Test("a connection whose path dies silently is given up after storage.statementTimeoutSeconds: runs go on over a new one rather than wait out TCP's retransmissions")
    func silentPath() async throws {
        let forwarded = try await Forwarded.start()
        defer { forwarded.stop() }
        let gw = try await TestGateway.started(workflows: Self.workflows,
                                               config: Self.config(url: forwarded.url, poolSize: 2, storage: ", statementTimeoutSeconds: 2"))
        defer { gw.cleanupLater() }
        let before = try await gw.run("hello", ["name": "before"])
        #expect(before["status"] == "succeeded", "\(before)")

        // Every connection the gateway holds now carries nothing, and says nothing.
        forwarded.proxy.signal(SIGUSR1)
        let after = try await gw.run("hello", ["name": "after"])
        #expect(after["status"] == "succeeded" && after["output"] == "hello after",
                "\(after)\n\(gw.logText.suffix(3000))")
        #expect(gw.logText.contains("the database did not answer a statement in 2 s"), "\(gw.logText.suffix(3000))\nforwarder:\n\(forwarded.forwarderLog)")
        let listed = try await gw.get("/runs?limit=10").json?["runs"].list ?? []
        #expect(listed.count == 2 && listed.allSatisfy { $0["status"] == "succeeded" }, "\(listed)")
    }

    @Test("an audit COMMIT that committed but whose answer never came back is found in the chain, not appended again: the run ends once, with one run.finished")
    func auditCommitAnswerLost() async throws {
        // Every connection open when the server says this goes silent, the one saying it first.
        let marker = "skelm-test-freeze"
        let forwarded = try await Forwarded.start(["--freeze-on", marker])
        defer { forwarded.stop() }
        let name = forwarded.database
        let gw = try await TestGateway.started(workflows: Self.workflows,
                                               config: Self.config(url: forwarded.url, poolSize: 2, storage: ", statementTimeoutSeconds: 2"))
        defer { gw.cleanupLater() }
        // At the COMMIT of the first run.finished entry, after every row of it is
        // written and before the server answers: a notice the forwarder stops at.
        // The server commits; the gateway never hears that it did.
        try await PostgresCluster.shared.execute("""
            CREATE SEQUENCE lost_answer;
            CREATE FUNCTION lost_answer() RETURNS trigger AS $$
            BEGIN
              IF NEW.line LIKE '%"action":"run.finished"%' AND nextval('lost_answer') = 1 THEN RAISE NOTICE '\(marker)'; END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE CONSTRAINT TRIGGER lost_answer AFTER INSERT ON audit_entries DEFERRABLE INITIALLY DEFERRED
              FOR EACH ROW EXECUTE FUNCTION lost_answer();
            """, database: name)
        let run = try await gw.run("hello", ["name": "once"])
        let id = try #require(run["id"]?.stringValue)
        #expect(run["status"] == "succeeded" && run["output"] == "hello once", "\(run)\n\(gw.logText.suffix(3000))")
        #expect(forwarded.forwarderLog.contains("frozen"), "the forwarder never saw the notice:\n\(forwarded.forwarderLog)")
        #expect(gw.logText.contains("a commit whose answer was lost had committed"), "\(gw.logText.suffix(3000))")
        let finished = try await PostgresCluster.shared.query(
            "SELECT count(*) FROM audit_entries WHERE line LIKE '%\"action\":\"run.finished\"%' AND line LIKE '%\(id)%'", database: name)
        #expect(finished == ["1"], "run.finished entries for the run: \(finished)")
        let events = try await PostgresCluster.shared.query(
            "SELECT count(*) FROM events WHERE run_id = '\(id)' AND type = 'run.succeeded'", database: name)
        #expect(events == ["1"])
        let report = try #require(try await gw.get("/audit/verify").json)
        #expect(report["ok"] == true, "\(report)")
    }

    @Test("a write PostgreSQL keeps refusing as impossible to serialize is retried, then answered 503 with Retry-After: nothing written, and the next one goes through")
    func contended() async throws {
        let url = try await PostgresCluster.shared.database()
        let name = Self.databaseName(url)
        let gw = try await TestGateway.started(workflows: Self.workflows, config: Self.config(url: url))
        defer { gw.cleanupLater() }
        // Every new run row refused with SQLSTATE 40001, as a serialization failure is.
        try await PostgresCluster.shared.execute("""
            CREATE FUNCTION always_conflict() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'conflict for the test' USING ERRCODE = '40001'; END $$ LANGUAGE plpgsql;
            CREATE TRIGGER always_conflict BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION always_conflict();
            """, database: name)
        let refused = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"]], headers: [("Idempotency-Key", "k1")])
        #expect(refused.status == 503 && refused.json?["error"]?["code"] == "unavailable" && refused.header("Retry-After") == "1",
                "\(refused.status) \(refused.errorMessage)")
        #expect(refused.errorMessage.contains("could not order this write"), "\(refused.errorMessage)")
        #expect(try await PostgresCluster.shared.query("SELECT count(*) FROM runs", database: name) == ["0"])
        #expect(try await PostgresCluster.shared.query("SELECT count(*) FROM idempotency_keys", database: name) == ["0"])
        try await PostgresCluster.shared.execute("DROP TRIGGER always_conflict ON runs", database: name)
        let again = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"], "mode": "sync"], headers: [("Idempotency-Key", "k1")])
        #expect(again.status == 200 && again.json?["output"] == "hello x", "\(again.status) \(again.errorMessage)")
    }

    @Test("storage.statementTimeoutSeconds out of range is refused at start, naming the key")
    func statementTimeoutRange() async throws {
        let gw = try TestGateway(workflows: Self.workflows,
                                 config: Self.config(url: "postgres://skelm@127.0.0.1:5432/runs", storage: ", statementTimeoutSeconds: 0"))
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("storage.statementTimeoutSeconds") && gw.logText.contains("between 1 and 3600"), "\(gw.logText)")
    }
}
