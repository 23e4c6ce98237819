/* Integer weight quantization, bit-exact with compressed-tensors (see ckernels.h). */
#include "ckernels.h"
#include <math.h>
#include <string.h>
#include <stdlib.h>

/* One clone per instruction set, chosen at load time: the loops below are written to vectorize. */
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2,fma", "default")))

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f32 result rounded through bf16. */
static inline float rb(float f) { return bf16_to_f32(f32_to_bf16(f)); }

static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
/* min(0, group) and max(0, group) of bf16 values, 16 at a time. Operand order as the scalar
 * loop's `v < mn ? v : mn`: vminps returns its second operand when the values are equal (±0)
 * or either is NaN, so the result is bit-identical to the scalar loop. */
__attribute__((target("avx512f"))) static void group_minmax_avx512(const uint16_t *p, size_t n, float *mn, float *mx) {
    __m512 vmn = _mm512_setzero_ps(), vmx = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= n; c += 16) {
        const __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + c))), 16));
        vmn = _mm512_min_ps(v, vmn);
        vmx = _mm512_max_ps(v, vmx);
    }
    float a[16], b[16];
    _mm512_storeu_ps(a, vmn);
    _mm512_storeu_ps(b, vmx);
    float lo = 0, hi = 0;
    for (int i = 0; i < 16; i++) { if (a[i] < lo) lo = a[i]; if (b[i] > hi) hi = b[i]; }
    for (; c < n; c++) { const float v = bf16_to_f32(p[c]); if (v < lo) lo = v; if (v > hi) hi = v; }
    *mn = lo;
    *mx = hi;
}
#endif

static int minmax_level = -1; /* 1: AVX-512 */

MULTIVERSION
void dsk_quant_params(const uint16_t *W, size_t rows, size_t cols, size_t ld, size_t group, int bits, int symmetric,
                      const float *clip, uint16_t *scale, int8_t *zp) {
    const float qmin = -(float)(1 << (bits - 1)), qmax = (float)((1 << (bits - 1)) - 1);
    const float range = qmax - qmin;
    const float eps = 0.0078125f; /* torch.finfo(bfloat16).eps */
    const size_t groups = cols / group;
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = W + r * ld;
        for (size_t g = 0; g < groups; g++) {
            float mn = 0, mx = 0; /* min clamped to <= 0, max to >= 0 */
#if defined(__x86_64__) && defined(__clang__)
            if (minmax_level < 0) minmax_level = __builtin_cpu_supports("avx512f") ? 1 : 0;
            if (minmax_level == 1) {
                group_minmax_avx512(row + g * group, group, &mn, &mx);
            } else
#endif
            for (size_t c = g * group; c < (g + 1) * group; c++) {
                float v = bf16_to_f32(row[c]);
                if (v < mn) mn = v;
                if (v > mx) mx = v;
            }
            if (clip) {
                float k = clip[r * groups + g];
                mn = rb(mn * k);
                mx = rb(mx * k);
            }
            float s;
            int z = 0;
            if (symmetric) {
                float a = fmaxf(-mn, mx);
                s = rb(a / (range / 2));
            } else {
                s = rb(rb(mx - mn) / range);
                float zf = rb(qmin - rb(mn / s));
                if (isnan(zf)) z = 0; /* 0/0 in an all-zero group: torch's NaN -> int8 gives 0 */
                else z = (int)__builtin_rintf(clampf(zf, qmin, qmax));
            }
            if (s == 0) s = eps;
            scale[r * groups + g] = f32_to_bf16(s);
            if (zp) zp[r * groups + g] = (int8_t)z;
        }
    }
}

static inline int quant_value(float w, float s, float z, float qmin, float qmax) {
    float x = rb(w / s);
    if (z != 0) x = rb(x + z);
    return (int)__builtin_rintf(clampf(x, qmin, qmax));
}

MULTIVERSION
void dsk_quant_apply(const uint16_t *W, size_t rows, size_t cols, size_t ld, size_t group, int bits,
                     const uint16_t *scale, const int8_t *zp, int8_t *q) {
    const float qmin = -(float)(1 << (bits - 1)), qmax = (float)((1 << (bits - 1)) - 1);
    const size_t groups = cols / group;
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = W + r * ld;
        for (size_t g = 0; g < groups; g++) {
            const float s = bf16_to_f32(scale[r * groups + g]);
            const float z = zp ? (float)zp[r * groups + g] : 0.0f;
            for (size_t c = g * group; c < (g + 1) * group; c++)
                q[r * cols + c] = (int8_t)quant_value(bf16_to_f32(row[c]), s, z, qmin, qmax);
        }
    }
}

int dsk_quant_one(float w, uint16_t scale, int zp, int bits) {
    const float qmin = -(float)(1 << (bits - 1)), qmax = (float)((1 << (bits - 1)) - 1);
    return quant_value(w, bf16_to_f32(scale), (float)zp, qmin, qmax);
}

uint16_t dsk_dequant_one(int q, int zp, uint16_t scale) {
    return f32_to_bf16(rb((float)(q - zp)) * bf16_to_f32(scale));
}

MULTIVERSION
void dsk_pack_int32_rows(const int8_t *q, size_t rows, size_t cols, int bits, int32_t *out) {
    const size_t per = 32 / (size_t)bits, words = (cols * (size_t)bits + 31) / 32, full = cols / per;
    const uint32_t mask = (1u << bits) - 1, offset = 1u << (bits - 1);
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = q + r * cols;
        int32_t *dst = out + r * words;
        if (bits == 4) {
            for (size_t w = 0; w < full; w++) {
                const int8_t *v = row + w * 8;
                uint32_t word = 0;
                for (size_t k = 0; k < 8; k++) word |= (((uint32_t)((int32_t)v[k] + 8)) & 15u) << (4 * k);
                dst[w] = (int32_t)word;
            }
        } else if (bits == 8) {
            for (size_t w = 0; w < full; w++) {
                const int8_t *v = row + w * 4;
                uint32_t word = 0;
                for (size_t k = 0; k < 4; k++) word |= (((uint32_t)((int32_t)v[k] + 128)) & 255u) << (8 * k);
                dst[w] = (int32_t)word;
            }
        }
        for (size_t w = (bits == 4 || bits == 8) ? full : 0; w < words; w++) {  /* the tail (and other widths) */
            uint32_t word = 0;
            for (size_t k = 0; k < per; k++) {
                size_t c = w * per + k;
                if (c >= cols) break;
                word |= (((uint32_t)((int32_t)row[c] + (int32_t)offset)) & mask) << (k * (size_t)bits);
            }
            dst[w] = (int32_t)word;
        }
    }
}

MULTIVERSION
void dsk_unpack_int32_rows(const int32_t *in, size_t rows, size_t cols, int bits, int8_t *q) {
    const size_t per = 32 / (size_t)bits, words = (cols * (size_t)bits + 31) / 32;
    const uint32_t mask = (1u << bits) - 1;
    const int32_t offset = 1 << (bits - 1);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            uint32_t word = (uint32_t)in[r * words + c / per];
            q[r * cols + c] = (int8_t)((int32_t)((word >> ((c % per) * (size_t)bits)) & mask) - offset);
        }
    }
}

/* The dequantized value of every code of one (row, group): 16 entries for int4, 256 for int8. */
static inline void group_table(int bits, uint16_t s, int z, float *table) {
    const int n = 1 << bits, offset = 1 << (bits - 1);
    const float sf = bf16_to_f32(s);
    for (int u = 0; u < n; u++) table[u] = bf16_to_f32(f32_to_bf16(rb((float)(u - offset - z)) * sf));
}

