import Foundation

/// A `Decodable` type read from rows by its coding keys (column names).
public protocol StoreFetchable: Decodable {}

/// A record kept in one table: its `Codable` coding keys are its columns.
/// Stands in for GRDB's records where a store must also run on PostgreSQL.
public protocol StoreRecord: StoreFetchable, Encodable, Sendable {
    static var databaseTableName: String { get }
    /// Columns of the primary key; `update` finds the row by them.
    static var primaryKey: [String] { get }
}

extension StoreRecord {
    public static var primaryKey: [String] { ["id"] }
}

extension StoreFetchable {
    public static func fetchAll(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> [Self] {
        try StoreRow.fetchAll(db, sql: sql, arguments: arguments).map { try Self(from: RowDecoder(row: $0)) }
    }

    public static func fetchOne(_ db: any StoreConnection, sql: String, arguments: StoreArguments = []) throws -> Self? {
        try StoreRow.fetchOne(db, sql: sql, arguments: arguments).map { try Self(from: RowDecoder(row: $0)) }
    }
}

extension StoreRecord {
    /// The row whose single-column primary key is `key`.
    public static func fetchOne(_ db: any StoreConnection, key: String) throws -> Self? {
        try fetchOne(db, sql: "SELECT * FROM \(databaseTableName) WHERE \(primaryKey[0]) = ?", arguments: [key])
    }

    /// Every column of the record, NULLs included.
    func columns() throws -> [(String, StoreValue)] {
        let encoder = RowEncoder()
        try encode(to: encoder)
        return encoder.storage.columns
    }

    public func insert(_ db: any StoreConnection) throws {
        let columns = try columns()
        try db.execute(sql: "INSERT INTO \(Self.databaseTableName) (\(columns.map(\.0).joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))",
                       arguments: StoreArguments(values: columns.map(\.1)), cached: true)
    }

    /// Writes every column of the row with the record's primary key.
    public func update(_ db: any StoreConnection) throws {
        let columns = try columns()
        let key = columns.filter { Self.primaryKey.contains($0.0) }
        let rest = columns.filter { !Self.primaryKey.contains($0.0) }
        try db.execute(sql: "UPDATE \(Self.databaseTableName) SET \(rest.map { "\($0.0) = ?" }.joined(separator: ", ")) WHERE "
                           + key.map { "\($0.0) = ?" }.joined(separator: " AND "),
                       arguments: StoreArguments(values: rest.map(\.1) + key.map(\.1)), cached: true)
    }
}

// MARK: Coding rows

/// Decodes a record from one row: a keyed container over its columns, and a
/// single value for each column (how a `RawRepresentable` enum or a `Date`
/// asks for its value). Written here because no library of the project's maps
/// rows of both engines onto `Decodable`.
struct RowDecoder: Decoder {
    let row: StoreRow
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Keyed<Key>(row: row))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a row is not an array"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        ColumnDecoder(value: row.values.first ?? .null, codingPath: codingPath)
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let row: StoreRow
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { row.columns.compactMap(Key.init(stringValue:)) }

        func contains(_ key: Key) -> Bool { row.has(key.stringValue) }
        func decodeNil(forKey key: Key) throws -> Bool { row.value(key.stringValue) == .null }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try ColumnDecoder(value: row.value(key.stringValue), codingPath: [key]).decode(type)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            throw DecodingError.typeMismatch(type, .init(codingPath: [key], debugDescription: "a column holds no nested container"))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: [key], debugDescription: "a column holds no array"))
        }

        func superDecoder() throws -> any Decoder { RowDecoder(row: row) }
        func superDecoder(forKey key: Key) throws -> any Decoder { RowDecoder(row: row) }
    }
}

