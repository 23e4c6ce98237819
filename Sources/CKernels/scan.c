#include "ckernels.h"

/* Each block is first checked with a max-reduction of the exponent field, which vectorizes well
 * even at baseline SSE2; a block is counted element by element only when its max says it holds
 * a NaN or Inf (an all-ones exponent). Clean data, the common case, takes only the fast path. */
#define BLOCK 8192

#define DEFINE_SCAN(NAME, T, MASK, ALLONES)                                          \
    size_t NAME(const T *x, size_t n, size_t *first) {                               \
        size_t count = 0;                                                            \
        *first = n;                                                                  \
        for (size_t base = 0; base < n; base += BLOCK) {                             \
            size_t end = base + BLOCK < n ? base + BLOCK : n;                        \
            T m = 0;                                                                 \
            for (size_t i = base; i < end; i++) {                                    \
                T e = (T)(x[i] & (MASK));                                            \
                m = e > m ? e : m;                                                   \
            }                                                                        \
            if (m != (ALLONES)) continue;                                            \
            for (size_t i = base; i < end; i++) {                                    \
                if ((T)(x[i] & (MASK)) == (ALLONES)) {                               \
                    if (*first == n) *first = i;                                     \
                    count++;                                                         \
                }                                                                    \
            }                                                                        \
        }                                                                            \
        return count;                                                                \
    }

DEFINE_SCAN(dsk_count_nonfinite_bf16, uint16_t, 0x7F80u, 0x7F80u)
DEFINE_SCAN(dsk_count_nonfinite_f16, uint16_t, 0x7C00u, 0x7C00u)
DEFINE_SCAN(dsk_count_nonfinite_f32, uint32_t, 0x7F800000u, 0x7F800000u)
DEFINE_SCAN(dsk_count_nonfinite_f64, uint64_t, 0x7FF0000000000000ull, 0x7FF0000000000000ull)
DEFINE_SCAN(dsk_count_nonfinite_f8e4m3, uint8_t, 0x7Fu, 0x7Fu)
DEFINE_SCAN(dsk_count_nonfinite_f8e5m2, uint8_t, 0x7Cu, 0x7Cu)

/* Per-column statistics of calibration inputs, rows outer and columns inner so that the columns
 * vectorize: |x| and x² summed in double (as many rows as a calibration run has tokens), the
 * largest |x| in float, a NaN kept once seen. */
#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void dsk_channel_stats(const float *x, size_t rows, size_t cols, double *abs_sum, double *sum_squares, float *max_abs) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        for (size_t j = 0; j < cols; j++) {
            const float v = row[j], a = v < 0 ? -v : v;
            abs_sum[j] += (double)a;
            sum_squares[j] += (double)v * (double)v;
            const float m = max_abs[j];
            max_abs[j] = (a > m || a != a) ? a : m;
        }
    }
}