/* Columns [c0, c0 + n) of one packed row, dequantized to f32 word by word; c0 is a multiple of
 * 32 / bits (a word boundary); `scale` and `zp` are the row's (indexed by absolute group). Each
 * group's values come from its table of every code (group_table: the same rounding per value). */
static void dequant_cols(const int32_t *row, size_t c0, size_t n, int bits, size_t group, const uint16_t *scale,
                         const int8_t *zp, float *out) {
    const size_t per = 32 / (size_t)bits;
    const uint32_t mask = (1u << bits) - 1;
    float table[256];
    size_t g = c0 / group, left = group - c0 % group;
    group_table(bits, scale[g], zp ? zp[g] : 0, table);
    size_t i = 0;
    for (size_t w = c0 / per; i < n; w++) {
        const uint32_t word = (uint32_t)row[w];
        for (size_t k = 0; k < per && i < n; k++, i++) {
            if (left == 0) {
                g++;
                left = group;
                group_table(bits, scale[g], zp ? zp[g] : 0, table);
            }
            out[i] = table[(word >> (k * (size_t)bits)) & mask];
            left--;
        }
    }
}

#define DEQUANT_CHUNK 4096 /* columns per stack buffer: a multiple of every words' value count */

/* Whole rows with AVX-512 where it applies (int4 or int8, groups of multiples of 16): the same
 * values as dequant_cols, 16 at a time. Returns 0 where it does not apply. */
static int dequant_row_fast(const int32_t *row, size_t cols, int bits, size_t group, const uint16_t *scale, const int8_t *zp,
                            float *out);

MULTIVERSION
void dsk_dequant_packed(const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                        const uint16_t *scale, const int8_t *zp, uint16_t *out) {
    const size_t words = (cols * (size_t)bits + 31) / 32, groups = cols / group;
    float tmp[DEQUANT_CHUNK];
    /* the fast path takes whole rows (a per-channel group is the row): wide ones on the heap */
    float *wide = cols > DEQUANT_CHUNK ? malloc(cols * sizeof(float)) : NULL, *line = wide ? wide : tmp;
    for (size_t r = 0; r < rows; r++) {
        if ((wide || cols <= DEQUANT_CHUNK) &&
            dequant_row_fast(packed + r * words, cols, bits, group, scale + r * groups, zp ? zp + r * groups : NULL, line)) {
            for (size_t c = 0; c < cols; c++) out[r * cols + c] = f32_to_bf16(line[c]);
            continue;
        }
        for (size_t c0 = 0; c0 < cols; c0 += DEQUANT_CHUNK) {
            const size_t n = cols - c0 < DEQUANT_CHUNK ? cols - c0 : DEQUANT_CHUNK;
            dequant_cols(packed + r * words, c0, n, bits, group, scale + r * groups, zp ? zp + r * groups : NULL, tmp);
            for (size_t c = 0; c < n; c++) out[r * cols + c0 + c] = f32_to_bf16(tmp[c]);
        }
    }
    free(wide);
}

MULTIVERSION
void dsk_quant_sq_error(const uint16_t *W, const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                        const uint16_t *scale, const int8_t *zp, double *err2, double *norm2) {
    const size_t words = (cols * (size_t)bits + 31) / 32, groups = cols / group;
    float tmp[DEQUANT_CHUNK];
    double e = 0, n2 = 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t c0 = 0; c0 < cols; c0 += DEQUANT_CHUNK) {
            const size_t n = cols - c0 < DEQUANT_CHUNK ? cols - c0 : DEQUANT_CHUNK;
            dequant_cols(packed + r * words, c0, n, bits, group, scale + r * groups, zp ? zp + r * groups : NULL, tmp);
            /* 16 lanes of f32 partial sums per chunk (vectorizes without reassociation), then double. */
            float ea[16] = {0}, na[16] = {0};
            size_t c = 0;
            for (; c + 16 <= n; c += 16)
                for (int k = 0; k < 16; k++) {
                    const float w = bf16_to_f32(W[r * cols + c0 + c + k]), d = w - tmp[c + k];
                    ea[k] += d * d;
                    na[k] += w * w;
                }
            for (; c < n; c++) {
                const float w = bf16_to_f32(W[r * cols + c0 + c]), d = w - tmp[c];
                ea[0] += d * d;
                na[0] += w * w;
            }
            for (int k = 0; k < 16; k++) { e += ea[k]; n2 += na[k]; }
        }
    }
    *err2 += e;
    *norm2 += n2;
}

void dsk_dequant_row_cols_f32(const int32_t *row, size_t cols, int bits, size_t group, const uint16_t *scale, const int8_t *zp,
                              size_t c0, size_t n, float *out) {
    const size_t g = group < cols ? group : cols; /* per channel: the row is one group */
    const size_t word0 = c0 * (size_t)bits / 32;
    if (c0 % g == 0 && n % g == 0) {
        if (dequant_row_fast(row + word0, n, bits, g, scale + c0 / g, zp ? zp + c0 / g : NULL, out)) return;
    } else if (g == cols && n % 16 == 0 && (c0 * (size_t)bits) % 32 == 0) {
        if (dequant_row_fast(row + word0, n, bits, n, scale, zp, out)) return;
    }
    dequant_cols(row, c0, n, bits, group, scale, zp, out);
}

MULTIVERSION
void dsk_dequant_packed_f32(const int32_t *packed, size_t rows, size_t cols, int bits, size_t group,
                            const uint16_t *scale, const int8_t *zp, float *out) {
    const size_t words = (cols * (size_t)bits + 31) / 32, groups = cols / group;
    for (size_t r = 0; r < rows; r++)
        if (!dequant_row_fast(packed + r * words, cols, bits, group, scale + r * groups, zp ? zp + r * groups : NULL, out + r * cols))
            dequant_cols(packed + r * words, 0, cols, bits, group, scale + r * groups, zp ? zp + r * groups : NULL, out + r * cols);
}

/* out[c] = Σ_d a[d] · W[d, c] over n packed rows (each dequantized exactly to f32 into tmp, cols
 * floats, then added in row order): the absorbed attention's query through k_nope's block of a
 * quantized kv_b, the same sums dsk_rows_axpy_bf16 makes over the same values in BF16. */
MULTIVERSION
void dsk_rows_axpy_packed(const float *a, size_t n, const int32_t *W, size_t cols, int bits, size_t group, const uint16_t *scale,
                          const int8_t *zp, float *tmp, float *out) {
    const size_t words = (cols * (size_t)bits + 31) / 32, groups = (cols + group - 1) / group;
    for (size_t c = 0; c < cols; c++) out[c] = 0;
    for (size_t d = 0; d < n; d++) {
        dsk_dequant_row_cols_f32(W + d * words, cols, bits, group, scale + d * groups, zp ? zp + d * groups : NULL, 0, cols, tmp);
        const float s = a[d];
        for (size_t c = 0; c < cols; c++) out[c] += s * tmp[c];
    }
}

#define PACKED_MAX_M 32

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

/* bf16 round-to-nearest-even of 16 f32 lanes (finite inputs), returned as f32. */
__attribute__((target("avx512f"))) static inline __m512 rb16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u)));
}

/* An int4 group's 16 dequantized values, bf16(bf16(u − 8 − zp) · scale) for codes u = 0…15
 * (`codes` holds u − 8). Without a zero point u − 8 is already a bf16 integer, and the table is
 * one product and one rounding: the int4 row kernels build a table per group of 64 columns, and
 * skipping the first rounding there made them 1.26–1.36× faster (AMD Zen 4). */
