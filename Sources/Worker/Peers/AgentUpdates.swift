import Synchronization
import Wire
import Workflow

/// Turns an agent's `session/update` notifications into run events. Message
/// and thought chunks arrive a few tokens at a time; they are joined into one
/// event per 4 KiB, per change of kind or per quarter second, so a chatty
/// agent costs the run store a handful of writes, not one per token. The
/// turn's whole message is kept apart: it becomes the step's output.
final class AgentUpdates: Sendable {
    private struct State {
        var pending: (type: JobEventType, text: String)?
        var lastFlush = ContinuousClock.now
        var message = ""
        var messageTruncated = false
    }

    static let flushBytes = 4096
    static let flushAfter = Duration.milliseconds(250)
    /// What one event's data may hold of a tool call's or plan's fields.
    static let maxField = 2000

    private let state = Mutex(State())
    private let emit: @Sendable (JobEventType, JSONValue) -> Void
    private let maxMessage: Int

    init(maxMessage: Int, emit: @escaping @Sendable (JobEventType, JSONValue) -> Void) {
        self.maxMessage = maxMessage
        self.emit = emit
    }

    /// The turn's message so far, and whether it passed the output limit.
    var message: (String, truncated: Bool) { state.withLock { ($0.message, $0.messageTruncated) } }

    func startTurn() {
        flush()
        state.withLock {
            $0.message = ""
            $0.messageTruncated = false
        }
    }

    func receive(_ params: JSONValue) {
        guard let update = params["update"], case let .string(kind)? = update["sessionUpdate"] else { return }
        switch kind {
        case "agent_message_chunk", "agent_thought_chunk":
            guard case let .string(text)? = update["content"]?["text"] else { return }
            let type: JobEventType = kind == "agent_message_chunk" ? .agentMessage : .agentThought
            append(type, text)
        case "tool_call", "tool_call_update":
            var data: [String: JSONValue] = [:]
            for key in ["toolCallId", "title", "kind", "status"] {
                if case let .string(v)? = update[key] { data[key] = .string(String(v.prefix(Self.maxField))) }
            }
            data["update"] = .bool(kind == "tool_call_update")
            send(.agentToolCall, .object(data))
        case "plan":
            let entries = (update["entries"].list).prefix(100).map { e -> JSONValue in
                var out: [String: JSONValue] = [:]
                for key in ["content", "priority", "status"] {
                    if case let .string(v)? = e[key] { out[key] = .string(String(v.prefix(Self.maxField))) }
                }
                return .object(out)
            }
            send(.agentPlan, ["entries": .array(Array(entries))])
        default:
            // Replayed history, commands, modes, titles, usage and kinds of later
            // protocol versions are not part of the run's story.
            return
        }
    }

    private func append(_ type: JobEventType, _ text: String) {
        let ready = state.withLock { s -> (JobEventType, String)? in
            if type == .agentMessage {
                if s.message.utf8.count + text.utf8.count <= maxMessage { s.message += text } else { s.messageTruncated = true }
            }
            var out: (JobEventType, String)?
            if let p = s.pending, p.type != type {
                out = (p.type, p.text)
                s.pending = nil
                s.lastFlush = .now
            }
            s.pending = (type, (s.pending?.text ?? "") + text)
            if out == nil, let p = s.pending, p.text.utf8.count >= Self.flushBytes || ContinuousClock.now - s.lastFlush >= Self.flushAfter {
                out = (p.type, p.text)
                s.pending = nil
                s.lastFlush = .now
            }
            return out
        }
        if let (t, text) = ready { emit(t, ["text": .string(text)]) }
    }

    private func send(_ type: JobEventType, _ data: JSONValue) {
        flush()
        emit(type, data)
    }

    /// Emits what chunks are still held.
    func flush() {
        let held = state.withLock { s -> (JobEventType, String)? in
            defer {
                s.pending = nil
                s.lastFlush = .now
            }
            return s.pending
        }
        if let (t, text) = held, !text.isEmpty { emit(t, ["text": .string(text)]) }
    }
}
