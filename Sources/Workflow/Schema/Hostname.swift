import Foundation

/// The `hostname` format: RFC 1123 labels, and for labels that start with `xn--`
/// (A-labels) the IDNA2008 rules on what they decode to (RFC 5890 to 5893).
///
/// The IDNA tables are derived from Unicode properties; the standard library has
/// most of them (general category, NFKC case folding, combining class) but not
/// scripts or joining types, so those come from the blocks each script sits in.
/// The joining rule for ZERO WIDTH NON-JOINER is the only one this loosens: it takes
/// any letter of a cursive script as one that joins.
enum Hostname {
    static func accepts(_ b: ArraySlice<UInt8>) -> Bool {
        guard (1...253).contains(b.count) else { return false }
        return b.split(separator: 0x2E, omittingEmptySubsequences: false).allSatisfy(label)
    }

    static func label(_ b: ArraySlice<UInt8>) -> Bool {
        guard (1...63).contains(b.count), b.first != 0x2D, b.last != 0x2D,
              b.allSatisfy({ FormatCheck.isAlpha($0) || FormatCheck.isDigit($0) || $0 == 0x2D }) else { return false }
        guard b.count > 4, b.prefix(4).map({ $0 | 0x20 }).elementsEqual(Array("xn--".utf8)) else { return true }
        guard let decoded = Punycode.decode(b.dropFirst(4)) else { return false }
        return uLabel(decoded)
    }

    /// RFC 5891 section 5.4 and RFC 5892: what an A-label decodes to must itself be a valid label.
    static func uLabel(_ s: [Unicode.Scalar]) -> Bool {
        guard let first = s.first, first != "-", s.last != "-" else { return false }
        if s.count >= 4, s[2] == "-", s[3] == "-" { return false }
        if [.spacingMark, .nonspacingMark, .enclosingMark].contains(first.properties.generalCategory) { return false }
        let text = String(String.UnicodeScalarView(s))
        guard text.precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual(s) else { return false }
        let arabicIndic = s.contains { (0x660...0x669).contains($0.value) }
        let extendedArabicIndic = s.contains { (0x6F0...0x6F9).contains($0.value) }
        if arabicIndic && extendedArabicIndic { return false }
        for (i, c) in s.enumerated() {
            let before = i > 0 ? s[i - 1] : nil, after = i + 1 < s.count ? s[i + 1] : nil
            switch c.value {
            case 0xDF, 0x3C2, 0x6FD, 0x6FE, 0xF0B, 0x3007, 0x2D: continue
            case 0x640, 0x7FA, 0x302E, 0x302F, 0x3031...0x3035, 0x303B: return false
            case 0x660...0x669, 0x6F0...0x6F9: continue // checked above, for the whole label
            case 0xB7: if before != "l" || after != "l" { return false }
            case 0x375: if !(after.map(isGreek) ?? false) { return false }
            case 0x5F3, 0x5F4: if !(before.map(isHebrew) ?? false) { return false }
            case 0x30FB: if !s.contains(where: { $0.value != 0x30FB && isKana(orHan: $0) }) { return false }
            case 0x200D: if before?.properties.canonicalCombiningClass != .virama { return false }
            case 0x200C: if before?.properties.canonicalCombiningClass != .virama && !joins(s, around: i) { return false }
            default: if !isPValid(c) { return false }
            }
        }
        return true
    }

    /// RFC 5892's derivation, short of its exceptions: letters, marks and digits
    /// that NFKC case folding leaves alone and that are not set aside.
    static func isPValid(_ c: Unicode.Scalar) -> Bool {
        let p = c.properties
        if p.changesWhenNFKCCaseFolded || p.isDefaultIgnorableCodePoint { return false }
        switch c.value {
        case 0x1100...0x11FF, 0xA960...0xA97F, 0xD7B0...0xD7FF: return false // old Hangul jamo
        case 0x20D0...0x20FF, 0x1D100...0x1D1FF, 0x1D200...0x1D24F: return false // symbol and musical marks
        default: break
        }
        switch p.generalCategory {
        case .lowercaseLetter, .otherLetter, .modifierLetter, .nonspacingMark, .spacingMark, .decimalNumber: return true
        default: return false
        }
    }