__attribute__((target("avx512f"))) static inline __m512 int4_group_table(__m512 codes, uint16_t scale, const int8_t *zp) {
    const __m512 s = _mm512_set1_ps(bf16_to_f32(scale));
    if (!zp) return rb16(_mm512_mul_ps(codes, s));
    return rb16(_mm512_mul_ps(rb16(_mm512_sub_ps(codes, _mm512_set1_ps((float)*zp))), s));
}

/* One row dequantized 16 values at a time: int4 through the group's 16-entry table (a permute
 * per 16 codes), int8 computed in lanes; both round as group_table does (for int8 the code less
 * its offset and zero point, within ±255, is already a bf16 integer: one rounding, of the product). */
__attribute__((target("avx512f"))) static void dequant_row_avx512(const int32_t *row, size_t cols, int bits, size_t group,
                                                                  const uint16_t *scale, const int8_t *zp, float *out) {
    const size_t groups = cols / group;
    if (bits == 4) {
        const __m512i shifts = _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0);
        const __m512i fifteen = _mm512_set1_epi32(15);
        const __m512 codes = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
        for (size_t g = 0; g < groups; g++) {
            const __m512 table = int4_group_table(codes, scale[g], zp ? zp + g : NULL);
            for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                const __m256i lo = _mm256_set1_epi32(row[c / 8]), hi = _mm256_set1_epi32(row[c / 8 + 1]);
                const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_storeu_ps(out + c, _mm512_permutexvar_ps(_mm512_and_si512(_mm512_srlv_epi32(v, shifts), fifteen), table));
            }
        }
        return;
    }
    const uint8_t *bytes = (const uint8_t *)row;
    for (size_t g = 0; g < groups; g++) {
        const __m512i off = _mm512_set1_epi32(128 + (zp ? zp[g] : 0));
        const __m512 s = _mm512_set1_ps(bf16_to_f32(scale[g]));
        for (size_t c = g * group; c < (g + 1) * group; c += 16) {
            const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(bytes + c)));
            _mm512_storeu_ps(out + c, rb16(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(b, off)), s)));
        }
    }
}

/* int4 rows with AVX-512: each group's 16 dequantized values in one register (exact:
 * bf16(bf16(u - 8 - z) * s)), 16 codes decoded per permute. Groups must be multiples of 16. */
__attribute__((target("avx512f"))) static void packed4_avx512(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K,
                                                              size_t group, const uint16_t *scale, const int8_t *zp,
                                                              size_t n0, size_t n1, float *Y, size_t ldy) {
    const size_t words = K / 8, groups = K / group;
    const __m512i shifts = _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0);
    const __m512i fifteen = _mm512_set1_epi32(15);
    const __m512 codes = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
    for (size_t m0 = 0; m0 < M; m0 += PACKED_MAX_M) {
        const size_t mb = M - m0 < PACKED_MAX_M ? M - m0 : PACKED_MAX_M;
        for (size_t n = n0; n < n1; n++) {
            const int32_t *row = W + n * words;
            __m512 acc[PACKED_MAX_M];
            for (size_t m = 0; m < mb; m++) acc[m] = _mm512_setzero_ps();
            for (size_t g = 0; g < groups; g++) {
                const __m512 table = int4_group_table(codes, scale[n * groups + g], zp ? zp + n * groups + g : NULL);
                for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                    const __m256i lo = _mm256_set1_epi32(row[c / 8]), hi = _mm256_set1_epi32(row[c / 8 + 1]);
                    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                    const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(v, shifts), fifteen);
                    const __m512 w = _mm512_permutexvar_ps(idx, table);
                    for (size_t m = 0; m < mb; m++) acc[m] = _mm512_fmadd_ps(_mm512_loadu_ps(X + (m0 + m) * ldx + c), w, acc[m]);
                }
            }
            for (size_t m = 0; m < mb; m++) {
                float a[16];
                _mm512_storeu_ps(a, acc[m]);
                float s8[8], s4[4];
                for (int i = 0; i < 8; i++) s8[i] = a[i] + a[i + 8];
                for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
                Y[(m0 + m) * ldy + (n - n0)] = (s4[0] + s4[2]) + (s4[1] + s4[3]);
            }
        }
    }
}

__attribute__((target("avx2,fma"))) static inline __m256 rb8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xffff0000u)));
}

/* int4 rows with AVX2: the group's 16 values in two registers, 8 codes per word decoded with two
 * permutes and a blend on the code's top bit. Groups must be multiples of 16. */
__attribute__((target("avx2,fma"))) static void packed4_avx2(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K,
                                                             size_t group, const uint16_t *scale, const int8_t *zp,
                                                             size_t n0, size_t n1, float *Y, size_t ldy) {
    const size_t words = K / 8, groups = K / group;
    const __m256i shifts = _mm256_set_epi32(28, 24, 20, 16, 12, 8, 4, 0);
    const __m256i fifteen = _mm256_set1_epi32(15);
    const __m256 codesLo = _mm256_set_ps(-1, -2, -3, -4, -5, -6, -7, -8), codesHi = _mm256_set_ps(7, 6, 5, 4, 3, 2, 1, 0);
    for (size_t m0 = 0; m0 < M; m0 += PACKED_MAX_M) {
        const size_t mb = M - m0 < PACKED_MAX_M ? M - m0 : PACKED_MAX_M;
        for (size_t n = n0; n < n1; n++) {
            const int32_t *row = W + n * words;
            __m256 acc0[PACKED_MAX_M], acc1[PACKED_MAX_M];
            for (size_t m = 0; m < mb; m++) { acc0[m] = _mm256_setzero_ps(); acc1[m] = _mm256_setzero_ps(); }
            for (size_t g = 0; g < groups; g++) {
                const __m256 s = _mm256_set1_ps(bf16_to_f32(scale[n * groups + g]));
                const __m256 z = _mm256_set1_ps(zp ? (float)zp[n * groups + g] : 0.0f);
                const __m256 tlo = rb8(_mm256_mul_ps(rb8(_mm256_sub_ps(codesLo, z)), s));
                const __m256 thi = rb8(_mm256_mul_ps(rb8(_mm256_sub_ps(codesHi, z)), s));
                if (mb == 1) {  /* decode: accumulators in registers */
                    __m256 a0 = acc0[0], a1 = acc1[0];
                    const float *x = X + m0 * ldx;
                    for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                        const __m256i i0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(row[c / 8]), shifts), fifteen);
                        const __m256i i1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(row[c / 8 + 1]), shifts), fifteen);
                        const __m256 w0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, i0), _mm256_permutevar8x32_ps(thi, i0),
                                                           _mm256_castsi256_ps(_mm256_slli_epi32(i0, 28)));
                        const __m256 w1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, i1), _mm256_permutevar8x32_ps(thi, i1),
                                                           _mm256_castsi256_ps(_mm256_slli_epi32(i1, 28)));
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), w0, a0);
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c + 8), w1, a1);
                    }
                    acc0[0] = a0;
                    acc1[0] = a1;
                    continue;
                }
                for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                    __m256 w[2];
                    for (int h = 0; h < 2; h++) {
                        const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(row[c / 8 + (size_t)h]), shifts), fifteen);
                        const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx), hi = _mm256_permutevar8x32_ps(thi, idx);
                        w[h] = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
                    }
                    for (size_t m = 0; m < mb; m++) {
                        const float *x = X + (m0 + m) * ldx + c;
                        acc0[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w[0], acc0[m]);
                        acc1[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), w[1], acc1[m]);
                    }
                }
            }
            for (size_t m = 0; m < mb; m++) {
                float a[16];
                _mm256_storeu_ps(a, acc0[m]);
                _mm256_storeu_ps(a + 8, acc1[m]);
                float s8[8], s4[4];
                for (int i = 0; i < 8; i++) s8[i] = a[i] + a[i + 8];
                for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
                Y[(m0 + m) * ldy + (n - n0)] = (s4[0] + s4[2]) + (s4[1] + s4[3]);
            }
        }
    }
}
#endif

