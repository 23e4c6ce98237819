import Foundation

/// The zstd seekable format (facebook/zstd contrib/seekable_format): independent frames, then a
/// skippable frame holding the seek table. Entries here carry no checksums (descriptor 0): every
/// zstd frame carries its own XXH64 content checksum instead.
public enum SeekableFormat {
    public static let seekTableMagic: UInt32 = 0x184D_2A5E
    public static let seekableMagic: UInt32 = 0x8F92_EAB1
    /// Skippable frame magic used for dsconv's metadata frame.
    public static let metadataMagic: UInt32 = 0x184D_2A50
    public static let zstdMagic: UInt32 = 0xFD2F_B528
    public static let footerSize = 9

    public struct Entry: Sendable, Equatable {
        public var compressedSize: Int
        public var decompressedSize: Int
    }

    /// The seek-table skippable frame for `entries`.
    public static func seekTable(_ entries: [Entry]) -> [UInt8] {
        var body: [UInt8] = []
        for e in entries { body += le32(UInt32(e.compressedSize)) + le32(UInt32(e.decompressedSize)) }
        body += le32(UInt32(entries.count)) + [0] + le32(seekableMagic)
        return le32(seekTableMagic) + le32(UInt32(body.count)) + body
    }

    /// A skippable frame around `payload`.
    public static func skippableFrame(magic: UInt32, _ payload: [UInt8]) -> [UInt8] {
        le32(magic) + le32(UInt32(payload.count)) + payload
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    static func read32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) }
    }

    /// Parses the seek table at the end of `file` and checks it against the frames themselves:
    /// every entry must start a frame whose header declares that content size, and the entries
    /// must tile the file up to the table (decoding then holds each frame to its exact size).
    /// `release(range)` is called for byte ranges already checked, so that a caller holding a
    /// memory map can drop their pages as it goes (touching one header per frame can map whole
    /// large folios of the page cache).
    public static func parse(_ file: UnsafeRawBufferPointer, path: String,
                             release: ((Range<Int>) -> Void)? = nil) throws(CompressionError) -> (entries: [Entry], offsets: [Int]) {
        guard file.count >= footerSize + 8 else { throw .format(file: path, message: "\(file.count) bytes: too short for a seekable zstd file (truncated?)") }
        let footer = file.count - footerSize
        guard read32(file, footer + 5) == seekableMagic else {
            throw .format(file: path, message: "no seek table at the end of the file (truncated, or not written by dsconv pack)")
        }
        guard file[footer + 4] & 0x7C == 0 else { throw .format(file: path, message: "seek table descriptor has reserved bits set") }
        let withChecksums = file[footer + 4] & 0x80 != 0
        let entrySize = withChecksums ? 12 : 8
        let count = Int(read32(file, footer))
        let (tableBytes, overflow) = count.multipliedReportingOverflow(by: entrySize)
        guard !overflow, tableBytes + footerSize + 8 <= file.count else {
            throw .format(file: path, message: "seek table claims \(count) frames, more than the file can hold")
        }
        let tableStart = file.count - footerSize - tableBytes - 8
        guard read32(file, tableStart) == seekTableMagic, Int(read32(file, tableStart + 4)) == tableBytes + footerSize else {
            throw .format(file: path, message: "seek table frame header at byte offset \(tableStart) is invalid")
        }
        var entries: [Entry] = []
        var offsets: [Int] = []
        var offset = 0
        for i in 0..<count {
            let e = tableStart + 8 + i * entrySize
            let entry = Entry(compressedSize: Int(read32(file, e)), decompressedSize: Int(read32(file, e + 4)))
            guard offset + entry.compressedSize <= tableStart, entry.compressedSize >= 8 else {
                throw .format(file: path, message: "seek table disagrees with the frames: entry \(i) at byte offset \(offset) runs past the table")
            }
            let frame = UnsafeRawBufferPointer(rebasing: file[offset..<(offset + entry.compressedSize)])
            let magic = read32(file, offset)
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                guard Int(read32(file, offset + 4)) + 8 == entry.compressedSize, entry.decompressedSize == 0 else {
                    throw .format(file: path, message: "seek table disagrees with the skippable frame at byte offset \(offset)")
                }
            } else {
                // Only the frame header is read here (a whole-file walk would fault in every page);
                // the exact compressed size is enforced when the frame is decoded.
                guard magic == zstdMagic else {
                    throw .format(file: path, message: "seek table disagrees with the frames at byte offset \(offset) (entry \(i): no zstd frame starts there)")
                }
                guard ZstdDecompressor.contentSize(frame) == entry.decompressedSize else {
                    throw .format(file: path, message: "seek table disagrees with the frame at byte offset \(offset): content size")
                }
            }
            entries.append(entry)
            offsets.append(offset)
            if i % 32 == 31 { release?((offsets[i - 31])..<offset + entry.compressedSize) }
            offset += entry.compressedSize
        }
        release?(0..<file.count)
        guard offset == tableStart else {
            throw .format(file: path, message: "seek table disagrees with the frames: they end at byte offset \(offset), the table starts at \(tableStart)")
        }
        return (entries, offsets)
    }
}
