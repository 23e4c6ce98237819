import CHDF5
import Failures

/// Errors of the HDF5 layer, naming the file and the object.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}

/// A small, typed view of libhdf5: groups, 1-D numeric datasets and scalar attributes — what the
/// calibration statistics file needs (Formats/calibration-h5.md).
public final class HDF5File {
    public let path: String
    let id: hid_t

    /// Creates (truncating) a file.
    public init(creating path: String) throws {
        self.path = path
        H5Eset_auto2(H5E_DEFAULT_shim(), nil, nil)
        id = H5Fcreate(path, dsconv_h5f_acc_trunc(), dsconv_h5p_default(), dsconv_h5p_default())
        guard id >= 0 else { throw HDF5Error(file: path, message: "cannot create the HDF5 file") }
    }

    /// Creates a file held in memory (libhdf5's core driver, no backing store): nothing touches
    /// the disk until `image()` hands its bytes to a writer that reports I/O errors. (libhdf5's
    /// own error paths crash when a write to a full disk fails.)
    public init(creatingInMemory name: String) throws {
        path = name
        H5Eset_auto2(H5E_DEFAULT_shim(), nil, nil)
        let fapl = H5Pcreate(dsconv_h5p_file_access())
        guard fapl >= 0 else { throw HDF5Error(file: name, message: "cannot create a file access property list") }
        defer { H5Pclose(fapl) }
        guard H5Pset_fapl_core(fapl, 64 << 20, false) >= 0 else { throw HDF5Error(file: name, message: "cannot select the in-memory driver") }
        id = H5Fcreate(name, dsconv_h5f_acc_trunc(), dsconv_h5p_default(), fapl)
        guard id >= 0 else { throw HDF5Error(file: name, message: "cannot create the in-memory HDF5 file") }
    }

    /// The bytes of the whole file, as it would be on disk (for `creatingInMemory` files).
    public func image() throws -> [UInt8] {
        try flush()
        let size = H5Fget_file_image(id, nil, 0)
        guard size > 0 else { throw HDF5Error(file: path, message: "cannot size the file image") }
        var bytes = [UInt8](repeating: 0, count: size)
        let got = bytes.withUnsafeMutableBytes { H5Fget_file_image(id, $0.baseAddress, size) }
        guard got == size else { throw HDF5Error(file: path, message: "cannot copy the file image") }
        return bytes
    }

    /// Opens a file read-only.
    public init(reading path: String) throws {
        self.path = path
        H5Eset_auto2(H5E_DEFAULT_shim(), nil, nil)
        guard H5Fis_hdf5(path) > 0 else { throw HDF5Error(file: path, message: "not an HDF5 file (or unreadable)") }
        id = H5Fopen(path, dsconv_h5f_acc_rdonly(), dsconv_h5p_default())
        guard id >= 0 else { throw HDF5Error(file: path, message: "cannot open the HDF5 file") }
    }

    deinit { H5Fclose(id) }