#if defined(__x86_64__) && defined(__clang__)
#define PACKED4_ONE_ROW_MAX_K 8192

/* One input row (decode) against int4 rows, AVX-512, four weight rows at a time (or one; below). The codes of a
 * 32-column block are 16 bytes; byte j holds code 2j (low nibble) and 2j+1 (high nibble), so the
 * bytes widened to 16 dwords give the even codes (& 15) and the odd codes (>> 4), and the input is
 * split once into its even and odd columns to match. Each code is looked up in its group's
 * 16-entry table, bf16(bf16(q − zp) · scale) exactly as compressed-tensors decompresses; eight
 * accumulators (4 rows × even/odd) keep the FMA units busy. Groups must be multiples of 32. */
__attribute__((target("avx512f"))) static void packed4_row_avx512(const float *x, const int32_t *W, size_t K, size_t group,
                                                                  const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1,
                                                                  float *y, float *xe, float *xo) {
    const size_t words = K / 8, groups = K / group;
    for (size_t c = 0; c < K / 2; c++) { xe[c] = x[2 * c]; xo[c] = x[2 * c + 1]; }
    const __m512 codes = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
    const __m512i fifteen = _mm512_set1_epi32(15);
    size_t n = n0;
    /* Rows up to PACKED4_ONE_ROW_MAX_K columns go one at a time (one sequential stream; at 1536
     * columns four 768-byte rows at once are four streams the prefetchers lose: one row at a
     * time read 1.6× faster on one thread, 1.1× at 5120); wider rows four at a time, which load
     * the split input (8 bytes per column) once for four rows (1.2–1.3× at 16384). */
    for (; K > PACKED4_ONE_ROW_MAX_K && n + 4 <= n1; n += 4) {
        __m512 ae[4], ao[4];
        for (int r = 0; r < 4; r++) { ae[r] = _mm512_setzero_ps(); ao[r] = _mm512_setzero_ps(); }
        for (size_t g = 0; g < groups; g++) {
            __m512 t[4];
            for (int r = 0; r < 4; r++) {
                const size_t i = (n + r) * groups + g;
                t[r] = int4_group_table(codes, scale[i], zp ? zp + i : NULL);
            }
            for (size_t c = g * group; c < (g + 1) * group; c += 32) {
                const __m512 ve = _mm512_loadu_ps(xe + c / 2), vo = _mm512_loadu_ps(xo + c / 2);
                for (int r = 0; r < 4; r++) {
                    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(W + (n + r) * words + c / 8)));
                    ae[r] = _mm512_fmadd_ps(ve, _mm512_permutexvar_ps(_mm512_and_si512(b, fifteen), t[r]), ae[r]);
                    ao[r] = _mm512_fmadd_ps(vo, _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t[r]), ao[r]);
                }
            }
        }
        for (int r = 0; r < 4; r++) y[n + r - n0] = _mm512_reduce_add_ps(_mm512_add_ps(ae[r], ao[r]));
    }
    for (; n < n1; n++) {
        __m512 ae = _mm512_setzero_ps(), ao = _mm512_setzero_ps();
        for (size_t g = 0; g < groups; g++) {
            const size_t i = n * groups + g;
            const __m512 t = int4_group_table(codes, scale[i], zp ? zp + i : NULL);
            for (size_t c = g * group; c < (g + 1) * group; c += 32) {
                const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(W + n * words + c / 8)));
                ae = _mm512_fmadd_ps(_mm512_loadu_ps(xe + c / 2), _mm512_permutexvar_ps(_mm512_and_si512(b, fifteen), t), ae);
                ao = _mm512_fmadd_ps(_mm512_loadu_ps(xo + c / 2), _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t), ao);
            }
        }
        y[n - n0] = _mm512_reduce_add_ps(_mm512_add_ps(ae, ao));
    }
}

#endif

/* One 64-column block to int8 codes (round to nearest even) with scale max |x| / 127, written in
 * column order (odd null) or split into its 32 even and 32 odd columns; returns Σ codes. NaNs
 * do not enter the maximum. */
static int32_t quantize_block64_scalar(const float *x, int8_t *even, int8_t *odd, float *scale) {
    float m = 0;
    for (int j = 0; j < 64; j++) { const float a = fabsf(x[j]); m = a > m ? a : m; }
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < 64; j++) {
        const int v = (int)lrintf(x[j] * inv);
        if (odd) (j % 2 ? odd : even)[j / 2] = (int8_t)v;
        else even[j] = (int8_t)v;
        sum += v;
    }
    *scale = m / 127.0f;
    return sum;
}

#if defined(__x86_64__) && defined(__clang__)
/* The same on AVX-512: the same products, rounding and codes (the conversion rounds to nearest
 * even as lrintf does; max_ps(a, m) keeps m where a is NaN). */
__attribute__((target("avx512f,avx512bw"))) static int32_t quantize_block64_avx512(const float *x, int8_t *even, int8_t *odd, float *scale) {
    __m512 v[4], m = _mm512_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_loadu_ps(x + 16 * i);
        m = _mm512_max_ps(_mm512_abs_ps(v[i]), m);
    }
    const float top = _mm512_reduce_max_ps(m);
    const float inv = top > 0 ? 127.0f / top : 0.0f;
    const __m512 vi = _mm512_set1_ps(inv);
    __m512i c[4];
    if (odd) {
        const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
        c[0] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(v[0], ie, v[1]), vi));
        c[1] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(v[2], ie, v[3]), vi));
        c[2] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(v[0], io, v[1]), vi));
        c[3] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_permutex2var_ps(v[2], io, v[3]), vi));
        _mm_storeu_si128((__m128i *)even, _mm512_cvtsepi32_epi8(c[0]));
        _mm_storeu_si128((__m128i *)(even + 16), _mm512_cvtsepi32_epi8(c[1]));
        _mm_storeu_si128((__m128i *)odd, _mm512_cvtsepi32_epi8(c[2]));
        _mm_storeu_si128((__m128i *)(odd + 16), _mm512_cvtsepi32_epi8(c[3]));
    } else {
        for (int i = 0; i < 4; i++) {
            c[i] = _mm512_cvtps_epi32(_mm512_mul_ps(v[i], vi));
            _mm_storeu_si128((__m128i *)(even + 16 * i), _mm512_cvtsepi32_epi8(c[i]));
        }
    }
    *scale = top / 127.0f;
    return _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c[0], c[1]), _mm512_add_epi32(c[2], c[3])));
}
#endif

static int32_t quantize_block64(const float *x, int8_t *even, int8_t *odd, float *scale) {
#if defined(__x86_64__) && defined(__clang__)
    static int avx512 = -1;
    if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (avx512) return quantize_block64_avx512(x, even, odd, scale);
#endif
    return quantize_block64_scalar(x, even, odd, scale);
}

