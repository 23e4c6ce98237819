#include "ckernels.h"
#include <string.h>

/* Built for the baseline and for AVX2/AVX-512 machines; the loader picks the best at run time. */
#if defined(__x86_64__) && defined(__clang__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define MULTIVERSION
#endif

#define LANES 16
#define MB 4

static inline __attribute__((always_inline)) float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __attribute__((always_inline)) float reduce16(const float *a) {
    float s8[8], s4[4];
    for (int i = 0; i < 8; i++) s8[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* R rows of X against one bf16 weight row, two 16-lane accumulators per row (hides FMA latency). */
#define ROWS_KERNEL(R)                                                                              \
    static inline __attribute__((always_inline)) void rows_##R(const float *X, size_t ldx, const uint16_t *w, size_t K, size_t K32, \
                                float *out, size_t ldy) {                                           \
        float acc[R][2 * LANES];                                                                    \
        memset(acc, 0, sizeof acc);                                                                 \
        for (size_t k = 0; k < K32; k += 2 * LANES) {                                               \
            float wv[2 * LANES];                                                                    \
            for (int l = 0; l < 2 * LANES; l++) wv[l] = bf16f(w[k + l]);                            \
            for (int r = 0; r < R; r++) {                                                           \
                const float *x = X + r * ldx + k;                                                   \
                for (int l = 0; l < 2 * LANES; l++) acc[r][l] += x[l] * wv[l];                      \
            }                                                                                       \
        }                                                                                           \
        for (int r = 0; r < R; r++) {                                                               \
            float a16[LANES];                                                                       \
            for (int l = 0; l < LANES; l++) a16[l] = acc[r][l] + acc[r][l + LANES];                 \
            float s = reduce16(a16);                                                                \
            const float *x = X + r * ldx;                                                           \
            for (size_t k = K32; k < K; k++) s += x[k] * bf16f(w[k]);                               \
            out[r * ldy] = s;                                                                       \
        }                                                                                           \
    }

#define ROWS_KERNELS_FOR_TARGET                                                                     \
    ROWS_KERNEL(1) ROWS_KERNEL(2) ROWS_KERNEL(3) ROWS_KERNEL(4) ROWS_KERNEL(5) ROWS_KERNEL(6)        \
    ROWS_KERNEL(7) ROWS_KERNEL(8)

ROWS_KERNELS_FOR_TARGET

/* One input row against four weight rows at once: four independent streams keep more loads in
 * flight, which is what a memory-bound decode step needs. */
static inline __attribute__((always_inline)) void vec_4rows(const float *x, const uint16_t *W, size_t K, size_t K32,
                                                            size_t n, float *y) {
    float acc[4][2 * LANES];
    memset(acc, 0, sizeof acc);
    const uint16_t *w0 = W + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    for (size_t k = 0; k < K32; k += 2 * LANES) {
        for (int l = 0; l < 2 * LANES; l++) {
            float xv = x[k + l];
            acc[0][l] += xv * bf16f(w0[k + l]);
            acc[1][l] += xv * bf16f(w1[k + l]);
            acc[2][l] += xv * bf16f(w2[k + l]);
            acc[3][l] += xv * bf16f(w3[k + l]);
        }
    }
    const uint16_t *ws[4] = {w0, w1, w2, w3};
    for (int r = 0; r < 4; r++) {
        float a16[LANES];
        for (int l = 0; l < LANES; l++) a16[l] = acc[r][l] + acc[r][l + LANES];
        float s = reduce16(a16);
        for (size_t k = K32; k < K; k++) s += x[k] * bf16f(ws[r][k]);
        y[r] = s;
    }
}

/* One input row against eight weight rows: eight streams in flight. Rows shorter than 4 KB end
 * before the hardware prefetcher has caught up with their streams, so for them `next` (the
 * following eight rows, contiguous after these) is prefetched as these are read, the same number
 * of lines per step: one block ahead. */
static inline __attribute__((always_inline)) void vec_8rows(const float *x, const uint16_t *W, size_t K, size_t K32,
                                                            size_t n, float *y, const char *next) {
    float acc[8][2 * LANES];
    memset(acc, 0, sizeof acc);
    const uint16_t *w = W + n * K;
    for (size_t k = 0; k < K32; k += 2 * LANES) {
        if (next)
            for (int i = 0; i < 8; i++) __builtin_prefetch(next + k * 16 + i * 64); /* 8 × 64 B per 32 columns */
        for (int l = 0; l < 2 * LANES; l++) {
            float xv = x[k + l];
            for (int r = 0; r < 8; r++) acc[r][l] += xv * bf16f(w[r * K + k + l]);
        }
    }
    for (int r = 0; r < 8; r++) {
        float a16[LANES];
        for (int l = 0; l < LANES; l++) a16[l] = acc[r][l] + acc[r][l + LANES];
        float s = reduce16(a16);
        for (size_t k = K32; k < K; k++) s += x[k] * bf16f(w[r * K + k]);
        y[r] = s;
    }
}

MULTIVERSION
void dsk_matmul_xwT_bf16(const float *X, size_t M, size_t ldx, const uint16_t *W, size_t K,
                         size_t n0, size_t n1, float *Y, size_t ldy) {
    size_t K32 = K / (2 * LANES) * (2 * LANES);
    if (M == 1) {
        size_t n = n0;
        for (; n + 8 <= n1; n += 8)
            vec_8rows(X, W, K, K32, n, Y + (n - n0), K <= 2048 && n + 16 <= n1 ? (const char *)(W + (n + 8) * K) : NULL);
        for (; n + 4 <= n1; n += 4) vec_4rows(X, W, K, K32, n, Y + (n - n0));
        for (; n < n1; n++) rows_1(X, ldx, W + n * K, K, K32, Y + (n - n0), ldy);
        return;
    }
    for (size_t n = n0; n < n1; n++) {
        const uint16_t *w = W + n * K;
        float *y = Y + (n - n0);
        size_t m = 0;
        for (; m + 8 <= M; m += 8) rows_8(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy);
        switch (M - m) {
        case 1: rows_1(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 2: rows_2(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 3: rows_3(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 4: rows_4(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 5: rows_5(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 6: rows_6(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        case 7: rows_7(X + m * ldx, ldx, w, K, K32, y + m * ldy, ldy); break;
        default: break;
        }
    }
}

MULTIVERSION
void dsk_matmul_xwT_f32(const float *X, size_t M, size_t ldx, const float *W, size_t K,
                        size_t n0, size_t n1, float *Y, size_t ldy) {
    size_t K16 = K / LANES * LANES;
    for (size_t n = n0; n < n1; n++) {
        const float *w = W + n * K;
        for (size_t m = 0; m < M; m++) {
            float acc[LANES];
            memset(acc, 0, sizeof acc);
            const float *x = X + m * ldx;
            for (size_t k = 0; k < K16; k += LANES)
                for (int l = 0; l < LANES; l++) acc[l] += x[k + l] * w[k + l];
            float s = reduce16(acc);
            for (size_t k = K16; k < K; k++) s += x[k] * w[k];
            Y[m * ldy + (n - n0)] = s;
        }
    }
}

/* out[c] = sum_d a[d] * W[d, c] for bf16 W [n, cols]: rows scaled and summed, in row order (the
 * absorbed attention's query through k_nope's block of kv_b, without converting the block). */
MULTIVERSION
void dsk_rows_axpy_bf16(const float *a, size_t n, const uint16_t *W, size_t cols, float *out) {
    for (size_t c = 0; c < cols; c++) out[c] = 0;
    for (size_t d = 0; d < n; d++) {
        const float s = a[d];
        const uint16_t *w = W + d * cols;
        for (size_t c = 0; c < cols; c++) out[c] += s * bf16f(w[c]);
    }
}

/* ---- One input row (decode): weight rows read one after another ----
 * A decoded token's products are bound by how fast the weights stream in. Reading one weight row
 * at a time makes a piece's reads one sequential stream over contiguous memory, which the
 * hardware prefetchers follow best; several rows at once make that many short streams (a
 * 1536-column row is 3 KB, shorter than a page), each of which the prefetchers must find anew.
 * Few instructions per byte matter too: the loads the core can keep in flight are bounded by
 * its out-of-order window, so the f32 kernel takes x pre-split into even and odd columns and
 * converts a bf16 pair word with one shift and one mask. */

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define MATVEC_X86 1
#define MATVEC_AVX512F __attribute__((target("avx512f")))
#define MATVEC_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

int dsk_matvec_bf16_supported(void) { return __builtin_cpu_supports("avx512f") ? 1 : 0; }

int dsk_matvec_bf16dot_supported(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bf16");
}
#else
int dsk_matvec_bf16_supported(void) { return 0; }
int dsk_matvec_bf16dot_supported(void) { return 0; }
#endif

size_t dsk_matvec_split_count(size_t K) { return K / 32 * 32; }

void dsk_matvec_split_x(const float *x, size_t K, float *xs) {
    for (size_t h = 0; h + 32 <= K; h += 32)
        for (int i = 0; i < 16; i++) {
            xs[h + i] = x[h + 2 * i];
            xs[h + 16 + i] = x[h + 2 * i + 1];
        }
}

#ifdef MATVEC_X86
MATVEC_AVX512F static inline float matvec_row_f32(const float *xs, const float *x, size_t K, size_t K64, const uint16_t *w) {
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t k = 0; k < K64; k += 64) {
        __m512i v0 = _mm512_loadu_si512(w + k), v1 = _mm512_loadu_si512(w + k + 32);
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(xs + k), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, high)), _mm512_loadu_ps(xs + k + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_loadu_ps(xs + k + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, high)), _mm512_loadu_ps(xs + k + 48), a3);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (size_t k = K64; k < K; k++) s += x[k] * bf16f(w[k]);
    return s;
}

MATVEC_AVX512F static void matvec_bf16_avx512(const float *xs, const float *x, size_t K, const uint16_t *W, size_t n0,
                                              size_t n1, float *y) {
    size_t K64 = K / 64 * 64;
    for (size_t n = n0; n < n1; n++) y[n - n0] = matvec_row_f32(xs, x, K, K64, W + n * K);
}

#endif

void dsk_matvec_bf16(const float *xs, const float *x, size_t K, const uint16_t *W, size_t n0, size_t n1, float *y) {
#ifdef MATVEC_X86
    if (dsk_matvec_bf16_supported()) {
        matvec_bf16_avx512(xs, x, K, W, n0, n1, y);
        return;
    }
#endif
    dsk_matmul_xwT_bf16(x, 1, K, W, K, n0, n1, y, 1);
}

#ifdef MATVEC_X86
/* Rows up to this many columns are read one at a time (one sequential stream, x in L1 beside
 * it); longer ones four at a time, so that each load of x serves four rows: at o_proj's 16384
 * columns x is 32 KB and one row at a time read it once per row from L2, 17.5–20 GB/s on one
 * thread against 25.5 four at a time (at 5120 columns, 21–24 against 19.5). */
#define BF16DOT_ONE_ROW_MAX_K 8192

/* Four weight rows against the input at once. */
MATVEC_AVX512BF16 static inline void bf16dot_4rows(const uint16_t *xb, size_t K, size_t K64, const uint16_t *w, float *y) {
    __m512 a[4][2];
    for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < K64; k += 64) {
        const __m512bh x0 = (__m512bh)_mm512_loadu_si512(xb + k), x1 = (__m512bh)_mm512_loadu_si512(xb + k + 32);
        for (int r = 0; r < 4; r++) {
            a[r][0] = _mm512_dpbf16_ps(a[r][0], (__m512bh)_mm512_loadu_si512(w + r * K + k), x0);
            a[r][1] = _mm512_dpbf16_ps(a[r][1], (__m512bh)_mm512_loadu_si512(w + r * K + k + 32), x1);
        }
    }
    for (int r = 0; r < 4; r++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
        for (size_t k = K64; k < K; k++) s += bf16f(xb[k]) * bf16f(w[r * K + k]);
        y[r] = s;
    }
}

MATVEC_AVX512BF16 static void matvec_bf16dot_avx512(const uint16_t *xb, size_t K, const uint16_t *W, size_t n0, size_t n1,
                                                    float *y) {
    size_t K64 = K / 64 * 64;
    size_t n = n0;
    if (K > BF16DOT_ONE_ROW_MAX_K)
        for (; n + 4 <= n1; n += 4) bf16dot_4rows(xb, K, K64, W + n * K, y + (n - n0));
    for (; n < n1; n++) {
        const uint16_t *w = W + n * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (size_t k = 0; k < K64; k += 64) {
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + k), (__m512bh)_mm512_loadu_si512(xb + k));
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + k + 32), (__m512bh)_mm512_loadu_si512(xb + k + 32));
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (size_t k = K64; k < K; k++) s += bf16f(xb[k]) * bf16f(w[k]);
        y[n - n0] = s;
    }
}

#endif

void dsk_matvec_bf16dot(const uint16_t *xb, size_t K, const uint16_t *W, size_t n0, size_t n1, float *y) {
#ifdef MATVEC_X86
    if (dsk_matvec_bf16dot_supported()) {
        matvec_bf16dot_avx512(xb, K, W, n0, n1, y);
        return;
    }
#endif
    for (size_t n = n0; n < n1; n++) {
        float s = 0;
        for (size_t k = 0; k < K; k++) s += bf16f(xb[k]) * bf16f(W[n * K + k]);
        y[n - n0] = s;
    }
}
