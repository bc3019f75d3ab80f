import Foundation
import Workflow

/// A trigger's spec as `GET /triggers` shows it: the same keys a workflow's
/// `triggers:` entry is written with, so what an operator reads back is what
/// they would write. A webhook's secret appears by name only.
struct TriggerSpecView: Encodable {
    let trigger: Trigger

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func duration(_ ms: Int) -> String {
        if ms % 86_400_000 == 0 { return "\(ms / 86_400_000)d" }
        if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        func put(_ key: String, _ value: some Encodable) throws { try c.encode(value, forKey: Key(key)) }
        try put("id", trigger.name)
        switch trigger.kind {
        case let .cron(expression, zone):
            try put("cron", expression)
            try put("tz", zone)
        case let .interval(every, jitter):
            try put("every", Self.duration(every))
            if jitter > 0 { try put("jitter", Self.duration(jitter)) }
        case let .at(date):
            try put("at", date.formatted(.iso8601))
        case let .webhook(h):
            var o: [String: JSONValue] = ["path": .string(h.path), "method": .string(h.method), "public": .bool(h.isPublic),
                                          "maxBodyKB": .number(Double(h.maxBodyBytes >> 10)), "headers": .array(h.headers.map(JSONValue.string))]
            if let sig = h.signature {
                let scheme: String = switch sig {
                case .hmac: "hmac"
                case .github: "github"
                case .slack: "slack"
                }
                o["signature"] = ["scheme": .string(scheme), "secret": .string(sig.secretName)]
            }
            if let header = h.dedupeHeader {
                o["dedupe"] = ["header": .string(header), "ttl": .string(Self.duration(h.dedupeTTLSeconds * 1000))]
            }
            try put("webhook", JSONValue.object(o))
        case let .poll(p):
            let probe: String = switch p.probe.kind {
            case .http: "http"
            default: "exec"
            }
            var o: [String: JSONValue] = ["every": .string(Self.duration(p.everyMs)), "probe": .string(probe)]
            if let key = p.key { o["key"] = .string(key) }
            try put("poll", JSONValue.object(o))
        case let .queue(q):
            try put("queue", JSONValue.object([
                "name": .string(q.queue), "visibilityTimeout": .string(Self.duration(q.visibilityTimeoutSeconds * 1000)),
                "maxAttempts": .number(Double(q.maxAttempts)), "concurrency": .number(Double(q.concurrency)),
                "maxDepth": .number(Double(q.maxDepth)),
            ]))
        case let .fileWatch(w):
            var o: [String: JSONValue] = ["dir": .string(w.dir), "events": .array(w.events.map { .string($0.rawValue) }),
                                          "recursive": .bool(w.recursive), "debounce": .string(Self.duration(w.debounceMs))]
            if let p = w.pattern { o["pattern"] = .string(p) }
            try put("file-watch", JSONValue.object(o))
        case .manual:
            try put("manual", true)
        }
        if let input = trigger.input { try put("input", input) }
        if case .queue = trigger.kind {} else {
            try put("overlap", trigger.overlap.rawValue)
            if trigger.overlap == .bufferAll { try put("maxBuffer", trigger.maxBuffer) }
            if trigger.overlap == .allowAll { try put("maxConcurrent", trigger.maxConcurrent) }
        }
        if trigger.kind.isTimeBased {
            try put("catchUp", trigger.catchUp.rawValue)
            try put("catchUpWindow", Self.duration(Int(trigger.catchUpWindowSeconds * 1000)))
            if trigger.catchUp == .all { try put("maxCatchUp", trigger.maxCatchUp) }
        }
    }
}