/* Decode with int8 activations (llama.cpp's Q8 trick; not exact): input rows quantized per
 * 64-column block to int8 with a block scale (max |x| / 127, round to nearest). A block's
 * columns are split into even then odd to match the packed nibbles, and blocks are laid out in
 * pairs so that one 512-bit load of codes (two blocks) meets one 512-bit load of inputs: for
 * pair p, [even of 2p | even of 2p+1 | odd of 2p | odd of 2p+1], 32 bytes each; an odd last
 * block lies alone as [even | odd]. xs holds each block's scale (a pair's two are spread over the
 * vector's halves as it is multiplied). The codes' +8 offset is taken out once per weight row: corr[g] =
 * Σ over group g's blocks of scale · 8 · Σ codes, and a row subtracts Σ_g s_g · corr[g]. */
void dsk_q8act_quantize(const float *x, size_t K, size_t group, int8_t *xq, float *xs, float *corr) {
    const size_t blocks = K / 64, paired = blocks / 2 * 2, per = group / 64;
    for (size_t g = 0; g < K / group; g++) corr[g] = 0;
    for (size_t b = 0; b < blocks; b++) {
        int8_t *even = b < paired ? xq + (b / 2) * 128 + (b % 2) * 32 : xq + b * 64;
        int8_t *odd = even + (b < paired ? 64 : 32);
        const int32_t sum = quantize_block64(x + b * 64, even, odd, xs + b);
        corr[b / per] += xs[b] * 8.0f * (float)sum;
    }
}

#if defined(__x86_64__) && defined(__clang__)
#define VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

/* Σ_g s_g · corr[g] over a row's bf16 group scales, 16 groups at a time. */
VNNI512 static inline float group_correction(const uint16_t *rs, const float *corr, size_t groups) {
    __m512 acc = _mm512_setzero_ps();
    size_t g = 0;
    for (; g + 16 <= groups; g += 16) {
        const __m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(rs + g))), 16));
        acc = _mm512_fmadd_ps(s, _mm512_loadu_ps(corr + g), acc);
    }
    if (g < groups) {
        const __mmask16 tail = (__mmask16)((1u << (groups - g)) - 1);
        const __m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(tail, rs + g)), 16));
        acc = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(tail, corr + g), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* One 64-byte load of codes (two blocks) against the pair's inputs: the integer dot product of
 * each dword lane (vpdpbusd: unsigned code u = q + 8 times the signed input). */
VNNI512 static inline __m512i pair_dot(const int32_t *codes, __m512i xe, __m512i xo) {
    const __m512i low = _mm512_set1_epi8(15);
    const __m512i c = _mm512_loadu_si512(codes);
    const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(c, low), xe);
    return _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(c, 4), low), xo);
}

/* The same for an odd last block alone, reduced to a float after scaling by f (the group's
 * scale times the block's). */
VNNI512 static inline float last_block(const int32_t *codes, const int8_t *xq, float f) {
    const __m256i low = _mm256_set1_epi8(15);
    const __m256i c = _mm256_loadu_si256((const __m256i *)codes);
    __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(c, low), _mm256_loadu_si256((const __m256i *)xq));
    d = _mm256_dpbusd_epi32(d, _mm256_and_si256(_mm256_srli_epi16(c, 4), low), _mm256_loadu_si256((const __m256i *)(xq + 32)));
    const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(f));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

/* Blocks of one row whose combined scales the int4 and int8 kernels compute up front (K up to
 * 32768; wider rows take the general loops). */
#define Q8ACT_ROW_MAX_BLOCKS 512

/* out[b] = the row's group scale of block b (bf16) × the input's block scale xs[b], for groups of
 * 64 (per 1) or 128 (per 2) columns, 16 blocks at a time. */
VNNI512 static inline void block_scales(const uint16_t *rs, const float *xs, size_t blocks, size_t per, float *out) {
    const __m512i twice = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    for (size_t b = 0; b < blocks; b += 16) {
        const size_t n = blocks - b < 16 ? blocks - b : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512i w;
        if (per == 1) {
            w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, rs + b));
        } else {
            const __mmask8 half = (__mmask8)((1u << ((n + 1) / 2)) - 1);
            w = _mm512_permutexvar_epi32(twice, _mm512_castsi256_si512(_mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(half, rs + b / 2))));
        }
        const __m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
        _mm512_mask_storeu_ps(out + b, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, xs + b)));
    }
}

/* Pair p's lane dot products as floats. */
VNNI512 static inline __m512 pair_lanes(const int32_t *row, const int8_t *xq, size_t p) {
    return _mm512_cvtepi32_ps(pair_dot(row + p * 16, _mm512_loadu_si512(xq + p * 128), _mm512_loadu_si512(xq + p * 128 + 64)));
}

/* Pair p's two entries of a per-block array (the input's block scales, or the row's combined
 * ones) over the low and the high eight lanes. */
VNNI512 static inline __m512 pair_scales(const float *per_block, size_t p, __m512i halves) {
    return _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *)(per_block + 2 * p)))));
}

/* One quantized input row against symmetric int4 rows (groups multiples of 64), a row at a time
 * (one sequential stream: rows shorter than a page, read two at once, lose the prefetchers),
 * two 64-column blocks per step. Each lane's integer dot product is scaled by the block's and
 * the group's scales in f32; the codes' offset comes out once per row (group_correction).
 * For groups of 64 and 128 columns (what quantize writes) the row's combined block scales are
 * computed first, 16 at a time (block_scales), and a pair takes its two with one load: with the
 * scales converted and blended pair by pair, 64-column groups read 17–21 GB/s of codes on one
 * thread against 128-column groups' 25–27; now 20–26 at 5120 columns (the same products, in
 * the same order). Other group sizes keep the general loop.
 * Weights are q · scale (not rounded to bf16). The input side is K code bytes and K/16 bytes of
 * block scales, 17 KB at o_proj's 16384 columns, and stays in L1 beside the weight stream; with
 * scales and offset sums per dword lane (32 KB) it did not, and o_proj's rows ran at 0.45× the
 * bandwidth of 5120-column ones (8.5 against 19 GB/s, one thread; 16 GB/s now). */
VNNI512 static void packed4_row_q8act(const int8_t *xq, const float *xs, const float *corr, const int32_t *W, size_t K,
                                      size_t group, const uint16_t *scale, size_t n0, size_t n1, float *y) {
    const size_t words = K / 8, groups = K / group, blocks = K / 64, pairs = blocks / 2, per = group / 64;
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (size_t n = n0; n < n1; n++) {
        const int32_t *row = W + n * words;
        const uint16_t *rs = scale + n * groups;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        size_t g = 0, left = per; /* the group of block 2p, and its blocks from 2p on */
        size_t p = 0;
        if (blocks <= Q8ACT_ROW_MAX_BLOCKS && (per == 1 || per == 2)) {
            /* The row's combined scale of every block (its group's times the input block's),
             * computed up front, so that a pair takes its two from one 8-byte load. */
            float combined[Q8ACT_ROW_MAX_BLOCKS];
            block_scales(rs, xs, blocks, per, combined);
            for (; p + 2 <= pairs; p += 2) {
                a0 = _mm512_fmadd_ps(pair_lanes(row, xq, p), pair_scales(combined, p, halves), a0);
                a1 = _mm512_fmadd_ps(pair_lanes(row, xq, p + 1), pair_scales(combined, p + 1, halves), a1);
            }
            if (p < pairs) {
                a0 = _mm512_fmadd_ps(pair_lanes(row, xq, p), pair_scales(combined, p, halves), a0);
                p++;
            }
        }
        for (; p < pairs; p++) {
            __m512 s;
            if (left >= 2) {
                s = _mm512_set1_ps(bf16_to_f32(rs[g]));
                left -= 2;
            } else { /* the pair's second block opens the next group */
                s = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(bf16_to_f32(rs[g])), _mm512_set1_ps(bf16_to_f32(rs[g + 1])));
                g++;
                left = per - 1;
            }
            if (left == 0) {
                g++;
                left = per;
            }
            const __m512 f = _mm512_mul_ps(s, pair_scales(xs, p, halves));
            if (p & 1) a1 = _mm512_fmadd_ps(pair_lanes(row, xq, p), f, a1);
            else a0 = _mm512_fmadd_ps(pair_lanes(row, xq, p), f, a0);
        }
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        if (blocks % 2) {
            const size_t b = blocks - 1;
            sum += last_block(row + b * 8, xq + b * 64, bf16_to_f32(rs[b * 64 / group]) * xs[b]);
        }
        y[n - n0] = sum - group_correction(rs, corr, groups);
    }
}

