import Foundation
import HTTPTypes
import Hummingbird

extension API {
    func addEventRoutes(_ router: Router<GatewayContext>) {
        router.get("/runs/:id/events") { request, context -> Response in
            let id = try context.parameters.require("id")
            guard let run = try await store.run(id, withSteps: false) else { throw APIError.notFound("no run \(id)") }
            let since = try request.intQuery("since", default: 0, range: 0...Int(Int32.max))
            let accept = request.headers[.accept] ?? ""
            if accept.contains("application/json"), !accept.contains("text/event-stream") {
                let limit = try request.intQuery("limit", default: 1000, range: 1...10_000)
                struct Page: Encodable {
                    let runId: String
                    let status: RunStatus
                    let events: [RunEvent]
                    let lastSeq: Int
                }
                let events = try await store.events(runId: id, since: since, limit: limit)
                return JSONResponse.make(Page(runId: id, status: run.status, events: events, lastSeq: run.lastSeq))
            }
            // A reconnecting EventSource sends the last id it saw; it gets exactly what followed.
            var from = since
            if let last = request.headers[HTTPField.Name("Last-Event-ID")!] {
                guard let n = Int(last), n >= 0 else { throw APIError.badRequest("Last-Event-ID must be an event seq") }
                from = n
            }
            return eventStream(runId: id, after: from)
        }
    }

    /// Replays persisted events after `after`, then tails live ones, with a
    /// heartbeat comment, and closes after the run's terminal event.
    func eventStream(runId: String, after: Int) -> Response {
        let store = self.store, hub = self.hub, heartbeat = self.heartbeat
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache",
                                   HTTPField.Name("X-Accel-Buffering")!: "no"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            // Subscribe first: an event committed during the replay is then in the stream, not lost.
            let (subscription, live) = hub.subscribe(runId: runId)
            defer { hub.unsubscribe(runId: runId, id: subscription) }
            var last = after
            func send(_ e: RunEvent, _ writer: inout any ResponseBodyWriter) async throws -> Bool {
                guard e.seq > last else { return false }
                last = e.seq
                try await writer.write(ByteBuffer(string: Self.frame(e)))
                return e.isTerminal
            }
            func replay(_ writer: inout any ResponseBodyWriter) async throws -> Bool {
                while true {
                    let page = try await store.events(runId: runId, since: last, limit: 500)
                    for e in page where try await send(e, &writer) { return true }
                    if page.count < 500 { return false }
                }
            }
            try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
            if try await replay(&writer) { return try await writer.finish(nil) }
            // The client may already hold the terminal event (Last-Event-ID at the end of a finished run).
            if let run = try await store.run(runId, withSteps: false), run.status.isTerminal, last >= run.lastSeq {
                return try await writer.finish(nil)
            }

            enum Item: Sendable { case event(RunEvent), beat }
            let (merged, feed) = AsyncStream<Item>.makeStream()
            let forward = Task {
                for await e in live { feed.yield(.event(e)) }
                feed.finish()
            }
            let beats = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: heartbeat)
                    feed.yield(.beat)
                }
            }
            defer {
                forward.cancel()
                beats.cancel()
            }
            for await item in merged {
                switch item {
                case .beat:
                    try await writer.write(ByteBuffer(string: ": heartbeat\n\n"))
                case let .event(e):
                    if e.seq > last + 1 {
                        // Events committed by another writer can arrive out of order: fill the gap from the store.
                        if try await replay(&writer) { return try await writer.finish(nil) }
                    }
                    if try await send(e, &writer) {
                        _ = try await replay(&writer)
                        return try await writer.finish(nil)
                    }
                }
            }
            // The hub closed the stream (the run ended): send whatever is left.
            _ = try await replay(&writer)
            try await writer.finish(nil)
        })
    }

    static func frame(_ e: RunEvent) -> String {
        let data = (try? JSONResponse.encoder.encode(e)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return "id: \(e.seq)\nevent: \(e.type)\ndata: \(data)\n\n"
    }
}
