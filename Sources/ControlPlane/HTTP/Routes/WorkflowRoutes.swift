import Foundation
import HTTPTypes
import Hummingbird
import Workflow

extension API {
    func addWorkflowRoutes(_ router: Router<GatewayContext>) {
        router.get("/registry/workflows") { _, _ -> Response in
            struct List: Encodable { let workflows: [WorkflowRegistry.Entry] }
            return JSONResponse.make(List(workflows: await registry.list()))
        }
        router.get("/registry/workflows/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            guard let entry = await registry.list().first(where: { $0.id == id }) else {
                throw APIError.notFound("no workflow named \(id)")
            }
            struct One: Encodable {
                let workflow: WorkflowRegistry.Entry
                let definition: WorkflowDefinition?
            }
            return JSONResponse.make(One(workflow: entry, definition: await registry.workflow(id)))
        }
        // Validates a workflow sent as YAML or JSON text, without registering it.
        router.post("/v1/workflows/validate") { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(upTo: maxBodyBytes)
            let text = String(decoding: body.readableBytesView, as: UTF8.self)
            struct Verdict: Encodable {
                let valid: Bool
                let id: String?
                let issues: [WorkflowIssue]
            }
            switch WorkflowLoader.parse(text, file: "<request>", defaultId: nil) {
            case let .valid(def): return JSONResponse.make(Verdict(valid: true, id: def.id, issues: []))
            case let .invalid(id, issues): return JSONResponse.make(Verdict(valid: false, id: id, issues: issues), status: .unprocessableContent)
            }
        }
        router.post("/registry/reload") { _, _ -> Response in
            let (valid, invalid) = await registry.reload()
            return JSONResponse.make(["valid": valid, "invalid": invalid])
        }
    }
}