    /// Flushes everything to disk.
    public func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw HDF5Error(file: path, message: "flush failed") }
    }

    public func createGroup(_ name: String) throws {
        let g = H5Gcreate2(id, name, dsconv_h5p_default(), dsconv_h5p_default(), dsconv_h5p_default())
        guard g >= 0 else { throw HDF5Error(file: path, message: "cannot create group \(name)") }
        H5Gclose(g)
    }

    public func exists(_ name: String) -> Bool { H5Lexists(id, name, dsconv_h5p_default()) > 0 }

    public func write(_ name: String, _ values: [Float]) throws { try write(name, values, type: dsconv_h5t_native_float()) }
    public func write(_ name: String, _ values: [Double]) throws { try write(name, values, type: dsconv_h5t_native_double()) }
    public func write(_ name: String, _ values: [Int64]) throws { try write(name, values, type: dsconv_h5t_native_int64()) }

    func write<T>(_ name: String, _ values: [T], type: hid_t) throws {
        var dims = [hsize_t(values.count)]
        let space = H5Screate_simple(1, &dims, nil)
        guard space >= 0 else { throw HDF5Error(file: path, message: "cannot create a dataspace for \(name)") }
        defer { H5Sclose(space) }
        let d = H5Dcreate2(id, name, type, space, dsconv_h5p_default(), dsconv_h5p_default(), dsconv_h5p_default())
        guard d >= 0 else { throw HDF5Error(file: path, message: "cannot create dataset \(name)") }
        defer { H5Dclose(d) }
        let status = values.withUnsafeBytes { H5Dwrite(d, type, dsconv_h5s_all(), dsconv_h5s_all(), dsconv_h5p_default(), $0.baseAddress) }
        guard status >= 0 else { throw HDF5Error(file: path, message: "cannot write dataset \(name)") }
    }

    public func readFloats(_ name: String) throws -> [Float] { try read(name, type: dsconv_h5t_native_float(), zero: Float(0)) }
    public func readDoubles(_ name: String) throws -> [Double] { try read(name, type: dsconv_h5t_native_double(), zero: Double(0)) }
    public func readInt64s(_ name: String) throws -> [Int64] { try read(name, type: dsconv_h5t_native_int64(), zero: Int64(0)) }

    func read<T>(_ name: String, type: hid_t, zero: T) throws -> [T] {
        guard exists(name) else { throw HDF5Error(file: path, message: "dataset \(name) is missing") }
        let d = H5Dopen2(id, name, dsconv_h5p_default())
        guard d >= 0 else { throw HDF5Error(file: path, message: "cannot open dataset \(name)") }
        defer { H5Dclose(d) }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        guard H5Sget_simple_extent_ndims(space) == 1 else { throw HDF5Error(file: path, message: "dataset \(name) is not 1-D") }
        var dims = [hsize_t(0)]
        H5Sget_simple_extent_dims(space, &dims, nil)
        guard dims[0] <= 1 << 31 else { throw HDF5Error(file: path, message: "dataset \(name) has \(dims[0]) values, too many") }
        var out = [T](repeating: zero, count: Int(dims[0]))
        let status = out.withUnsafeMutableBytes { H5Dread(d, type, dsconv_h5s_all(), dsconv_h5s_all(), dsconv_h5p_default(), $0.baseAddress) }
        guard status >= 0 else { throw HDF5Error(file: path, message: "cannot read dataset \(name) as \(T.self)") }
        return out
    }

    // MARK: Attributes on the root group

    public func setAttribute(_ name: String, _ value: String) throws {
        let type = H5Tcopy(dsconv_h5t_c_s1())
        defer { H5Tclose(type) }
        H5Tset_size(type, max(1, value.utf8.count))
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate2(id, name, type, space, dsconv_h5p_default(), dsconv_h5p_default())
        guard a >= 0 else { throw HDF5Error(file: path, message: "cannot create attribute \(name)") }
        defer { H5Aclose(a) }
        var bytes = Array(value.utf8)
        if bytes.isEmpty { bytes = [0] }
        guard H5Awrite(a, type, bytes) >= 0 else { throw HDF5Error(file: path, message: "cannot write attribute \(name)") }
    }

    public func setAttribute(_ name: String, _ value: Int64) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate2(id, name, dsconv_h5t_native_int64(), space, dsconv_h5p_default(), dsconv_h5p_default())
        guard a >= 0 else { throw HDF5Error(file: path, message: "cannot create attribute \(name)") }
        defer { H5Aclose(a) }
        var v = value
        guard H5Awrite(a, dsconv_h5t_native_int64(), &v) >= 0 else { throw HDF5Error(file: path, message: "cannot write attribute \(name)") }
    }

    public func stringAttribute(_ name: String) throws -> String {
        guard H5Aexists(id, name) > 0 else { throw HDF5Error(file: path, message: "attribute \(name) is missing") }
        let a = H5Aopen(id, name, dsconv_h5p_default())
        guard a >= 0 else { throw HDF5Error(file: path, message: "cannot open attribute \(name)") }
        defer { H5Aclose(a) }
        let type = H5Aget_type(a)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING, H5Tis_variable_str(type) == 0 else {
            throw HDF5Error(file: path, message: "attribute \(name) is not a fixed-length string")
        }
        let size = H5Tget_size(type)
        guard size <= 1 << 20 else { throw HDF5Error(file: path, message: "attribute \(name) is too long") }
        var bytes = [UInt8](repeating: 0, count: size)
        guard H5Aread(a, type, &bytes) >= 0 else { throw HDF5Error(file: path, message: "cannot read attribute \(name)") }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    public func intAttribute(_ name: String) throws -> Int64 {
        guard H5Aexists(id, name) > 0 else { throw HDF5Error(file: path, message: "attribute \(name) is missing") }
        let a = H5Aopen(id, name, dsconv_h5p_default())
        guard a >= 0 else { throw HDF5Error(file: path, message: "cannot open attribute \(name)") }
        defer { H5Aclose(a) }
        var v: Int64 = 0
        guard H5Aread(a, dsconv_h5t_native_int64(), &v) >= 0 else { throw HDF5Error(file: path, message: "attribute \(name) is not an integer") }
        return v
    }
}

extension HDF5Error: DeclaresFailureKind {
    /// A statistics file dsconv cannot read or write as asked: bad input.
    public var failureKind: FailureKind { .input }
}
