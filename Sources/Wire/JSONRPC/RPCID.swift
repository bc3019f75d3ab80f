/// A JSON-RPC request id: a number or a string, echoed back verbatim.
public enum RPCID: Hashable, Sendable, Codable, CustomStringConvertible {
    case number(Int64)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int64.self) { self = .number(n); return }
        self = .string(try c.decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .number(n): try c.encode(n)
        case let .string(s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case let .number(n): String(n)
        case let .string(s): "\"\(s)\""
        }
    }
}
