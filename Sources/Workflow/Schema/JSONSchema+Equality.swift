extension JSONSchema {
    /// Equality as JSON Schema means it for `enum`, `const` and `uniqueItems`. Swift
    /// compares strings by canonical equivalence, so "ä" and "a" followed by a
    /// combining diaeresis are equal to `==`; JSON Schema compares code points, and
    /// the two are different strings there. Numbers compare by value (1 is 1.0).
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return false }
            for (key, value) in x {
                // The dictionary finds keys by canonical equivalence too: the key found must be this very key.
                guard let i = y.index(forKey: key), y[i].key.unicodeScalars.elementsEqual(key.unicodeScalars),
                      same(value, y[i].value) else { return false }
            }
            return true
        default: return a == b
        }
    }

    /// The first two equal items, by `same`. Values `==` holds apart are never
    /// `same`, so only items in one hash bucket need comparing pairwise.
    static func firstDuplicate(in items: [JSONValue]) -> (Int, Int)? {
        var buckets: [JSONValue: [Int]] = [:]
        for (i, item) in items.enumerated() {
            if let j = buckets[item]?.first(where: { same(items[$0], item) }) { return (j, i) }
            buckets[item, default: []].append(i)
        }
        return nil
    }
}
