import Foundation

/// One row of a result, by column name. Names match case-insensitively:
/// PostgreSQL folds an unquoted alias (`AS meanMs`) to lower case, SQLite keeps it.
public struct StoreRow: Sendable {
    public let columns: [String]
    public let values: [StoreValue]
    private let index: [String: Int]

    public init(columns: [String], values: [StoreValue]) {
        self.columns = columns
        self.values = values
        var index: [String: Int] = [:]
        for (i, name) in columns.enumerated() where index[name.lowercased()] == nil { index[name.lowercased()] = i }
        self.index = index
    }

    /// The value of a column; `.null` when the row has no such column.
    public func value(_ name: String) -> StoreValue {
        index[name.lowercased()].map { values[$0] } ?? .null
    }

    public func has(_ name: String) -> Bool { index[name.lowercased()] != nil }

    /// As GRDB's rows: a value that does not convert is a bug in the query
    /// that asked for it (a column the code and the schema disagree on), not a
    /// condition to handle, so it stops with the column named.
    public subscript<T: StoreValueConvertible>(_ name: String) -> T {
        let v = value(name)
        guard let converted = T.fromStore(v) else {
            preconditionFailure("store column \(name): \(v) does not read as \(T.self)")
        }
        return converted
    }

    public subscript(_ i: Int) -> StoreValue { values[i] }
}

/// The values a statement binds to its `?` placeholders, in order.
public struct StoreArguments: Sendable, ExpressibleByArrayLiteral {
    public var values: [StoreValue]

    public init(arrayLiteral elements: (any StoreValueConvertible)?...) {
        values = elements.map { $0?.storeValue ?? .null }
    }

    public init(_ elements: [(any StoreValueConvertible)?]) {
        values = elements.map { $0?.storeValue ?? .null }
    }

    public init(_ elements: [any StoreValueConvertible]) {
        values = elements.map(\.storeValue)
    }

    public init(values: [StoreValue]) { self.values = values }

    public static func += (lhs: inout StoreArguments, rhs: StoreArguments) { lhs.values += rhs.values }
}