/* Σ over blocks [b0, b1) of one int8 row's 64-column integer dot products with the input, each
 * times f[b]; two blocks per step. */
VNNI512 static inline float scaled_block_dots8(const uint8_t *row, const int8_t *xq, const float *f, size_t b0, size_t b1) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    size_t b = b0;
    for (; b + 2 <= b1; b += 2) {
        const __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(row + b * 64), _mm512_loadu_si512(xq + b * 64));
        const __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(row + b * 64 + 64), _mm512_loadu_si512(xq + b * 64 + 64));
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_set1_ps(f[b]), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_set1_ps(f[b + 1]), a1);
    }
    if (b < b1) {
        const __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(row + b * 64), _mm512_loadu_si512(xq + b * 64));
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_set1_ps(f[b]), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Wide int8 groups (per channel, or 256 columns and more): a group's blocks are summed scaled by
 * the input's block scales alone, the group's weight scale applied once to the group's sum, and
 * the codes' offset taken out per group from sums over the input computed once per call
 * (Σ xs · 128 Σ codes): per 64-byte block a dot product, a conversion, a broadcast and an FMA,
 * against a scalar scale product, broadcast and correction term per block in the general loop. */
#define PACKED8_Q8ACT_GROUP_SUMS_MIN_BLOCKS 4
#define PACKED8_Q8ACT_MAX_GROUPS 256

VNNI512 static void packed8_rows_group_sums(const int8_t *xq, const float *xs, const int32_t *xsum, const int32_t *W, size_t K,
                                            size_t group, const uint16_t *scale, size_t n0, size_t n1, float *y) {
    const size_t groups = K / group, per = group / 64;
    float offset[PACKED8_Q8ACT_MAX_GROUPS];
    for (size_t g = 0; g < groups; g++) {
        float o = 0;
        for (size_t b = g * per; b < (g + 1) * per; b++) o += xs[b] * (float)xsum[b];
        offset[g] = o;
    }
    for (size_t n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)(W + n * (K / 4));
        const uint16_t *rs = scale + n * groups;
        float total = 0;
        for (size_t g = 0; g < groups; g++)
            total += bf16_to_f32(rs[g]) * (scaled_block_dots8(row, xq, xs, g * per, (g + 1) * per) - offset[g]);
        y[n - n0] = total;
    }
}

/* The same for symmetric int8 rows: the stored byte u = q + 128 is the unsigned operand as it
 * is, so a 64-column block is one vpdpbusd over 64 codes, minus 128 · Σ input. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void packed8_row_q8act(
    const int8_t *xq, const float *xs, const int32_t *xsum, const int32_t *W, size_t K, size_t group, const uint16_t *scale,
    size_t n0, size_t n1, float *y) {
    const size_t groups = K / group, per = group / 64;
    if (per >= PACKED8_Q8ACT_GROUP_SUMS_MIN_BLOCKS && groups <= PACKED8_Q8ACT_MAX_GROUPS) {
        packed8_rows_group_sums(xq, xs, xsum, W, K, group, scale, n0, n1, y);
        return;
    }
    const size_t blocks = K / 64;
    if ((per == 1 || per == 2) && blocks <= Q8ACT_ROW_MAX_BLOCKS) {
        /* Groups of 64 or 128 columns: the row's combined block scales computed first, 16 at a
         * time (as for int4), and the offset correction as their dot product with the sums. */
        for (size_t n = n0; n < n1; n++) {
            const uint8_t *row = (const uint8_t *)(W + n * (K / 4));
            float combined[Q8ACT_ROW_MAX_BLOCKS];
            block_scales(scale + n * groups, xs, blocks, per, combined);
            __m512 c = _mm512_setzero_ps();
            for (size_t b = 0; b < blocks; b += 16) {
                const __mmask16 m = (__mmask16)((1u << (blocks - b < 16 ? blocks - b : 16)) - 1);
                c = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, combined + b), _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, xsum + b)), c);
            }
            y[n - n0] = scaled_block_dots8(row, xq, combined, 0, blocks) - _mm512_reduce_add_ps(c);
        }
        return;
    }
    for (size_t n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)(W + n * (K / 4));
        __m512 acc = _mm512_setzero_ps();
        float correction = 0;
        for (size_t g = 0; g < groups; g++) {
            const float s = bf16_to_f32(scale[n * groups + g]);
            for (size_t k = 0; k < per; k++) {
                const size_t b = g * per + k;
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(row + b * 64),
                                                        _mm512_loadu_si512(xq + b * 64));
                const float f = s * xs[b];
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(f), acc);
                correction += f * (float)xsum[b];
            }
        }
        y[n - n0] = _mm512_reduce_add_ps(acc) - correction;
    }
}
#endif

/* int8 weights take the input in column order, with 128 · Σ of each block. */
void dsk_q8act_quantize8(const float *x, size_t K, int8_t *xq, float *xs, int32_t *xsum) {
    for (size_t b = 0; b < K / 64; b++) xsum[b] = 128 * quantize_block64(x + b * 64, xq + b * 64, NULL, xs + b);
}

void dsk_matmul_q8act_packed8(const int8_t *xq, const float *xs, const int32_t *xsum, size_t M, size_t K, const int32_t *W,
                              size_t group, const uint16_t *scale, size_t n0, size_t n1, float *Y, size_t ldy) {
#if defined(__x86_64__) && defined(__clang__)
    for (size_t m = 0; m < M; m++)
        packed8_row_q8act(xq + m * K, xs + m * (K / 64), xsum + m * (K / 64), W, K, group, scale, n0, n1, Y + m * ldy);
#else
    (void)xq; (void)xs; (void)xsum; (void)M; (void)K; (void)W; (void)group; (void)scale; (void)n0; (void)n1; (void)Y; (void)ldy;
#endif
}

int dsk_q8act_supported(int bits, size_t K, size_t group, int asymmetric) {
#if defined(__x86_64__) && defined(__clang__)
    static int vnni = -1;
    if (vnni < 0)
        vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
    return vnni && (bits == 4 || bits == 8) && !asymmetric && K % group == 0 && group % 64 == 0;
#else
    (void)bits; (void)K; (void)group; (void)asymmetric;
    return 0;
#endif
}

void dsk_matmul_q8act_packed4(const int8_t *xq, const float *xs, const float *corr, size_t M, size_t K, const int32_t *W,
                              size_t group, const uint16_t *scale, size_t n0, size_t n1, float *Y, size_t ldy) {
#if defined(__x86_64__) && defined(__clang__)
    for (size_t m = 0; m < M; m++)
        packed4_row_q8act(xq + m * K, xs + m * (K / 64), corr + m * (K / group), W, K, group, scale, n0, n1, Y + m * ldy);
#else
    (void)xq; (void)xs; (void)corr; (void)M; (void)K; (void)W; (void)group; (void)scale; (void)n0; (void)n1; (void)Y; (void)ldy;
#endif
}

