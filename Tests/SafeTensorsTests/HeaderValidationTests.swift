import Foundation
import JSON
import TestSupport
import Testing

@testable import SafeTensors

/// Builds a safetensors file from a header JSON text and a data length, to test each guard.
func makeFile(header: String, dataBytes: Int, lengthOverride: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    let n = lengthOverride ?? UInt64(h.count)
    var out = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
    out += h
    out += [UInt8](repeating: 0, count: dataBytes)
    return out
}

func parse(_ bytes: [UInt8]) throws(SafeTensorsError) -> SafeTensorsHeader {
    let r = bytes.withUnsafeBytes { b in Result { () throws(SafeTensorsError) in try SafeTensorsHeader.parse(b, path: "x.safetensors") } }
    return try r.get()
}

func expectError(_ bytes: [UInt8], _ check: (SafeTensorsError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try parse(bytes)
        Issue.record("expected an error", sourceLocation: sourceLocation)
    } catch {
        #expect(check(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains("x.safetensors"), "error must name the file: \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct HeaderValidationTests {
    @Test func validFileParses() throws {
        let bytes = makeFile(header: #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, dataBytes: 12)
        let h = try parse(bytes)
        #expect(h.tensors.map(\.name) == ["a", "b"])
        #expect(h.metadata["format"] == "pt")
        #expect(h.tensors[1].shape == [2])
        #expect(h.dataStart == bytes.count - 12)
    }

    @Test func emptyHeaderAndScalars() throws {
        #expect(try parse(makeFile(header: "{}", dataBytes: 0)).tensors.isEmpty)
        let h = try parse(makeFile(header: #"{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]}}"#, dataBytes: 8))
        #expect(h.tensors.count == 2)
    }

    @Test func tooSmall() {
        expectError([1, 2, 3]) { if case .headerTooSmall = $0 { return true }; return false }
    }

    @Test func headerLengthCapped() {
        expectError(makeFile(header: "{}", dataBytes: 0, lengthOverride: 200_000_000)) { if case .headerTooLarge = $0 { return true }; return false }
    }

    @Test func headerLengthBeyondFile() {
        expectError(makeFile(header: "{}", dataBytes: 0, lengthOverride: 1000)) { if case .headerLengthBeyondFile = $0 { return true }; return false }
    }

    @Test func notJSON() {
        expectError(makeFile(header: "{not json", dataBytes: 0)) { if case .headerNotJSON = $0 { return true }; return false }
        expectError(makeFile(header: "[1,2]", dataBytes: 0)) { if case .headerNotObject = $0 { return true }; return false }
        expectError(makeFile(header: "{\"a\":1} x", dataBytes: 0)) { if case .headerNotJSON = $0 { return true }; return false }
    }

    @Test func invalidUTF8() {
        var bytes = makeFile(header: #"{"ab":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4)
        bytes[10] = 0xFF
        expectError(bytes) { if case .headerNotJSON = $0 { return true }; return false }
    }

    /// The spec's unsigned types (quantized exports use them), with their sizes checked against data_offsets.
    @Test func unsignedDTypes() throws {
        let h = try parse(makeFile(header: #"{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"U32","shape":[2],"data_offsets":[4,12]},"c":{"dtype":"U64","shape":[1],"data_offsets":[12,20]}}"#, dataBytes: 20))
        #expect(h.tensors.map(\.dtype) == [.u16, .u32, .u64])
        expectError(makeFile(header: #"{"a":{"dtype":"U32","shape":[2],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .byteLengthMismatch = $0 { return true }; return false
        }
    }

    @Test func unknownDType() {
        expectError(makeFile(header: #"{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .unknownDType(_, "a", "F12") = $0 { return true }; return false
        }
    }

    @Test func shapeOverflow() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .shapeOverflow(_, "a", _) = $0 { return true }; return false
        }
    }

    @Test func negativeOrFractionalShape() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .invalidTensorEntry = $0 { return true }; return false
        }
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .invalidTensorEntry = $0 { return true }; return false
        }
    }

    @Test func byteLengthMismatch() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, dataBytes: 4)) {
            if case .byteLengthMismatch(_, "a", 8, 4) = $0 { return true }; return false
        }
    }

    @Test func gapInOffsets() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, dataBytes: 12)) {
            if case .offsetGap(_, "b", 4, 8) = $0 { return true }; return false
        }
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, dataBytes: 8)) {
            if case .offsetGap = $0 { return true }; return false
        }
    }

    @Test func overlappingOffsets() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, dataBytes: 8)) {
            if case .offsetOverlap = $0 { return true }; return false
        }
    }

    @Test func truncatedAndTrailing() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 5)) {
            if case .dataSizeMismatch(_, 8, 5) = $0 { return true }; return false
        }
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 9)) {
            if case .dataSizeMismatch(_, 8, 9) = $0 { return true }; return false
        }
    }

    @Test func duplicateTensorName() {
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, dataBytes: 8)) {
            if case .headerNotJSON(_, let r) = $0 { return r.contains("duplicate") }; return false
        }
    }

    @Test func badMetadataAndExtraFields() {
        expectError(makeFile(header: #"{"__metadata__":{"k":1}}"#, dataBytes: 0)) { if case .invalidTensorEntry = $0 { return true }; return false }
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#, dataBytes: 4)) { if case .invalidTensorEntry = $0 { return true }; return false }
        expectError(makeFile(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, dataBytes: 4)) { if case .invalidTensorEntry = $0 { return true }; return false }
    }
}
