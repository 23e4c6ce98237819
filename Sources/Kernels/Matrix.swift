/// A row-major f32 matrix [rows, cols], the activation type of the forward pass.
public struct Matrix: Sendable {
    public let rows: Int
    public let cols: Int
    public var data: [Float]

    public init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        data = [Float](repeating: 0, count: rows * cols)
    }

    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(data.count == rows * cols)
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    public subscript(r: Int, c: Int) -> Float {
        get { data[r * cols + c] }
        set { data[r * cols + c] = newValue }
    }

    /// Columns [from, from + count) of every row, as a new matrix.
    public func columns(_ from: Int, _ count: Int) -> Matrix {
        var out = Matrix(rows: rows, cols: count)
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    for c in 0..<count { dst[r * count + c] = src[r * cols + from + c] }
                }
            }
        }
        return out
    }

    /// Rows picked by index, as a new matrix.
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = Matrix(rows: indices.count, cols: cols)
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for (i, r) in indices.enumerated() {
                    for c in 0..<cols { dst[i * cols + c] = src[r * cols + c] }
                }
            }
        }
        return out
    }

    /// The parts' rows one after another (all parts of one width).
    public init(concatenatingRows parts: [Matrix]) {
        let cols = parts.first?.cols ?? 0
        precondition(parts.allSatisfy { $0.cols == cols }, "concatenated matrices differ in width")
        var data: [Float] = []
        data.reserveCapacity(parts.reduce(0) { $0 + $1.data.count })
        for p in parts { data.append(contentsOf: p.data) }
        self.init(rows: data.count / max(cols, 1), cols: cols, data: data)
    }

    public static func += (lhs: inout Matrix, rhs: Matrix) {
        precondition(lhs.rows == rhs.rows && lhs.cols == rhs.cols)
        lhs.data.withUnsafeMutableBufferPointer { a in
            rhs.data.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += b[i] }
            }
        }
    }
}

/// f32 storage kept alive by the weight views over it.
final class F32Storage {
    let pointer: UnsafeMutableRawBufferPointer
    init(_ values: [Float]) {
        pointer = .allocate(byteCount: max(values.count, 1) * 4, alignment: 64)
        values.withUnsafeBytes { pointer.copyMemory(from: $0) }
    }
    deinit { pointer.deallocate() }
}

extension WeightMatrix {
    /// A weight made from f32 values (owned).
    public init(f32 values: [Float], rows: Int, cols: Int) {
        precondition(values.count == rows * cols)
        let storage = F32Storage(values)
        self.init(bytes: UnsafeRawBufferPointer(rebasing: storage.pointer[0..<(values.count * 4)]), format: .f32, rows: rows, cols: cols, owner: storage)
    }
}
