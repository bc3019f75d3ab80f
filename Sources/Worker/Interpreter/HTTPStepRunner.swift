import Foundation
import Wire
import Workflow

/// `http` steps: the templates are evaluated here, the request is made by
/// the control plane (which adds credentials the worker never sees), and the
/// response, untrusted data, is parsed here into the step's output.
extension Interpreter {
    func runHTTP(_ http: HTTPStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        let policy = spec.policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { throw deny(path, denied) }
        let scope = frame.scope(input: spec.input, env: env)
        var url: String
        var headers: [Header] = []
        var body: [UInt8]?
        do {
            url = try Template.string(http.url, in: scope)
            if !http.query.isEmpty {
                guard var c = URLComponents(string: url) else { throw fail(path, .invalidStep, "'\(url)' is not a URL") }
                var items = c.queryItems ?? []
                for (k, v) in http.query.sorted(by: { $0.key < $1.key }) { items.append(URLQueryItem(name: k, value: try Template.string(v, in: scope))) }
                c.queryItems = items
                // URLComponents leaves '+' alone, which a server reads as a space.
                c.percentEncodedQuery = c.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
                url = c.string ?? url
            }
            for (k, v) in http.headers.sorted(by: { $0.key < $1.key }) { headers.append(Header(k, try Template.string(v, in: scope))) }
            switch http.body {
            case nil:
                break
            case let .json(template)?:
                body = Array(try Template.evaluate(template, in: scope).jsonText.utf8)
                defaultHeader(&headers, "Content-Type", "application/json")
            case let .text(template)?:
                body = Array(try Template.string(template, in: scope).utf8)
                defaultHeader(&headers, "Content-Type", "text/plain; charset=utf-8")
            case let .form(fields)?:
                var c = URLComponents()
                c.queryItems = try fields.sorted(by: { $0.key < $1.key }).map { URLQueryItem(name: $0.key, value: try Template.string($0.value, in: scope)) }
                body = Array((c.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B").utf8)
                defaultHeader(&headers, "Content-Type", "application/x-www-form-urlencoded")
            }
        } catch let e as ExpressionError {
            throw fail(path, .expressionError, e.message)
        }
        if let problem = HTTPURLRule.problem(url) { throw fail(path, .invalidStep, "url: \(problem)") }
        let result: HTTPFetch.Result
        do {
            result = try await calls.fetch(HTTPFetch.Params(jobId: spec.jobId, step: path, url: url, headers: headers,
                                                            body: body.map { Data($0).base64EncodedString() }),
                                           timeLeft(step, deadline))
        } catch let e as RPCError {
            if e.code == RPCError.notAllowed, let host = URLComponents(string: url)?.host {
                throw StepFailure(.permissionDenied, step: path, message: e.message, details: ["dimension": "networkEgress", "value": host])
            }
            throw fail(path, .httpFailed, e.message)
        }
        let bytes = Data(base64Encoded: result.body) ?? Data()
        guard http.expectStatus.contains(where: { $0.matches(result.status) }) else {
            let excerpt = String(decoding: bytes.prefix(500), as: UTF8.self)
            throw StepFailure(.httpStatus, step: path,
                              message: "\(http.method.rawValue) \(url) answered \(result.status), not \(http.expectStatus.map(\.description).joined(separator: " or "))"
                                  + (excerpt.isEmpty ? "" : ": " + excerpt),
                              details: ["status": "\(result.status)"])
        }
        var outHeaders: [String: JSONValue] = [:]
        for h in result.headers {
            let name = h.name.lowercased()
            if case let .string(prior)? = outHeaders[name] { outHeaders[name] = .string(prior + ", " + h.value) } else { outHeaders[name] = .string(h.value) }
        }
        let type = outHeaders["content-type"]?.stringValue?.lowercased() ?? ""
        let text = String(decoding: bytes, as: UTF8.self)
        let parsed: JSONValue
        switch http.responseType {
        case .text:
            parsed = .string(text)
        case .json:
            guard let v = JSONValue.parse(text) else { throw fail(path, .httpFailed, "the response is not JSON (responseType: json)") }
            parsed = v
        case .auto:
            let isJSON = type.hasPrefix("application/json") || (type.hasPrefix("application/") && type.contains("+json"))
            parsed = isJSON ? (JSONValue.parse(text) ?? .string(text)) : .string(text)
        }
        return ["status": .number(Double(result.status)), "headers": .object(outHeaders), "body": parsed]
    }

    private func defaultHeader(_ headers: inout [Header], _ name: String, _ value: String) {
        if !headers.contains(where: { $0.name.lowercased() == name.lowercased() }) { headers.append(Header(name, value)) }
    }

    /// The step's own timeout (or the default), within the run's deadline.
    func timeLeft(_ step: Step, _ deadline: ContinuousClock.Instant?) -> Duration {
        var left = Duration.milliseconds(step.timeoutMs ?? spec.defaultStepTimeoutMs)
        if let deadline { left = min(left, max(.milliseconds(1), deadline - ContinuousClock.now)) }
        return left
    }
}
