/// `error.code` of every error the HTTP API answers with, one case per
/// documented code (docs/api.md, and the `Error` schema of docs/openapi.yaml,
/// which a test keeps equal to this list). Clients switch on it.
public enum APIErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case invalidJSON = "invalid_json"
    case invalidInput = "invalid_input"
    case invalidPermissions = "invalid_permissions"
    case invalidConfig = "invalid_config"
    case invalidWorkflow = "invalid_workflow"
    case unauthorized
    case forbidden
    case hostNotAllowed = "host_not_allowed"
    case originNotAllowed = "origin_not_allowed"
    case notFound = "not_found"
    case methodNotAllowed = "method_not_allowed"
    case conflict
    case payloadTooLarge = "payload_too_large"
    case tooManyItems = "too_many_items"
    case unsupportedMediaType = "unsupported_media_type"
    /// An operator paused the gateway (`POST /gateway/pause`).
    case paused
    /// A schedule's body is not a valid trigger.
    case invalidSchedule = "invalid_schedule"
    /// A fire by hand was skipped or dropped by the trigger's overlap policy.
    case triggerBusy = "trigger_busy"
    /// A fire could not make a run (its input does not match the workflow's schema, …).
    case fireFailed = "fire_failed"
    /// A webhook delivery's signature is missing or wrong.
    case badSignature = "bad_signature"
    /// Too many deliveries for a webhook's trigger right now: retry after `Retry-After`.
    case tooManyRequests = "too_many_requests"
    /// An MCP server or agent the request needed could not be started or did not answer.
    case peerFailed = "peer_failed"
    /// The gateway is draining, or a store it needs is not readable.
    case unavailable
    case `internal`
}
