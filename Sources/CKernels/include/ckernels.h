#ifndef DSCONV_CKERNELS_H
#define DSCONV_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Hot loops kept in C so that they vectorize at baseline x86-64 without relying on Swift's
 * optimizer. Each function is pure over the buffers it is given. */

/* Count of non-finite values (NaN or Inf) in n elements; *first receives the index of the first
 * one, or n when none. Float8 E4M3 has no Inf: only its NaN (S.1111.111) counts. */
size_t dsk_count_nonfinite_bf16(const uint16_t *x, size_t n, size_t *first);
size_t dsk_count_nonfinite_f16(const uint16_t *x, size_t n, size_t *first);
size_t dsk_count_nonfinite_f32(const uint32_t *x, size_t n, size_t *first);
size_t dsk_count_nonfinite_f64(const uint64_t *x, size_t n, size_t *first);
size_t dsk_count_nonfinite_f8e4m3(const uint8_t *x, size_t n, size_t *first);
size_t dsk_count_nonfinite_f8e5m2(const uint8_t *x, size_t n, size_t *first);
/* Calibration's per-column input statistics over rows × cols of x (row-major), added to what
 * the arrays hold: Σ|x| and Σx² in double, max |x| in float (NaN sticks). */
void dsk_channel_stats(const float *x, size_t rows, size_t cols, double *abs_sum, double *sum_squares, float *max_abs);

/* bf16 <-> f32. f32 -> bf16 rounds to nearest even; NaN stays NaN. */
void dsk_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void dsk_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void dsk_f16_to_f32(const uint16_t *src, float *dst, size_t n);

/* Fills n bf16 values by inverse-CDF table lookup: each value is table[r & 0xFFFF] for 16 random
 * bits r from a xoshiro256** stream seeded with `seed`. Deterministic for (seed, n). */
void dsk_fill_from_table_bf16(uint16_t *dst, size_t n, const uint16_t *table65536, uint64_t seed);

/* SHA-256 (FIPS 180-4), streaming. */
typedef struct {
    uint32_t h[8];
    uint64_t length;
    uint8_t block[64];
    size_t used;
} dsk_sha256_ctx;
void dsk_sha256_init(dsk_sha256_ctx *ctx);
void dsk_sha256_update(dsk_sha256_ctx *ctx, const void *data, size_t n);
void dsk_sha256_final(dsk_sha256_ctx *ctx, uint8_t out[32]);
/* Tests set this to compare the SHA-NI path with the portable one. */
void dsk_sha256_set_portable(int on);

/* Y[m, n - n0] (row stride ldy) = sum_k X[m, k] * W[n, k] for m < M, n0 <= n < n1, with W bf16
 * row-major [N, K] (row stride K) and X f32 row-major (row stride ldx). Each dot product is
 * summed in 16 independent lanes then reduced in a fixed order, so results do not depend on
 * how the caller splits n across threads. */
void dsk_matmul_xwT_bf16(const float *X, size_t M, size_t ldx, const uint16_t *W, size_t K,
                         size_t n0, size_t n1, float *Y, size_t ldy);
/* The same for f32 W. */
void dsk_matmul_xwT_f32(const float *X, size_t M, size_t ldx, const float *W, size_t K,
                        size_t n0, size_t n1, float *Y, size_t ldy);
/* One input row x (decode) against bf16 W rows n0 <= n < n1: y[n - n0] = x · W[n], one weight row
 * after another (a piece's reads are one sequential stream). `dsk_matvec_bf16` is exact (f32
 * sums of exactly converted products, order aside) and takes x twice: as it is, and through
 * `dsk_matvec_split_x` (`dsk_matvec_split_count(K)` floats: per whole 32 columns the 16 even
 * then the 16 odd; the exact int8 row kernels on AVX-512 BF16 take the same layout). `dsk_matvec_bf16dot` takes x rounded to bf16 and sums pairs
 * with AVX-512 BF16 dot products (vdpbf16ps; bf16 activations). The `_supported` calls say whether
 * this CPU runs the vector kernels; without them both compute the same products in plain f32 sums
 * (vdpbf16ps also flushes subnormal inputs to zero). */
int dsk_matvec_bf16_supported(void);
int dsk_matvec_bf16dot_supported(void);
size_t dsk_matvec_split_count(size_t K);
void dsk_matvec_split_x(const float *x, size_t K, float *xs);
void dsk_matvec_bf16(const float *xs, const float *x, size_t K, const uint16_t *W, size_t n0, size_t n1, float *y);
void dsk_matvec_bf16dot(const uint16_t *xb, size_t K, const uint16_t *W, size_t n0, size_t n1, float *y);
/* out[c] = sum_d a[d] * W[d, c] for bf16 W row-major [n, cols], rows in order. */
void dsk_rows_axpy_bf16(const float *a, size_t n, const uint16_t *W, size_t cols, float *out);