#if defined(__x86_64__) && defined(__clang__)
#define PACKED8_ONE_ROW_MAX_K 2048

/* The offset (128 + zero point) and scale of int8 group i, broadcast. */
__attribute__((target("avx512f"))) static inline void int8_group(const uint16_t *scale, const int8_t *zp, size_t i, __m512i *off,
                                                                  __m512 *s) {
    *off = _mm512_set1_epi32(128 + (zp ? zp[i] : 0));
    *s = _mm512_set1_ps(bf16_to_f32(scale[i]));
}

/* One input row against int8 rows, AVX-512, four rows at a time (or one; below): 16 codes (bytes, low first)
 * widened to dwords, w = bf16((q − 128 − zp) · scale) computed in registers (q − zp is exact in
 * bf16 for int8), four accumulators. Groups must be multiples of 16. */
__attribute__((target("avx512f"))) static void packed8_row_avx512(const float *x, const int32_t *W, size_t K, size_t group,
                                                                  const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1,
                                                                  float *y) {
    const size_t words = K / 4, groups = K / group;
    size_t n = n0;
    /* Rows up to PACKED8_ONE_ROW_MAX_K columns go one at a time (one sequential stream: at 1536
     * columns 1.4× four rows at once on one thread; level at 5120; four at once 1.2× at 16384,
     * where they share the f32 input's loads). Each row's sum runs in the same order either way. */
    for (; K > PACKED8_ONE_ROW_MAX_K && n + 4 <= n1; n += 4) {
        __m512 a[4];
        for (int r = 0; r < 4; r++) a[r] = _mm512_setzero_ps();
        for (size_t g = 0; g < groups; g++) {
            __m512i off[4];
            __m512 s[4];
            for (int r = 0; r < 4; r++) int8_group(scale, zp, (n + r) * groups + g, &off[r], &s[r]);
            for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                const __m512 v = _mm512_loadu_ps(x + c);
                for (int r = 0; r < 4; r++) {
                    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(W + (n + r) * words + c / 4)));
                    const __m512 w = rb16(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(b, off[r])), s[r]));
                    a[r] = _mm512_fmadd_ps(v, w, a[r]);
                }
            }
        }
        for (int r = 0; r < 4; r++) y[n + r - n0] = _mm512_reduce_add_ps(a[r]);
    }
    for (; n < n1; n++) {
        __m512 a = _mm512_setzero_ps();
        for (size_t g = 0; g < groups; g++) {
            __m512i off;
            __m512 s;
            int8_group(scale, zp, n * groups + g, &off, &s);
            for (size_t c = g * group; c < (g + 1) * group; c += 16) {
                const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(W + n * words + c / 4)));
                a = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), rb16(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(b, off)), s)), a);
            }
        }
        y[n - n0] = _mm512_reduce_add_ps(a);
    }
}

/* The same products on AVX-512 BF16: each 32 codes' weights bf16((q − 128 − zp) · scale) made by
 * one vcvtne2ps2bf16 (round to nearest even, as rb16) instead of rounding each 16 in integer
 * lanes, then widened to f32 by a shift and a mask against the input split per 32 columns into
 * its even and odd columns (dsk_matvec_split_x): 15 instructions per 32 weights (13 since weights32
 * folds the offset in) where rb16 took 22, 1.3–1.4×
 * the weights per second on one core (AMD Zen 4: 14.7 → 19.3 GB/s at 5120 columns, 16.7 → 23.0
 * at 1536, 16.2 → 22.0 at 16384, two threads). The instruction treats subnormal inputs as zero;
 * a product q · scale is subnormal only where the scale is, so such a group rounds in lanes
 * (rb16) as before (scale_rounds_in_lanes). Groups must be multiples of 32. */
#define BF16CVT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static int packed8_bf16cvt_supported(void) {
    static int supported = -1;
    if (supported < 0)
        supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512bf16");
    return supported;
}

/* Whether a group with this bf16 scale rounds in lanes: a subnormal scale (its products would be
 * subnormal too, which the conversion flushes, and the fused multiply-subtract may round), or one
 * of 2^120 or more (inf, NaN), where (128 + zp) · scale may overflow even though the weight does not. */
static inline int scale_rounds_in_lanes(uint16_t s) {
    const int exponent = (s >> 7) & 0xff;
    return (exponent == 0 && (s & 0x7f) != 0) || exponent >= 127 + 120;
}

/* What the AVX-512 BF16 int8 kernels need of a group, made once per group: int8_group's offset
 * and scale, the offset's product (128 + zp) · scale, and whether the group rounds in lanes. */
typedef struct {
    __m512i off;
    __m512 s, offset;
    int lanes;
} int8_cvt_group;

BF16CVT static inline int8_cvt_group int8_cvt_group_of(const uint16_t *scale, const int8_t *zp, size_t i) {
    int8_cvt_group g;
    int8_group(scale, zp, i, &g.off, &g.s);
    g.offset = _mm512_mul_ps(_mm512_cvtepi32_ps(g.off), g.s);
    g.lanes = scale_rounds_in_lanes(scale[i]);
    return g;
}

/* 32 codes' weights as bf16, word j for column j; a group that rounds in lanes rounds them with
 * rb16. Otherwise q · s − (128 + zp) · s in one fused multiply-subtract is (q − 128 − zp) · s
 * exactly: every term has at most 9 + 8 significant bits, and none underflows or overflows. That
 * saves the integer subtraction (2 of 13 vector operations per 32 weights: 20.7 → 21.5–22.0 GB/s,
 * two threads, 5120 columns). */
BF16CVT static inline __m512i weights32(const uint8_t *codes, const int8_cvt_group *g) {
    if (!g->lanes) {
        const __m512 f0 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)codes))), g->s, g->offset);
        const __m512 f1 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + 16)))), g->s, g->offset);
        return (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
    }
    const __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)codes)), g->off)), g->s);
    const __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + 16))), g->off)), g->s);
    const __m256i w0 = _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(rb16(f0)), 16));
    const __m256i w1 = _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(rb16(f1)), 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
}

/* 32 weights (bf16 words in column order) against the split input: even columns into `even`,
 * odd into `odd`. */
#define BF16CVT_FMA(h, xsp, even, odd)                                                                                          \
    do {                                                                                                                       \
        even = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(h, 16)), _mm512_loadu_ps(xsp), even);                    \
        odd = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(h, _mm512_set1_epi32((int)0xffff0000u))), _mm512_loadu_ps((xsp) + 16), odd); \
    } while (0)

/* Rows up to PACKED8_ONE_ROW_MAX_K columns one at a time (1536 columns: 23.0 GB/s against 15.6
 * four at once), wider ones four at a time sharing the input's loads (5120: 19.3 against 17.1;
 * 16384: 22.0 against 15.6). */
