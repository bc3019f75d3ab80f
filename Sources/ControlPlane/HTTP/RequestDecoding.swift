import Foundation
import Hummingbird
import Workflow

extension Request {
    /// The body as JSON, within `limit` bytes: 413 over it, 400 (naming the
    /// problem) for anything that is not a JSON object.
    mutating func jsonObject(limit: Int) async throws -> [String: JSONValue] {
        let buffer = try await collectBody(upTo: limit)
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("the request needs a JSON body", code: .invalidJSON) }
        let data = Data(buffer.readableBytesView)
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            // JSONSerialization's error names the offending character; the decoder's does not.
            var why = Self.reason(error)
            do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
                why = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? why
            }
            throw APIError.badRequest("the body is not valid JSON: \(why)", code: .invalidJSON)
        }
        guard case let .object(o) = value else { throw APIError.badRequest("the body must be a JSON object", code: .invalidJSON) }
        return o
    }

    static func reason(_ error: any Error) -> String {
        if case let DecodingError.dataCorrupted(ctx) = error {
            return (ctx.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? ctx.debugDescription
        }
        return "\(error)"
    }

    func query(_ name: String) -> String? { uri.queryParameters[Substring(name)].map(String.init) }

    func intQuery(_ name: String, default d: Int, range: ClosedRange<Int>) throws -> Int {
        guard let s = query(name) else { return d }
        guard let n = Int(s), range.contains(n) else {
            throw APIError.badRequest("\(name) must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return n
    }
}
