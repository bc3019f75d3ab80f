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
            let entries = try AuditVerifier.query(stateDir: stateDir, runId: request.query("run") ?? request.query("runId"),
                                                  actor: request.query("actor"), action: request.query("action"),
                                                  since: request.query("since"), until: request.query("until"),
                                                  before: before, limit: limit)
            struct Page: Encodable {
                let entries: [AuditEntry]
                let next: Int?
            }
            return JSONResponse.make(Page(entries: entries, next: entries.count == limit ? entries.last?.seq : nil))
        }
        router.get("/audit/verify") { _, _ -> Response in
            let head = await audit.lastEntry
            let report = AuditVerifier.verify(stateDir: stateDir, head: head, checkpointEvery: checkpointEvery)
            return JSONResponse.make(report)
        }
        router.get("/v1/audit/export") { request, _ -> Response in
            let format = request.query("format") ?? "jsonl"
            guard format == "jsonl" || format == "csv" else { throw APIError.badRequest("format must be jsonl or csv") }
            let filter = AuditFilter(runId: request.query("run"), actor: request.query("actor"), action: request.query("action"),
                                     since: request.query("since"), until: request.query("until"))
            let layout = AuditLayout(stateDir: stateDir)
            // Streamed a page at a time across every segment: a whole chain never sits in memory.
            let body = ResponseBody { writer in
                let scanner = AuditScanner(layout, filter)
                if format == "csv" { try await writer.write(ByteBuffer(string: AuditExport.header + "\n")) }
                while true {
                    let page = scanner.next()
                    if page.isEmpty { break }
                    let text = format == "jsonl" ? page.map { $0.line + "\n" }.joined() : page.map(AuditExport.row).joined()
                    try await writer.write(ByteBuffer(string: text))
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