BF16CVT static void packed8_row_bf16cvt(const float *xs, const int32_t *W, size_t K, size_t group, const uint16_t *scale,
                                        const int8_t *zp, size_t n0, size_t n1, float *y) {
    const size_t groups = K / group;
    size_t n = n0;
    for (; K > PACKED8_ONE_ROW_MAX_K && n + 4 <= n1; n += 4) {
        __m512 a[4][2];
        for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
        for (size_t g = 0; g < groups; g++) {
            int8_cvt_group gr[4];
            for (int r = 0; r < 4; r++) gr[r] = int8_cvt_group_of(scale, zp, (n + r) * groups + g);
            for (size_t c = g * group; c < (g + 1) * group; c += 32)
                for (int r = 0; r < 4; r++) {
                    const __m512i h = weights32((const uint8_t *)W + (n + r) * K + c, &gr[r]);
                    BF16CVT_FMA(h, xs + c, a[r][0], a[r][1]);
                }
        }
        for (int r = 0; r < 4; r++) y[n + r - n0] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
    }
    for (; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)W + n * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t g = 0; g < groups; g++) {
            const int8_cvt_group gr = int8_cvt_group_of(scale, zp, n * groups + g);
            size_t c = g * group;
            for (; c + 64 <= (g + 1) * group; c += 64) {
                const __m512i h0 = weights32(row + c, &gr), h1 = weights32(row + c + 32, &gr);
                BF16CVT_FMA(h0, xs + c, a0, a1);
                BF16CVT_FMA(h1, xs + c + 32, a2, a3);
            }
            if (c < (g + 1) * group) {
                const __m512i h0 = weights32(row + c, &gr);
                BF16CVT_FMA(h0, xs + c, a0, a1);
            }
        }
        y[n - n0] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}
#endif

MULTIVERSION
void dsk_packed_generic(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K, int bits, size_t group,
                        const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1, float *Y, size_t ldy);

void dsk_matmul_xwT_packed(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K, int bits, size_t group,
                           const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1, float *Y, size_t ldy) {
#if defined(__x86_64__) && defined(__clang__)
    static int level = -1;  /* 2: AVX-512, 1: AVX2 + FMA, 0: neither */
    if (level < 0) level = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    /* Few input rows (decode, small expert batches): the row kernels, once per input row. */
    if (level == 2 && M <= 4 && K % group == 0) {
        if (bits == 4 && group % 32 == 0) {
            float *xe = (float *)malloc(K / 2 * sizeof(float)), *xo = (float *)malloc(K / 2 * sizeof(float));
            if (xe && xo) {
                for (size_t m = 0; m < M; m++) packed4_row_avx512(X + m * ldx, W, K, group, scale, zp, n0, n1, Y + m * ldy, xe, xo);
                free(xe);
                free(xo);
                return;
            }
            free(xe);
            free(xo);
        } else if (bits == 8 && group % 16 == 0) {
            /* the input split for the AVX-512 BF16 kernel where it applies (else, or without
             * memory, the kernel that rounds in lanes) */
            float *xs = group % 32 == 0 && packed8_bf16cvt_supported() ? (float *)malloc(K * sizeof(float)) : NULL;
            for (size_t m = 0; m < M; m++) {
                if (xs) {
                    dsk_matvec_split_x(X + m * ldx, K, xs);
                    packed8_row_bf16cvt(xs, W, K, group, scale, zp, n0, n1, Y + m * ldy);
                } else {
                    packed8_row_avx512(X + m * ldx, W, K, group, scale, zp, n0, n1, Y + m * ldy);
                }
            }
            free(xs);
            return;
        }
    }
    if (bits == 4 && group % 16 == 0 && K % group == 0 && level > 0) {
        if (level == 2) packed4_avx512(X, M, ldx, W, K, group, scale, zp, n0, n1, Y, ldy);
        else packed4_avx2(X, M, ldx, W, K, group, scale, zp, n0, n1, Y, ldy);
        return;
    }
#endif
    dsk_packed_generic(X, M, ldx, W, K, bits, group, scale, zp, n0, n1, Y, ldy);
}

MULTIVERSION
void dsk_packed_generic(const float *X, size_t M, size_t ldx, const int32_t *W, size_t K, int bits, size_t group,
                           const uint16_t *scale, const int8_t *zp, size_t n0, size_t n1, float *Y, size_t ldy) {
    const size_t words = (K * (size_t)bits + 31) / 32, groups = K / group, per = 32 / (size_t)bits;
    const uint32_t mask = (1u << bits) - 1;
    float table[256];
    float w[16];
    float acc[PACKED_MAX_M][16];
    for (size_t m0 = 0; m0 < M; m0 += PACKED_MAX_M) {
        const size_t mb = M - m0 < PACKED_MAX_M ? M - m0 : PACKED_MAX_M;
        for (size_t n = n0; n < n1; n++) {
            const int32_t *row = W + n * words;
            for (size_t m = 0; m < mb; m++) for (int k = 0; k < 16; k++) acc[m][k] = 0;
            size_t g_cached = (size_t)-1;
            for (size_t c = 0; c < K; c += 16) {
                const size_t len = K - c < 16 ? K - c : 16;
                if (len == 16 && c / group == (c + 15) / group) {
                    const size_t g = c / group;
                    if (g != g_cached) {
                        group_table(bits, scale[n * groups + g], zp ? zp[n * groups + g] : 0, table);
                        g_cached = g;
                    }
                    if (bits == 4) {
                        const uint32_t w0 = (uint32_t)row[c / 8], w1 = (uint32_t)row[c / 8 + 1];
                        for (int k = 0; k < 8; k++) {
                            w[k] = table[(w0 >> (4 * k)) & 15u];
                            w[k + 8] = table[(w1 >> (4 * k)) & 15u];
                        }
                    } else {
                        for (int k = 0; k < 16; k++) {
                            const size_t cc = c + (size_t)k;
                            w[k] = table[((uint32_t)row[cc / per] >> ((cc % per) * (size_t)bits)) & mask];
                        }
                    }
                } else {  /* a block across groups, or the tail */
                    for (size_t k = 0; k < 16; k++) {
                        const size_t cc = c + k;
                        if (k >= len) { w[k] = 0; continue; }
                        const size_t g = cc / group;
                        const int u = (int)(((uint32_t)row[cc / per] >> ((cc % per) * (size_t)bits)) & mask);
                        const int z = zp ? zp[n * groups + g] : 0;
                        w[k] = bf16_to_f32(f32_to_bf16(rb((float)(u - (1 << (bits - 1)) - z)) * bf16_to_f32(scale[n * groups + g])));
                    }
                    g_cached = (size_t)-1;
                }
                for (size_t m = 0; m < mb; m++) {
                    const float *x = X + (m0 + m) * ldx + c;
                    if (len == 16) {
                        for (int k = 0; k < 16; k++) acc[m][k] += x[k] * w[k];
                    } else {
                        for (size_t k = 0; k < len; k++) acc[m][k] += x[k] * w[k];
                    }
                }
            }
            for (size_t m = 0; m < mb; m++) {
                float s8[8], s4[4];
                for (int i = 0; i < 8; i++) s8[i] = acc[m][i] + acc[m][i + 8];
                for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
                Y[(m0 + m) * ldy + (n - n0)] = (s4[0] + s4[2]) + (s4[1] + s4[3]);
            }
        }
    }
}

static int dequant_row_fast(const int32_t *row, size_t cols, int bits, size_t group, const uint16_t *scale, const int8_t *zp,
                            float *out) {
#if defined(__x86_64__) && defined(__clang__)
    static int avx512 = -1;
    if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
    if (!avx512 || (bits != 4 && bits != 8) || group % 16 != 0 || cols % group != 0) return 0;
    dequant_row_avx512(row, cols, bits, group, scale, zp, out);
    return 1;
#else
    (void)row; (void)cols; (void)bits; (void)group; (void)scale; (void)zp; (void)out;
    return 0;
#endif
}