/* A spin-wait hint (x86 `pause`; nothing elsewhere), for threads waiting a few microseconds. */
static inline void dsk_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/* glibc: keep large freed blocks for reuse instead of unmapping them (no-op elsewhere). */
void dsk_keep_freed_memory(void);

/* Bandwidth probe for benchmarks: copies n bytes and returns the seconds taken (CLOCK_MONOTONIC). */
double dsk_timed_copy(void *dst, const void *src, size_t n);
/* Read bandwidth probe: reads n bytes, xors them into *sink; returns seconds. */
double dsk_timed_read(const void *src, size_t n, uint64_t *sink);

/* BF16 exponent coding (the "bf16-exp-rans" transform of Formats/packed.md): the 8-bit exponent
 * field of n bf16 values is entropy-coded with a static order-0 rANS (4 interleaved states,
 * 14-bit frequencies); sign and mantissa are stored raw, one byte per value. Returns the bytes
 * written to out (capacity dsk_bf16_exp_bound(n)), or 0 if n is 0. */
size_t dsk_bf16_exp_bound(size_t n);
size_t dsk_bf16_exp_encode(const uint16_t *in, size_t n, uint8_t *out);
/* Decodes exactly n values; returns 0, or -1 when the block is corrupt (bounds, tables, final state). */
int dsk_bf16_exp_decode(const uint8_t *in, size_t len, uint16_t *out, size_t n);

/* Byte planes ("bf16-planes"): all high bytes, then all low bytes; and back. */
void dsk_bf16_to_planes(const uint16_t *in, size_t n, uint8_t *out);
void dsk_planes_to_bf16(const uint8_t *in, size_t n, uint16_t *out);

/* Exponent planes ("bf16-exp-huff"): the 8-bit exponent field of n bf16 values (n bytes), then
 * sign << 7 | mantissa (n bytes); and back. */
void dsk_bf16_to_exp_planes(const uint16_t *in, size_t n, uint8_t *out);
void dsk_exp_planes_to_bf16(const uint8_t *in, size_t n, uint16_t *out);

/* Integer weight quantization with compressed-tensors' arithmetic (Formats/quantized.md): every
 * step is an f32 operation rounded to bf16 (round to nearest even), as torch computes on bf16
 * tensors; integers are round-half-even of the clamped bf16 quotient.
 *
 * dsk_quant_params: for each of `rows` rows of W (bf16, row stride ld) and each group of `group`
 * columns (cols % group == 0), the bf16 scale and (asymmetric) the int8 zero point.
 * Symmetric: scale = bf16(absmax / ((qmax - qmin) / 2)); asymmetric: scale = bf16(bf16(max - min) /
 * (qmax - qmin)), zp = rne(clamp(bf16(qmin - bf16(min / scale)))), NaN (0/0) giving 0. A zero
 * scale becomes bf16 eps (2^-7). `clip` (nullable, rows * groups) scales each group's range
 * (AWQ clipping); NULL means 1. */
void dsk_quant_params(const uint16_t *W, size_t rows, size_t cols, size_t ld, size_t group, int bits, int symmetric,
                      const float *clip, uint16_t *scale, int8_t *zp);
/* q = rne(clamp(bf16(bf16(w / s) + zp), qmin, qmax)) for rows x cols of bf16 W. */
void dsk_quant_apply(const uint16_t *W, size_t rows, size_t cols, size_t ld, size_t group, int bits,
                     const uint16_t *scale, const int8_t *zp, int8_t *q);
/* The same for one f32 value (GPTQ's column-by-column loop), returning q. */
int dsk_quant_one(float w, uint16_t scale, int zp, int bits);
/* Dequantized value bf16(bf16(q - zp) * s) as bf16 bits. */
uint16_t dsk_dequant_one(int q, int zp, uint16_t scale);
/* Packs rows x cols int8 values (bits 4 or 8) into int32 words along columns, offset by 2^(bits-1),
 * low bits first; each row takes ceil(cols * bits / 32) words, padding bits zero. */
void dsk_pack_int32_rows(const int8_t *q, size_t rows, size_t cols, int bits, int32_t *out);
/* The inverse: words -> rows x cols int8 values. */
void dsk_unpack_int32_rows(const int32_t *in, size_t rows, size_t cols, int bits, int8_t *q);
/* Dequantizes rows x cols from packed words (row stride words_per_row), bf16 scales [rows, groups]
 * and int8 zero points (NULL: symmetric) into bf16. */
