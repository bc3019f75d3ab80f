import Foundation
import HTTPTypes
import Hummingbird

extension API {
    func addAuditRoutes(_ router: Router<GatewayContext>) {
        // A page reads backwards from the end (or from the `before` cursor) and stops
        // at `limit` matches, so its cost does not grow with the log (docs/audit.md).
        router.get("/audit") { request, _ -> Response in
            let limit = try request.intQuery("limit", default: 100, range: 1...10_000)
            let before = try request.query("before").map { _ in try request.intQuery("before", default: 0, range: 1...Int.max) }
            let filter = AuditFilter(runId: request.query("run") ?? request.query("runId"), actor: request.query("actor"),
                                     action: request.query("action"), since: request.query("since"), until: request.query("until"),
                                     before: before, gateway: request.query("gateway"))
            // What was recorded before the request came is in the answer.
            await audit.settled()
            // A gateway sharing its store shares one chain, in the database.
            let entries = if let shared = audit.shared {
                try await SharedAuditReader.query(shared.engine, filter, limit: limit)
            } else {
                AuditVerifier.query(stateDir: stateDir, filter, limit: limit)
            }
            struct Page: Encodable {
                let entries: [AuditEntry]
                let next: Int?
            }
            return JSONResponse.make(Page(entries: entries, next: entries.count == limit ? entries.last?.seq : nil))
        }
        router.get("/audit/verify") { _, _ -> Response in
            await audit.settled()
            let head = await audit.lastEntry()
            let report = if let shared = audit.shared {
                try await AuditVerifier.verify(database: shared.engine, head: head)
            } else {
                AuditVerifier.verify(stateDir: stateDir, head: head, checkpointEvery: checkpointEvery)
            }
            return JSONResponse.make(report)
        }
        router.get("/v1/audit/export") { request, _ -> Response in
            let format = request.query("format") ?? "jsonl"
            guard format == "jsonl" || format == "csv" else { throw APIError.badRequest("format must be jsonl or csv") }
            let filter = AuditFilter(runId: request.query("run"), actor: request.query("actor"), action: request.query("action"),
                                     since: request.query("since"), until: request.query("until"), gateway: request.query("gateway"))
            await audit.settled()
            let layout = AuditLayout(stateDir: stateDir)
            let shared = audit.shared?.engine
            // Streamed a page at a time across every segment (or from the database):
            // a whole chain never sits in memory.
            let body = ResponseBody { writer in
                func write(_ page: [AuditEntry]) async throws {
                    let text = format == "jsonl" ? page.map { $0.line + "\n" }.joined() : page.map { AuditExport.row($0, shared: shared != nil) }.joined()
                    try await writer.write(ByteBuffer(string: text))
                }
                if format == "csv" { try await writer.write(ByteBuffer(string: AuditExport.header(shared: shared != nil) + "\n")) }
                if let shared {
                    try await SharedAuditReader.export(shared, filter) { try await write($0) }
                } else {
                    let scanner = AuditScanner(layout, filter)
                    while true {
                        let page = scanner.next()
                        if page.isEmpty { break }
                        try await write(page)
                    }
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok,
                            headers: [.contentType: format == "jsonl" ? "application/x-ndjson" : "text/csv; charset=utf-8",
                                      .contentDisposition: "attachment; filename=\"audit.\(format)\""],
                            body: body)
        }
    }
}
