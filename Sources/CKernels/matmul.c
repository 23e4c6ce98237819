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

static inline float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float reduce16(const float *a) {
    float s8[8], s4[4];
    for (int i = 0; i < 8; i++) s8[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

MULTIVERSION
void dsk_matmul_xwT_bf16(const float *X, size_t M, size_t ldx, const uint16_t *W, size_t K,
                         size_t n0, size_t n1, float *Y, size_t ldy) {
    size_t K16 = K / LANES * LANES;
    for (size_t n = n0; n < n1; n++) {
        const uint16_t *w = W + n * K;
        size_t m = 0;
        for (; m + MB <= M; m += MB) {
            float acc[MB][LANES];
            memset(acc, 0, sizeof acc);
            const float *x0 = X + (m + 0) * ldx, *x1 = X + (m + 1) * ldx, *x2 = X + (m + 2) * ldx, *x3 = X + (m + 3) * ldx;
            for (size_t k = 0; k < K16; k += LANES) {
                for (int l = 0; l < LANES; l++) {
                    float wv = bf16f(w[k + l]);
                    acc[0][l] += x0[k + l] * wv;
                    acc[1][l] += x1[k + l] * wv;
                    acc[2][l] += x2[k + l] * wv;
                    acc[3][l] += x3[k + l] * wv;
                }
            }
            for (int r = 0; r < MB; r++) {
                const float *x = X + (m + r) * ldx;
                float s = reduce16(acc[r]);
                for (size_t k = K16; k < K; k++) s += x[k] * bf16f(w[k]);
                Y[(m + r) * ldy + (n - n0)] = s;
            }
        }
        for (; m < M; m++) {
            float acc[LANES];
            memset(acc, 0, sizeof acc);
            const float *x = X + m * ldx;
            for (size_t k = 0; k < K16; k += LANES)
                for (int l = 0; l < LANES; l++) acc[l] += x[k + l] * bf16f(w[k + l]);
            float s = reduce16(acc);
            for (size_t k = K16; k < K; k++) s += x[k] * bf16f(w[k]);
            Y[m * ldy + (n - n0)] = s;
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
