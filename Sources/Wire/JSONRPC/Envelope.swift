import Foundation

/// The fields every JSON-RPC 2.0 message is classified by. Params and results are
/// decoded later, from the same bytes, once the method says which type they have.
struct EnvelopeHeader: Decodable {
    enum Kind { case request(RPCID, String), notification(String), response(RPCID), errorResponse(RPCID?, RPCError) }

    let kind: Kind

    private enum Keys: String, CodingKey { case jsonrpc, id, method, result, error }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        guard (try? c.decode(String.self, forKey: .jsonrpc)) == "2.0" else {
            throw RPCError(code: RPCError.invalidRequest, message: "jsonrpc must be \"2.0\"")
        }
        let id: RPCID? = (try? c.decodeNil(forKey: .id)) == false ? try? c.decode(RPCID.self, forKey: .id) : nil
        if c.contains(.id), (try? c.decodeNil(forKey: .id)) == false, id == nil {
            throw RPCError(code: RPCError.invalidRequest, message: "id must be a number or a string")
        }
        if c.contains(.method) {
            guard let method = try? c.decode(String.self, forKey: .method) else {
                throw RPCError(code: RPCError.invalidRequest, message: "method must be a string")
            }
            kind = id.map { .request($0, method) } ?? .notification(method)
        } else if let error = try? c.decode(RPCError.self, forKey: .error) {
            kind = .errorResponse(id, error)
        } else if c.contains(.result), let id {
            kind = .response(id)
        } else {
            throw RPCError(code: RPCError.invalidRequest, message: "neither a request, a notification nor a response")
        }
    }
}

struct ParamsOf<P: Decodable>: Decodable {
    let params: P
}

struct ResultOf<R: Decodable>: Decodable {
    let result: R
}

struct OutgoingRequest<P: Encodable>: Encodable {
    let jsonrpc = "2.0"
    let id: RPCID?
    let method: String
    let params: P
}

struct OutgoingResult<R: Encodable>: Encodable {
    let jsonrpc = "2.0"
    let id: RPCID
    let result: R
}

struct OutgoingError: Encodable {
    let jsonrpc = "2.0"
    let id: RPCID?
    let error: RPCError

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jsonrpc, forKey: .jsonrpc)
        // JSON-RPC requires "id": null when the request's id could not be read.
        if let id { try c.encode(id, forKey: .id) } else { try c.encodeNil(forKey: .id) }
        try c.encode(error, forKey: .error)
    }

    private enum CodingKeys: String, CodingKey { case jsonrpc, id, error }
}

/// An empty params or result object: `{}`.
public struct Empty: Codable, Sendable, Equatable {
    public init() {}
}
