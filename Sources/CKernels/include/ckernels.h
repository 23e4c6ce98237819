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

#endif

/* Y[m, n - n0] (row stride ldy) = sum_k X[m, k] * W[n, k] for m < M, n0 <= n < n1, with W bf16
 * row-major [N, K] (row stride K) and X f32 row-major (row stride ldx). Each dot product is
 * summed in 16 independent lanes then reduced in a fixed order, so results do not depend on
 * how the caller splits n across threads. */
void dsk_matmul_xwT_bf16(const float *X, size_t M, size_t ldx, const uint16_t *W, size_t K,
                         size_t n0, size_t n1, float *Y, size_t ldy);
/* The same for f32 W. */
void dsk_matmul_xwT_f32(const float *X, size_t M, size_t ldx, const float *W, size_t K,
                        size_t n0, size_t n1, float *Y, size_t ldy);

/* glibc: keep large freed blocks for reuse instead of unmapping them (no-op elsewhere). */
void dsk_keep_freed_memory(void);

/* Bandwidth probe for benchmarks: copies n bytes and returns the seconds taken (CLOCK_MONOTONIC). */
double dsk_timed_copy(void *dst, const void *src, size_t n);

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
