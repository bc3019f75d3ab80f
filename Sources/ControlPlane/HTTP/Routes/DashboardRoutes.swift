import Foundation
import Hummingbird

extension API {
    /// `GET /v1/dashboard/*`: read-only aggregations computed in SQL.
    func addDashboardRoutes(_ router: Router<GatewayContext>) {
        router.get("/v1/dashboard/overview") { request, _ -> Response in
            JSONResponse.make(try await store.overview(try request.window(defaultSpan: 86400)))
        }

        router.get("/v1/dashboard/workflows") { request, _ -> Response in
            let window = try request.window(defaultSpan: 86400)
            struct Body: Encodable {
                let since, until: Date
                let workflows: [Dashboard.WorkflowStats]
            }
            return JSONResponse.make(Body(since: window.since, until: window.until, workflows: try await store.workflowStats(window)))
        }

        router.get("/v1/dashboard/runs") { request, _ -> Response in
            let limit = try request.intQuery("limit", default: 50, range: 1...1000)
            struct Body: Encodable { let runs: [Dashboard.RecentRun] }
            return JSONResponse.make(Body(runs: try await store.recentRuns(status: try request.runStatusQuery(),
                                                                           workflow: try request.nonEmptyQuery("workflow"), limit: limit)))
        }

        router.get("/v1/dashboard/analytics") { request, _ -> Response in
            var bucket = Dashboard.Bucket.hour
            if let b = request.query("bucket") {
                guard let parsed = Dashboard.Bucket(rawValue: b) else { throw APIError.badRequest("bucket must be hour or day") }
                bucket = parsed
            }
            // A day's buckets over a day would be one bar: a month is the useful default.
            let window = try request.window(defaultSpan: bucket == .day ? 30 * 86400 : 86400)
            let count = RunStore.bucketCount(window, bucket: bucket)
            guard count <= Self.maxBuckets else {
                throw APIError.badRequest("since..until spans \(count) \(bucket.rawValue)s; at most \(Self.maxBuckets) buckets (narrow the window or use bucket=day)")
            }
            let workflow = try request.nonEmptyQuery("workflow")
            struct Body: Encodable {
                let bucket: String
                let since, until: Date
                let workflow: String?
                let buckets: [Dashboard.BucketStats]
            }
            return JSONResponse.make(Body(bucket: bucket.rawValue, since: window.since, until: window.until, workflow: workflow,
                                          buckets: try await store.timeSeries(window, bucket: bucket, workflow: workflow)))
        }

        router.get("/v1/dashboard/errors") { request, _ -> Response in
            JSONResponse.make(try await store.errors(try request.window(defaultSpan: 86400)))
        }

        router.get("/v1/dashboard/approvals") { _, _ -> Response in
            JSONResponse.make(try await store.approvalStats())
        }
    }

    /// Bounds the response and the zero-filled series built in memory.
    static let maxBuckets = 1000
}

extension Request {
    /// `?name=` as an instant: RFC 3339 (`2026-01-01T00:00:00Z`, fractional
    /// seconds and offsets allowed), the form every date in the API has.
    func instantQuery(_ name: String) throws -> Date? {
        guard let s = query(name) else { return nil }
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
            formatter.formatOptions = options
            if let date = formatter.date(from: s) { return date }
        }
        throw APIError.badRequest("\(name) must be an ISO-8601 instant such as 2026-01-01T00:00:00Z, not '\(s)'")
    }

    /// `?since=&until=`, defaulting to the `defaultSpan` seconds before `until` (now by default).
    func window(defaultSpan: TimeInterval) throws -> Dashboard.Window {
        let until = try instantQuery("until") ?? Date()
        let since = try instantQuery("since") ?? until.addingTimeInterval(-defaultSpan)
        guard since < until else { throw APIError.badRequest("since must be before until") }
        return Dashboard.Window(since: since, until: until)
    }

    func runStatusQuery() throws -> RunStatus? {
        guard let s = query("status") else { return nil }
        guard let status = RunStatus(rawValue: s) else {
            throw APIError.badRequest("status must be one of \(RunStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return status
    }

    /// A filter given empty (`?workflow=`) is a mistake, not "match nothing".
    func nonEmptyQuery(_ name: String) throws -> String? {
        guard let s = query(name) else { return nil }
        guard !s.isEmpty else { throw APIError.badRequest("\(name) must not be empty") }
        return s
    }
}
