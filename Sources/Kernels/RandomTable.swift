import CKernels

/// Fast deterministic sampling from a 65536-entry value table (xoshiro256**, 4 samples per draw).
public enum RandomTable {
    public static func fill(_ dst: UnsafeMutablePointer<UInt16>, count: Int, table: UnsafePointer<UInt16>, seed: UInt64) {
        dsk_fill_from_table_bf16(dst, count, table, seed)
    }
}
