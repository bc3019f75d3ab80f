import Foundation
import Hummingbird

/// What the routes reach: the gateway's parts, nothing else.
struct API: Sendable {
    let gateway: Gateway
    let runs: RunService
    let store: RunStore
    let registry: WorkflowRegistry
    let pool: WorkerPool
    let hub: RunEventHub
    let audit: AuditLog
    let stateDir: String
    let checkpointEvery: Int
    let maxBodyBytes: Int
    let heartbeat: Duration
    let startedAt: Date
    let readiness: Readiness
    let authenticator: Authenticator

    func router() -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: AuthMiddleware(authenticator: authenticator))
        addHealthRoutes(router)
        addWorkflowRoutes(router)
        addRunRoutes(router)
        addEventRoutes(router)
        addWorkerRoutes(router)
        addAuditRoutes(router)
        addApprovalRoutes(router)
        addMetricsRoutes(router)
        addDashboardRoutes(router)
        addRegistrationRoutes(router)
        addGatewayRoutes(router)
        addBatchRoutes(router)
        addConfigRoutes(router)
        addTriggerRoutes(router)
        addQueueRoutes(router)
        addWebhookRoutes(router)
        addRegistryRoutes(router)
        addSessionRoutes(router)
        addOpenAPIRoutes(router)
        return router
    }
}

public enum SkelmVersion {
    public static let string = "0.1.0"
}