void dsk_dequant_packed(const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                        const uint16_t *scale, const int8_t *zp, uint16_t *out);

/* One position of a teacher-forced comparison: with p = softmax(ref), q = softmax(ours) over n
 * logits, returns KL(p || q) (nats, >= 0), and writes -log q[target] and -log p[target] and both
 * argmaxes (first index on ties). Computed in double. */
double dsk_kl_position(const float *ours, const float *ref, size_t n, size_t target, double *nll_ours, double *nll_ref,
                       size_t *argmax_ours, size_t *argmax_ref);

/* AWQ's clipping loss: for X [tokens, cols] (f32) and D [rows, cols] (quantized minus original
 * weight, f32), err[r * groups + g] += sum over tokens of (sum over the group's columns of
 * x[t, c] * d[r, c])^2, groups of `group` columns. */
void dsk_group_output_error(const float *X, size_t tokens, size_t cols, const float *D, size_t rows, size_t group, double *err);

/* Reconstruction error of a packed quantized weight against its bf16 original, one pass:
 * *err2 += sum (w - dequant)^2 and *norm2 += sum w^2 over rows x cols. */
void dsk_quant_sq_error(const uint16_t *W, const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                        const uint16_t *scale, const int8_t *zp, double *err2, double *norm2);

/* Y[m, n - n0] (row stride ldy) = sum_k X[m, k] * W[n, k] for a packed quantized W (int32 words
 * [N, ceil(K*bits/32)], bf16 scales [N, K/group], int8 zero points or NULL, bits 4 or 8), with W's
 * values exactly bf16(bf16(q - zp) * scale), as the checkpoint decompresses: the weight is read
 * once in its packed form (decode is memory-bound). Sums in the same 16-lane order as
 * dsk_matmul_xwT_bf16, so results do not depend on the thread split. */
/* Decode with int8 activations (fast, not exact; llama.cpp's Q8 trick) for symmetric int4 and
 * int8 rows whose groups are multiples of 64, on AVX-512 VNNI. `dsk_q8act_supported` says whether this CPU
 * and weight qualify; `dsk_q8act_quantize` quantizes one input row of K for int4 weights with
 * groups of `group` (K/64 blocks: xq K bytes, blocks in pairs; xs one scale per block; corr one
 * entry per group: see quant.c); `dsk_matmul_q8act_packed4` multiplies M such rows (xq stride K,
 * xs stride K/64, corr stride K/group) with weight rows [n0, n1). */
int dsk_q8act_supported(int bits, size_t K, size_t group, int asymmetric);
void dsk_q8act_quantize(const float *x, size_t K, size_t group, int8_t *xq, float *xs, float *corr);
void dsk_matmul_q8act_packed4(const int8_t *xq, const float *xs, const float *corr, size_t M, size_t K, const int32_t *W,
                              size_t group, const uint16_t *scale, size_t n0, size_t n1, float *Y, size_t ldy);
/* The same for symmetric int8 weights (bits 8 in dsk_q8act_supported): the input quantized with
 * dsk_q8act_quantize8 (column order; xs and xsum one entry per block, xsum = 128 · Σ; strides
 * K and K/64). */
void dsk_q8act_quantize8(const float *x, size_t K, int8_t *xq, float *xs, int32_t *xsum);
void dsk_matmul_q8act_packed8(const int8_t *xq, const float *xs, const int32_t *xsum, size_t M, size_t K, const int32_t *W,
                              size_t group, const uint16_t *scale, size_t n0, size_t n1, float *Y, size_t ldy);
void dsk_matmul_xwT_packed(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K, int bits, size_t group,
                           const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1, float *Y, size_t ldy);
/* Columns [c0, c0 + n) of one packed row (its words, bf16 scales and int8 zero points or NULL,
 * `cols` columns in all) dequantized to f32: c0 on a word boundary (a multiple of 32 / bits). */
void dsk_dequant_row_cols_f32(const int32_t *row, size_t cols, int bits, size_t group, const uint16_t *scale, const int8_t *zp,
                              size_t c0, size_t n, float *out);
/* out[c] = Σ_d a[d] · W[d, c] over n packed rows of `cols` columns (tmp: cols floats of scratch). */
void dsk_rows_axpy_packed(const float *a, size_t n, const int32_t *W, size_t cols, int bits, size_t group, const uint16_t *scale,
                          const int8_t *zp, float *tmp, float *out);
/* Rows [0, rows) of a packed weight dequantized to f32 (for the sgemm tiles of prefill). */
void dsk_dequant_packed_f32(const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                            const uint16_t *scale, const int8_t *zp, float *out);

