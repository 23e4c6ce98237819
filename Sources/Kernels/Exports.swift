// The leaf primitives (parallel loops, locks, SHA-256, the NaN/Inf scan) live in `Primitives`,
// which storage modules import without the numerical kernels and OpenBLAS; Kernels' users see
// them as before.
@_exported import Primitives
