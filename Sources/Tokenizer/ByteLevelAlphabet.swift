/// GPT-2's reversible byte ↔ printable-character map used by byte-level BPE: printable Latin-1
/// bytes map to themselves, the other 68 bytes to U+0100 upward.
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        let set = Set(printable)
        var next = 256
        for b in 0..<256 where !set.contains(b) {
            printable.append(b)
            table[b] = Unicode.Scalar(UInt32(next))!
            next += 1
        }
        for b in set { table[b] = Unicode.Scalar(UInt32(b))! }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var m: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { m[s.value] = UInt8(b) }
        return m
    }()

    /// The byte-level spelling (as scalars) of the UTF-8 bytes of some scalars.
    static func encode(_ piece: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(piece.count)
        for v in piece {
            let u = Unicode.Scalar(v) ?? "\u{FFFD}"
            for b in UTF8.encode(u)! { out.append(byteToScalar[Int(b)].value) }
        }
        return out
    }
}