/* Prefill GEMMs (gemm.c): Y[m, n - n0] (stride ldy) = sum_k X[m, k] * W[n, k] for W [N, K] row-major.
 * X is packed once per product (dsk_gemm_pack_x into dsk_gemm_packed_x_count elements: floats
 * for the f32 kinds, uint16 for the bf16 kinds); threads then share it, each over its own rows
 * [n0, n1) of W. DSK_GEMM_F32 (AVX-512F) and DSK_GEMM_F32_AVX2 (AVX2 + FMA) are exact (f32
 * activations, f32 or bf16 weights); the bf16 kinds round X to bf16 and accumulate in f32
 * (AVX-512 BF16 dot products, or AMX-BF16 tiles). dsk_gemm_supported(kind): this CPU runs it;
 * dsk_gemm_bf16_kind(): the fastest bf16 kind here, or DSK_GEMM_F32 where none beats f32 FMAs. */
enum { DSK_GEMM_F32 = 0, DSK_GEMM_AVX512BF16 = 1, DSK_GEMM_AMX = 2, DSK_GEMM_F32_AVX2 = 3 };
int dsk_gemm_supported(int kind);
int dsk_gemm_bf16_kind(void);
/* Whether a kind is exact (X packed as floats) rather than bf16 (X packed as uint16). */
int dsk_gemm_is_f32(int kind);
size_t dsk_gemm_packed_x_count(size_t M, size_t K, int kind);
void dsk_gemm_pack_x(const float *X, size_t M, size_t ldx, size_t K, int kind, void *out);
/* The same packing for X's rows [m0, m1) only (multiples of dsk_gemm_x_row_block(kind, M); m1 at
 * most M rounded up to it): threads pack disjoint row ranges of one product's input. The layout
 * depends on the kind and, for DSK_GEMM_F32, on M (many rows take broadcast tiles). */
size_t dsk_gemm_x_row_block(int kind, size_t M);
void dsk_gemm_pack_x_rows(const float *X, size_t M, size_t ldx, size_t K, int kind, void *out, size_t m0, size_t m1);
/* A packed quantized weight as the GEMM reads it (compressed-tensors pack-quantized, Linear.swift's
 * PackedLayout): int32 words [N, ceil(K · bits / 32)], bf16 scales and int8 zero points (NULL:
 * symmetric) [N, ceil(K / group)]. */
typedef struct {
    const int32_t *words;
    int bits;
    size_t group;
    const uint16_t *scale;
    const int8_t *zp;
} dsk_packed_weight;
/* dsk_gemm_xwT for a packed W, each 6-row panel dequantized (exactly) per K block as the tiles
 * take it, so that no dequantized copy of W leaves the cache. For DSK_GEMM_AVX512BF16, and for
 * DSK_GEMM_F32 below the broadcast tiles' row count, up to 128 rows of X (few rows: prefill's
 * experts): dsk_gemm_packed_applies(kind, M). */
int dsk_gemm_packed_applies(int kind, size_t M);
void dsk_gemm_xwT_packed(const void *xp, size_t M, size_t K, dsk_packed_weight w, size_t n0, size_t n1, float *Y, size_t ldy,
                         int kind);
void dsk_gemm_xwT(const void *xp, size_t M, size_t K, const void *W, int w_is_bf16, size_t n0, size_t n1, float *Y,
                  size_t ldy, int kind);
/* The same for W's rows ldw elements apart (ldw >= K): a block of a wider matrix, such as one
 * head's keys or values in attention. */
void dsk_gemm_xwT_ld(const void *xp, size_t M, size_t K, const void *W, size_t ldw, int w_is_bf16, size_t n0, size_t n1,
                     float *Y, size_t ldy, int kind);
/* Softmax of scale · p[0, visible) in place, in f32 (AVX-512 where the CPU has it: exp by range
 * reduction and a degree-7 polynomial, within 2 ulp of expf); p[visible, count) set to zero (the
 * causal mask's tail). */
void dsk_softmax_masked(float *p, size_t visible, size_t count, float scale);
/* x rounded to the nearest bf16 (ties to even), kept as f32 / stored as bf16. */
void dsk_round_bf16_f32(const float *x, size_t n, float *out);
void dsk_round_bf16(const float *x, size_t n, uint16_t *out);
/* dst[c · ldd + r] = src[r · lds + c] for r < rows, c < cols: a block transposed, as f32 or
 * rounded to bf16 (bf16 != 0), e.g. one head's values as the attention GEMM's weight operand. */
void dsk_transpose_rows(const float *src, size_t rows, size_t cols, size_t lds, int bf16, void *dst, size_t ldd);

#endif
