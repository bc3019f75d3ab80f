import Foundation
import HTTPTypes
import Hummingbird

extension API {
    func addAuditRoutes(_ router: Router<GatewayContext>) {
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
            let entries = try AuditVerifier.query(stateDir: stateDir, runId: request.query("run"), actor: request.query("actor"),
                                                  action: request.query("action"), since: request.query("since"),
                                                  until: request.query("until"), limit: Int.max).reversed()
            let body = format == "jsonl" ? entries.map { $0.line + "\n" }.joined() : AuditExport.csv(Array(entries))
            return Response(status: .ok,
                            headers: [.contentType: format == "jsonl" ? "application/x-ndjson" : "text/csv; charset=utf-8",
                                      .contentDisposition: "attachment; filename=\"audit.\(format)\""],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
    }
}