/// One column's value, as a single-value container and as the decoder a nested type gets.
struct ColumnDecoder: Decoder, SingleValueDecodingContainer {
    let value: StoreValue
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "a column holds no keyed container"))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "a column holds no array"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool { value == .null }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == Date.self, let date = StoreDate.date(value) { return date as! T }
        if let convertible = T.self as? any StoreValueConvertible.Type {
            guard let v = convertible.fromStore(value) else {
                throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "\(value) does not read as \(type)"))
            }
            return v as! T
        }
        return try T(from: self)
    }

    func decode(_ type: Bool.Type) throws -> Bool { try scalar(type) }
    func decode(_ type: String.Type) throws -> String { try scalar(type) }
    func decode(_ type: Double.Type) throws -> Double { try scalar(type) }
    func decode(_ type: Int.Type) throws -> Int { try scalar(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try scalar(type) }
    func decode(_ type: Float.Type) throws -> Float { Float(try scalar(Double.self)) }
    func decode(_ type: Int8.Type) throws -> Int8 { try narrow(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try narrow(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try narrow(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try narrow(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try narrow(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try narrow(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try narrow(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try narrow(type) }

    private func scalar<T: StoreValueConvertible>(_ type: T.Type) throws -> T {
        guard let v = T.fromStore(value) else {
            throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "\(value) does not read as \(type)"))
        }
        return v
    }

    private func narrow<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let v = T(exactly: try scalar(Int64.self)) else {
            throw DecodingError.typeMismatch(type, .init(codingPath: codingPath, debugDescription: "\(value) is out of range of \(type)"))
        }
        return v
    }
}

/// Encodes a record as its columns, in the order its coding keys list them.
/// A nil optional is written as NULL (not left out), so `update` clears it.
final class RowEncoder: Encoder {
    final class Storage { var columns: [(String, StoreValue)] = [] }
    let storage = Storage()
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Keyed<Key>(storage: storage))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { preconditionFailure("a record encodes as a keyed container") }
    func singleValueContainer() -> any SingleValueEncodingContainer { preconditionFailure("a record encodes as a keyed container") }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let storage: Storage
        var codingPath: [any CodingKey] { [] }

        func set(_ key: Key, _ value: StoreValue) { storage.columns.append((key.stringValue, value)) }

        mutating func encodeNil(forKey key: Key) throws { set(key, .null) }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { set(key, try ColumnEncoder.value(of: value)) }

        mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
            if let value { set(key, try ColumnEncoder.value(of: value)) } else { set(key, .null) }
        }
        mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { set(key, value.storeValue) }
        mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { set(key, value.storeValue) }
        mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { set(key, value.storeValue) }
        mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { set(key, value.storeValue) }
        mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { set(key, value.storeValue) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            preconditionFailure("a column holds no nested container")
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { preconditionFailure("a column holds no array") }
        mutating func superEncoder() -> any Encoder { preconditionFailure("records have no superclass") }
        mutating func superEncoder(forKey key: Key) -> any Encoder { preconditionFailure("records have no superclass") }
    }
}

/// The single value a column's `Encodable` (an enum's raw value, a date) encodes.
final class ColumnEncoder: Encoder, SingleValueEncodingContainer {
    var value: StoreValue = .null
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func value<T: Encodable>(of v: T) throws -> StoreValue {
        if let date = v as? Date { return .text(StoreDate.text(date)) }
        if let convertible = v as? any StoreValueConvertible { return convertible.storeValue }
        let encoder = ColumnEncoder()
        try v.encode(to: encoder)
        return encoder.value
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> { preconditionFailure("a column holds one value") }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { preconditionFailure("a column holds one value") }
    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    func encodeNil() throws { value = .null }
    func encode(_ v: Bool) throws { value = v.storeValue }
    func encode(_ v: String) throws { value = v.storeValue }
    func encode(_ v: Double) throws { value = v.storeValue }
    func encode(_ v: Float) throws { value = Double(v).storeValue }
    func encode(_ v: Int) throws { value = v.storeValue }
    func encode(_ v: Int8) throws { value = .integer(Int64(v)) }
    func encode(_ v: Int16) throws { value = .integer(Int64(v)) }
    func encode(_ v: Int32) throws { value = .integer(Int64(v)) }
    func encode(_ v: Int64) throws { value = .integer(v) }
    func encode(_ v: UInt) throws { value = .integer(Int64(v)) }
    func encode(_ v: UInt8) throws { value = .integer(Int64(v)) }
    func encode(_ v: UInt16) throws { value = .integer(Int64(v)) }
    func encode(_ v: UInt32) throws { value = .integer(Int64(v)) }
    func encode(_ v: UInt64) throws { value = .integer(Int64(bitPattern: v)) }
    func encode<T: Encodable>(_ v: T) throws { value = try Self.value(of: v) }
}
