import Foundation
import Wire
import Workflow

/// Reads a chat-completions reply as it streams (`text/event-stream` of
/// `chat.completion.chunk`s, then `data: [DONE]`), or whole (a
/// `chat.completion`). Written here because the deltas must reach the run's
/// event stream while they arrive, which only the control plane (which makes
/// the request) can do; it is bounded by the response size cap, and keeps
/// nothing but text, counts and names.
struct ChatStream {
    private(set) var content = ""
    private(set) var model: String?
    private(set) var finishReason: String?
    private(set) var usage = InferComplete.Usage(promptTokens: 0, completionTokens: 0)
    private(set) var done = false
    /// Text of deltas not yet handed on.
    private var pending = ""
    private var buffer: [UInt8] = []

    /// Feeds bytes of the stream; returns the text of the deltas they completed.
    mutating func feed(_ bytes: [UInt8]) -> String {
        buffer += bytes
        while let newline = buffer.firstIndex(of: 0x0A) {
            var line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            if line.last == 0x0D { line.removeLast() }
            handle(String(decoding: line, as: UTF8.self))
        }
        defer { pending = "" }
        return pending
    }

    private mutating func handle(_ line: String) {
        guard line.hasPrefix("data:") else { return }
        let payload = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
        if payload == "[DONE]" {
            done = true
            return
        }
        guard let chunk = JSONValue.parse(payload) else { return }
        take(chunk, delta: true)
    }

    /// A whole `chat.completion` (a provider that does not stream).
    mutating func whole(_ body: [UInt8]) {
        guard let reply = JSONValue.parse(String(decoding: body, as: UTF8.self)) else { return }
        take(reply, delta: false)
        done = true
    }

    private mutating func take(_ object: JSONValue, delta: Bool) {
        if let m = object["model"]?.stringValue { model = m }
        if case let .array(choices)? = object["choices"], let first = choices.first {
            let part = delta ? first["delta"]?["content"]?.stringValue : first["message"]?["content"]?.stringValue
            if let part {
                content += part
                pending += part
            }
            if let reason = first["finish_reason"]?.stringValue { finishReason = reason }
        }
        if case let .object(u)? = object["usage"] {
            // The provider's numbers, bounded: a count is never worth a crash.
            if case let .number(p)? = u["prompt_tokens"], let n = Int(exactly: p.rounded()), n >= 0 { usage.promptTokens = min(n, 1 << 40) }
            if case let .number(c)? = u["completion_tokens"], let n = Int(exactly: c.rounded()), n >= 0 { usage.completionTokens = min(n, 1 << 40) }
        }
    }

    /// The message of an error reply (`{"error": {"message": …}}`), if it has one.
    static func errorMessage(_ body: [UInt8]) -> String? {
        JSONValue.parse(String(decoding: body.prefix(64 << 10), as: UTF8.self))?["error"]?["message"]?.stringValue
    }
}
