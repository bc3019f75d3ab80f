import Foundation
import Workflow

/// Webhook deliveries: the signature checked over the raw body, the delivery
/// deduplicated by its id, then a fire whose input carries the parsed body and
/// the allowed headers (never a credential or a signature).
extension TriggerScheduler {
    public struct Delivery: Sendable {
        public var method: String
        /// Below `/hooks/`, as the router matched it.
        public var path: String
        public var headers: [(name: String, value: String)]
        public var query: [String: String]
        public var body: [UInt8]
    }

    /// What the sender is answered.
    public enum DeliveryResult: Sendable {
        case fired(runId: String, trigger: String)
        case buffered(trigger: String)
        case duplicate(runId: String?, trigger: String)
        case rejected(status: Int, message: String, retryAfter: Int? = nil)
    }

    /// The trigger that serves `method path`, and whether it is public; nil: none does.
    func hook(method: String, path: String) -> (id: String, hook: WebhookTrigger)? {
        guard let id = hooks["\(method) \(path)"], let a = armed[id], case let .webhook(hook) = a.trigger.kind else { return nil }
        return (id, hook)
    }

    /// Whether any method is served at `path` (405 rather than 404).
    func servesPath(_ path: String) -> Bool { hooks.keys.contains { $0.split(separator: " ", maxSplits: 1).last.map(String.init) == path } }

    /// `authenticated`: the caller showed a token (a hook that is not public needs one).
    func deliver(_ d: Delivery, authenticated: Bool, secret: @Sendable (String) -> [UInt8]?) async -> DeliveryResult {
        guard let (id, hook) = hook(method: d.method, path: d.path), let a = armed[id] else {
            return servesPath(d.path) ? .rejected(status: 405, message: "\(d.method) is not served at /hooks/\(d.path)")
                                      : .rejected(status: 404, message: "no webhook at /hooks/\(d.path)")
        }
        if !hook.isPublic, !authenticated { return .rejected(status: 401, message: "this webhook needs a token") }
        let now = Date()
        if let sig = hook.signature {
            let scheme: WebhookSignature
            switch sig {
            case let .hmac(_, tolerance): scheme = .hmac(tolerance: .seconds(tolerance))
            case .github: scheme = .github
            case let .slack(_, tolerance): scheme = .slack(tolerance: .seconds(tolerance))
            }
            if case let .rejected(failure) = scheme.verify(headers: d.headers, body: d.body, secret: secret(sig.secretName) ?? [], now: now) {
                record(.webhookRejected, id, ["reason": failure.description])
                return .rejected(status: 401, message: "the delivery's signature is not valid")
            }
        }
        if a.row.paused { return .rejected(status: 503, message: "trigger \(id) is paused", retryAfter: 60) }
        if let pause = admission.paused { return .rejected(status: 503, message: "the gateway is paused: \(pause.reason)", retryAfter: 60) }
        var deliveryId: String?
        if let header = hook.dedupeHeader {
            deliveryId = d.headers.first { $0.name.lowercased() == header }?.value
            if let deliveryId {
                guard deliveryId.utf8.count <= 200 else { return .rejected(status: 400, message: "\(header) is longer than 200 bytes") }
                if let seen = try? await store.delivery(triggerId: id, deliveryId: deliveryId, now: now), seen.seen {
                    return .duplicate(runId: seen.runId, trigger: id)
                }
            }
        }
        let input = Self.input(of: d, hook: hook, deliveryId: deliveryId)
        let extra = deliveryId.map { RunStore.rememberDelivery(triggerId: id, deliveryId: $0, ttl: hook.dedupeTTLSeconds) }
        switch await offer(id, slot: nil, input: input, reason: deliveryId.map { "webhook delivery \($0)" } ?? "webhook delivery", extra: extra) {
        case let .fired(runId): return .fired(runId: runId, trigger: id)
        case .buffered: return .buffered(trigger: id)
        case let .skipped(why):
            if why == "already fired" { return .duplicate(runId: nil, trigger: id) }
            return .rejected(status: 429, message: "not accepted now: \(why)", retryAfter: 10)
        case let .dropped(why): return .rejected(status: 429, message: "not accepted now: \(why)", retryAfter: 10)
        case let .failed(why):
            if why.hasPrefix(Self.inputMismatch) { return .rejected(status: 422, message: why) }
            return .rejected(status: 503, message: why, retryAfter: 10)
        }
    }

    /// `{body, headers, query, method, path, deliveryId?}`: the body parsed when
    /// it is JSON, its text otherwise (invalid UTF-8 replaced, never refused).
    static func input(of d: Delivery, hook: WebhookTrigger, deliveryId: String?) -> JSONValue {
        let body: JSONValue = d.body.isEmpty ? .null
            : (try? JSONDecoder().decode(JSONValue.self, from: Data(d.body))) ?? .string(String(decoding: d.body, as: UTF8.self))
        var headers: [String: JSONValue] = [:]
        let allowed = Set(hook.headers).subtracting(WebhookSignature.neverForwarded)
        for (name, value) in d.headers where allowed.contains(name.lowercased()) {
            headers[name.lowercased()] = .string(value)
        }
        var out: [String: JSONValue] = [
            "body": body, "headers": .object(headers), "query": .object(d.query.mapValues(JSONValue.string)),
            "method": .string(d.method), "path": .string("/hooks/" + d.path),
        ]
        if let deliveryId { out["deliveryId"] = .string(deliveryId) }
        return .object(out)
    }

    /// The header a delivery to `hook` must carry, missing from `names` (lower-cased): checked
    /// before the body is read, so an unsigned flood costs no body reads.
    static func missingSignatureHeader(_ hook: WebhookTrigger, names: Set<String>) -> String? {
        let needed: String? = switch hook.signature {
        case .github?: "x-hub-signature-256"
        case .slack?: names.contains("x-slack-signature") ? "x-slack-request-timestamp" : "x-slack-signature"
        case .hmac?: "x-skelm-signature"
        case nil: nil
        }
        guard let needed, !names.contains(needed) else { return nil }
        return needed
    }

    /// A delivery refused before its body was read (its signature header is missing).
    func refuseUnsigned(method: String, path: String, header: String) {
        guard let (id, _) = hook(method: method, path: path) else { return }
        record(.webhookRejected, id, ["reason": "no \(header) header: the sender does not sign its deliveries, or signs them for another scheme"])
    }
}
