/// A request in the wire catalogue: its name and the one `Codable` type each for
/// params and result, shared by both sides so they cannot drift apart.
public protocol RPCMethod: Sendable {
    associatedtype Params: Codable & Sendable
    associatedtype Result: Codable & Sendable
    static var name: String { get }
}

/// A notification in the catalogue: fire and forget, no id, no answer.
public protocol RPCNotificationMethod: Sendable {
    associatedtype Params: Codable & Sendable
    static var name: String { get }
}
