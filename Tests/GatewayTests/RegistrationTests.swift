import Foundation
import SkelmClient
import Testing
import Workflow

/// Registering workflows over the API: by path, by zip; listing where each
/// comes from; surviving a restart; replacing and removing; and the refusals.
@Suite("Registering workflows over HTTP", .serialized)
final class RegistrationTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: ["hello.workflow.yaml": TestWorkflows.all["hello.workflow.yaml"]!])
    }

    deinit { gw.cleanupLater() }

    static func workflow(_ id: String, echo: String = "hi", description: String? = nil) -> String {
        "id: \(id)\n" + (description.map { "description: \($0)\n" } ?? "") + "steps:\n  - id: say\n    exec: { argv: [echo, \"\(echo)\"] }\n"
    }

    /// Writes `text` at `relative` under the project directory.
    func write(_ relative: String, _ text: String) throws {
        let path = gw.dir + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func registerPath(_ path: String, method: String = "POST", id: String? = nil) async throws -> GatewayClient.Reply {
        try await Self.registerPath(gw.client, path, put: method == "PUT", id: id)
    }

    func upload(_ zip: Data, to target: String = "/v1/workflows/register", put: Bool = false,
                client: GatewayClient? = nil) async throws -> GatewayClient.Reply {
        try await Self.upload(client ?? gw.client, zip, to: target, put: put)
    }

    static func registerPath(_ client: GatewayClient, _ path: String, put: Bool = false, id: String? = nil) async throws -> GatewayClient.Reply {
        let body: JSONValue = ["source": ["type": "path", "path": .string(path)]]
        let target = id.map { "/v1/workflows/\($0)" } ?? "/v1/workflows/register"
        return try await client.send(put ? .PUT : .POST, target, body: Data(body.jsonText.utf8))
    }

    /// The zip as curl's `-F file=@flows.zip` sends it.
    static func upload(_ client: GatewayClient, _ zip: Data, to target: String = "/v1/workflows/register",
                       put: Bool = false) async throws -> GatewayClient.Reply {
        let boundary = "skelm-\(UUID().uuidString)"
        var body = Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"flows.zip\"\r\nContent-Type: application/zip\r\n\r\n".utf8)
        body.append(zip)
        body.append(Data("\r\n--\(boundary)--\r\n".utf8))
        return try await client.send(put ? .PUT : .POST, target, body: body,
                                     headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
    }

    func listed() async throws -> [String: JSONValue] {
        let list = try await gw.get("/v1/workflows")
        #expect(list.status == 200)
        var out: [String: JSONValue] = [:]
        for entry in list.json?["workflows"].list ?? [] { out[entry["id"]?.stringValue ?? ""] = entry }
        return out
    }

    @Test("a path registers; the list says where each workflow comes from; a run of it succeeds")
    func byPath() async throws {
        try write("extra/greet.workflow.yaml", Self.workflow("greet", echo: "registered"))
        let r = try await registerPath("extra/greet.workflow.yaml")
        #expect(r.status == 201, "\(r.errorMessage)")
        #expect(r.json?["registered"].list.first?["id"] == "greet")
        let all = try await listed()
        #expect(all["hello"]?["source"] == ["type": "dir", "dir": .string(gw.dir + "/workflows")])
        #expect(all["hello"]?["registeredBy"] == nil)
        #expect(all["greet"]?["source"] == ["type": "path", "path": .string(gw.dir + "/extra/greet.workflow.yaml")])
        #expect(all["greet"]?["registeredBy"] == "unix:root")
        #expect(all["greet"]?["registeredAt"]?.stringValue != nil)
        let run = try await gw.run("greet")
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "registered")
        // A directory registers every workflow file in it.
        try write("more/a.workflow.yaml", Self.workflow("a"))
        try write("more/sub/b.workflow.yml", Self.workflow("b"))
        let dir = try await registerPath(gw.dir + "/more")
        #expect(dir.status == 201, "\(dir.errorMessage)")
        #expect(Set(dir.json?["registered"].list.compactMap { $0["id"]?.stringValue } ?? []) == ["a", "b"])
        // Audited with the caller as the actor.
        let audit = try await gw.get("/audit?action=workflow.registered&actor=unix:root")
        #expect(audit.json?["entries"].list.contains { $0["details"]?["workflow"] == "greet" && $0["details"]?["source"] == "path" } == true)
    }

    @Test("a zip registers; it survives a restart; PUT replaces it; DELETE removes it")
    func byZipAcrossRestart() async throws {
        let zip = StoredZip([("flows/", nil), ("flows/zipped.workflow.yaml", Self.workflow("zipped", echo: "from zip"))]).data
        let r = try await upload(zip)
        #expect(r.status == 201, "\(r.errorMessage)")
        let entry = r.json?["registered"].list.first
        #expect(entry?["id"] == "zipped")
        #expect(entry?["source"]?["type"] == "upload")
        let sha = entry?["source"]?["sha256"]?.stringValue ?? ""
        #expect(sha.count == 64)
        #expect(FileManager.default.fileExists(atPath: gw.stateDir + "/registered/\(sha)/flows/zipped.workflow.yaml"))
        try write("extra/greet.workflow.yaml", Self.workflow("greet"))
        #expect(try await registerPath("extra/greet.workflow.yaml").status == 201)

        await gw.stop()
        try await gw.start()
        let all = try await listed()
        #expect(all["zipped"]?["valid"] == true)
        #expect(all["zipped"]?["source"]?["sha256"] == .string(sha))
        #expect(all["greet"]?["registeredBy"] == "unix:root")
        #expect(try await gw.run("zipped")["output"] == "from zip")

        // PUT replaces the registration that defines the id.
        let v2 = StoredZip([("zipped.workflow.yaml", Self.workflow("zipped", echo: "v2", description: "second"))]).data
        let put = try await upload(v2, to: "/v1/workflows/zipped", put: true)
        #expect(put.status == 200, "\(put.errorMessage)")
        #expect(try await listed()["zipped"]?["description"] == "second")
        #expect(try await gw.run("zipped")["output"] == "v2")
        #expect(!FileManager.default.fileExists(atPath: gw.stateDir + "/registered/\(sha)"), "the old tree goes with its registration")
        try write("extra/other.workflow.yaml", Self.workflow("other"))
        let wrongId = try await registerPath("extra/other.workflow.yaml", method: "PUT", id: "greet")
        #expect(wrongId.status == 400, "\(wrongId.errorMessage)")
        #expect(try await registerPath("extra/greet.workflow.yaml", method: "PUT", id: "nosuch").status == 404)
        try write("extra/hello.workflow.yaml", Self.workflow("hello"))
        #expect(try await registerPath("extra/hello.workflow.yaml", method: "PUT", id: "hello").status == 409)

        // DELETE unregisters; a config-dir workflow cannot be.
        let del = try await gw.client.send(.DELETE, "/v1/workflows/zipped")
        #expect(del.status == 204, "\(del.errorMessage)")
        #expect(try await listed()["zipped"] == nil)
        #expect(try await gw.client.send(.DELETE, "/v1/workflows/zipped").status == 404)
        #expect(try await gw.client.send(.DELETE, "/v1/workflows/hello").status == 409)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: gw.stateDir + "/registered"))?.filter { $0.count == 64 } == [])
        await gw.stop()
        try await gw.start()
        let after = try await listed()
        #expect(after["zipped"] == nil && after["greet"] != nil)
    }

    @Test("paths outside the project root, or escaping it by a symlink, are 403")
    func outside() async throws {
        let outside = "/tmp/skelm-outside-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try Self.workflow("escape").write(toFile: outside + "/escape.workflow.yaml", atomically: true, encoding: .utf8)
        let direct = try await registerPath(outside + "/escape.workflow.yaml")
        #expect(direct.status == 403)
        #expect(direct.errorMessage.contains("outside the project root"))
        try FileManager.default.createSymbolicLink(atPath: gw.dir + "/innocent", withDestinationPath: outside)
        let linked = try await registerPath("innocent/escape.workflow.yaml")
        #expect(linked.status == 403)
        #expect(linked.errorMessage.contains("really \(outside)/escape.workflow.yaml"))
        // A symlinked file inside a registered directory does not get through either.
        try write("mixed/ok.workflow.yaml", Self.workflow("ok"))
        try FileManager.default.createSymbolicLink(atPath: gw.dir + "/mixed/escape.workflow.yaml", withDestinationPath: outside + "/escape.workflow.yaml")
        #expect(try await registerPath("mixed").status == 403)
        #expect(try await listed()["escape"] == nil)
        let refused = try await gw.get("/audit?action=workflow.register_refused")
        #expect(refused.json?["entries"].list.contains { $0["details"]?["code"] == "forbidden" && $0["actor"] == "unix:root" } == true)
    }

    @Test("bad sources are 400, invalid workflows 422, config-dir ids 409")
    func refusals() async throws {
        #expect(try await registerPath("nosuch.workflow.yaml").status == 400)
        try write("notes.txt", "hello")
        #expect(try await registerPath("notes.txt").status == 400)
        let notJSON = try await gw.client.send(.POST, "/v1/workflows/register", body: Data(#"{"source": {"type": "url", "url": "x"}}"#.utf8))
        #expect(notJSON.status == 400)
        try write("broken/broken.workflow.yaml", "id: broken\nsteps: []\n")
        try write("broken/fine.workflow.yaml", Self.workflow("fine"))
        let invalid = try await registerPath("broken")
        #expect(invalid.status == 422)
        #expect(invalid.json?["issues"].list.first?["file"]?.stringValue?.hasSuffix("broken.workflow.yaml") == true)
        #expect(try await listed()["fine"] == nil, "nothing of an invalid source is registered")
        try write("shadow/hello.workflow.yaml", Self.workflow("hello"))
        let shadow = try await registerPath("shadow/hello.workflow.yaml")
        #expect(shadow.status == 409)
        #expect(shadow.errorMessage.contains("config dir"))
        let hostile = try await upload(StoredZip([("../evil.workflow.yaml", Self.workflow("evil"))]).data)
        #expect(hostile.status == 400)
        #expect(hostile.errorMessage.contains("'..'"))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: gw.stateDir + "/registered")) ?? [] == [])
    }

    @Test("two registrations of one id at once: one 201, one 409")
    func concurrent() async throws {
        try write("race1/race.workflow.yaml", Self.workflow("race", echo: "one"))
        try write("race2/race.workflow.yaml", Self.workflow("race", echo: "two"))
        let client: GatewayClient = gw.client
        let zip = StoredZip([("race.workflow.yaml", Self.workflow("race", echo: "three"))]).data
        async let a = Self.registerPath(client, "race1/race.workflow.yaml")
        async let b = Self.upload(client, zip)
        let statuses = try await [a.status, b.status].sorted()
        #expect(statuses == [201, 409])
        let c = try await registerPath("race2/race.workflow.yaml")
        #expect(c.status == 409)
        #expect(c.errorMessage.contains("PUT /v1/workflows/race"))
    }

    @Test("a zip over workflows.upload.maxZipKB is 413 before it is parsed")
    func tooLarge() async throws {
        let big = StoredZip([("big.workflow.yaml", Self.workflow("big") + "# " + String(repeating: "x", count: 1100 << 10) + "\n")]).data
        let r = try await upload(big)
        #expect(r.status == 413)
        #expect(r.errorMessage.contains("workflows.upload.maxZipKB"))
    }

    @Test("with bearer tokens: an admin token may register by zip; an operator token may not register or unregister")
    func scopes() async throws {
        let tokens = ["ADMIN_TOK": "admin-0123456789abcdef", "OPS_TOK": "operator-0123456789abcdef"]
        let bearer = try TestGateway(workflows: [:], config: TestGateway.config(server: """
            { host: 127.0.0.1, port: 0, auth: { mode: bearer, tokens: [
                { name: root, scope: admin, env: ADMIN_TOK }, { name: ci, scope: operator, env: OPS_TOK } ] } }
            """.replacingOccurrences(of: "\n", with: " ")))
        bearer.environment = tokens
        try await bearer.start()
        defer { bearer.cleanupLater() }
        var admin: GatewayClient = bearer.tcp, ops: GatewayClient = bearer.tcp
        admin.token = tokens["ADMIN_TOK"]
        ops.token = tokens["OPS_TOK"]
        let zip = StoredZip([("scoped.workflow.yaml", Self.workflow("scoped"))]).data
        #expect(try await Self.upload(ops, zip).status == 403)
        let r = try await Self.upload(admin, zip)
        #expect(r.status == 201, "\(r.errorMessage)")
        #expect(r.json?["registered"].list.first?["registeredBy"] == "token:root")
        #expect(try await ops.send(.DELETE, "/v1/workflows/scoped").status == 403)
        #expect(try await admin.send(.DELETE, "/v1/workflows/scoped").status == 204)
    }

    @Test("on loopback without auth, a multipart upload is refused as a cross-site form could send it")
    func loopbackMultipart() async throws {
        let r = try await upload(StoredZip([("x.workflow.yaml", Self.workflow("x"))]).data, client: gw.tcp)
        #expect(r.status == 415)
        #expect(try await listed()["x"] == nil)
    }
}

/// A zip of stored (uncompressed) entries: `nil` content is a directory.
struct StoredZip {
    let data: Data

    init(_ items: [(String, String?)]) {
        var body = Data(), directory = Data()
        for (name, text) in items {
            let content = Data((text ?? "").utf8)
            let crc = Self.crc32(content)
            let nameBytes = Data(name.utf8)
            let offset = UInt32(body.count)
            let mode: UInt32 = text == nil ? 0o040755 : 0o100644
            body.put32(0x0403_4b50); body.put16(20); body.put16(1 << 11); body.put16(0); body.put16(0); body.put16(0x21)
            body.put32(crc); body.put32(UInt32(content.count)); body.put32(UInt32(content.count)); body.put16(UInt16(nameBytes.count)); body.put16(0)
            body.append(nameBytes); body.append(content)
            directory.put32(0x0201_4b50); directory.put16(0x0314); directory.put16(20); directory.put16(1 << 11); directory.put16(0)
            directory.put16(0); directory.put16(0x21); directory.put32(crc); directory.put32(UInt32(content.count)); directory.put32(UInt32(content.count))
            directory.put16(UInt16(nameBytes.count)); directory.put16(0); directory.put16(0); directory.put16(0); directory.put16(0)
            directory.put32(mode << 16); directory.put32(offset); directory.append(nameBytes)
        }
        var end = Data()
        end.put32(0x0605_4b50); end.put16(0); end.put16(0); end.put16(UInt16(items.count)); end.put16(UInt16(items.count))
        end.put32(UInt32(directory.count)); end.put32(UInt32(body.count)); end.put16(0)
        data = body + directory + end
    }

    static func crc32(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

private extension Data {
    mutating func put16(_ v: UInt16) { append(contentsOf: [UInt8(v & 0xFF), UInt8(v >> 8)]) }
    mutating func put32(_ v: UInt32) { put16(UInt16(v & 0xFFFF)); put16(UInt16(v >> 16)) }
}