    static func isGreek(_ c: Unicode.Scalar) -> Bool {
        (0x370...0x3FF).contains(c.value) || (0x1F00...0x1FFF).contains(c.value)
    }

    static func isHebrew(_ c: Unicode.Scalar) -> Bool {
        (0x591...0x5F4).contains(c.value) || (0xFB1D...0xFB4F).contains(c.value)
    }

    static func isKana(orHan c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x3041...0x309F, 0x30A1...0x30FA, 0x30FD...0x30FF, 0x31F0...0x31FF, 0xFF66...0xFF9D, 0x1B000...0x1B16F: true
        default: c.properties.isIdeographic
        }
    }

    /// RFC 5892 A.1's second case: a joining letter before (left or dual joining)
    /// and after (right or dual), with only transparent marks between.
    static func joins(_ s: [Unicode.Scalar], around i: Int) -> Bool {
        func transparent(_ c: Unicode.Scalar) -> Bool {
            [.nonspacingMark, .enclosingMark, .format].contains(c.properties.generalCategory) && c.value != 0x200C
        }
        let before = s[..<i].reversed().first { !transparent($0) }
        let after = s[(i + 1)...].first { !transparent($0) }
        return before.map(isCursiveLetter) == true && after.map(isCursiveLetter) == true
    }

    static func isCursiveLetter(_ c: Unicode.Scalar) -> Bool {
        guard c.properties.generalCategory == .otherLetter else { return false }
        switch c.value {
        case 0x620...0x6FF, 0x750...0x77F, 0x8A0...0x8FF: return true // Arabic
        case 0x710...0x74F, 0x860...0x86F: return true // Syriac
        case 0x7C0...0x7FF, 0x840...0x85F: return true // NKo, Mandaic
        case 0x1800...0x18AF, 0xA840...0xA87F: return true // Mongolian, Phags-pa
        case 0x10AC0...0x10AFF, 0x10B80...0x10BAF, 0x10F30...0x10F6F: return true // Manichaean, Psalter Pahlavi, Sogdian
        default: return false
        }
    }
}

/// RFC 3492 decoding, for the part of an A-label after `xn--`.
enum Punycode {
    static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700

    static func decode(_ input: ArraySlice<UInt8>) -> [Unicode.Scalar]? {
        var output: [Unicode.Scalar] = []
        var rest = input
        if let dash = input.lastIndex(of: 0x2D) {
            output = input[..<dash].map { Unicode.Scalar($0) }
            rest = input[(dash + 1)...]
        }
        var n = 0x80, i = 0, bias = 72
        var it = rest.makeIterator()
        while let firstDigit = it.next() {
            let oldI = i
            var w = 1, k = base, next: UInt8? = firstDigit
            while true {
                guard let c = next, let digit = value(of: c) else { return nil }
                let (sum, o1) = i.addingReportingOverflow(digit * w)
                guard !o1 else { return nil }
                i = sum
                let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                if digit < t { break }
                let (product, o2) = w.multipliedReportingOverflow(by: base - t)
                guard !o2 else { return nil }
                w = product
                k += base
                next = it.next()
            }
            let count = output.count + 1
            bias = adapt(i - oldI, count: count, first: oldI == 0)
            let (code, o3) = n.addingReportingOverflow(i / count)
            guard !o3 else { return nil }
            n = code
            i %= count
            guard n >= 0x80, let scalar = Unicode.Scalar(UInt32(clamping: n)) else { return nil }
            output.insert(scalar, at: i)
            i += 1
        }
        return output
    }

    static func value(of c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: Int(c) - 0x30 + 26
        case 0x41...0x5A: Int(c) - 0x41
        case 0x61...0x7A: Int(c) - 0x61
        default: nil
        }
    }

    static func adapt(_ delta: Int, count: Int, first: Bool) -> Int {
        var d = first ? delta / damp : delta / 2
        d += d / count
        var k = 0
        while d > ((base - tMin) * tMax) / 2 {
            d /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * d / (d + skew)
    }
}
