/* Softmax rows of attention (see ckernels.h): f32 throughout, as the reference computes it. */
#include "ckernels.h"
#include <math.h>
#include <string.h>

static void softmax_scalar(float *p, size_t n, float scale) {
    float m = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) {
        p[i] *= scale;
        m = p[i] > m ? p[i] : m;
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = expf(p[i] - m);
        s += p[i];
    }
    const float inv = 1 / s;
    for (size_t i = 0; i < n; i++) p[i] *= inv;
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define AVX512F __attribute__((target("avx512f")))

/* e^x for x <= 0 in 16 lanes: x = n·ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two so that
 * n·ln2_hi is exact), e^r by its Taylor polynomial to r^7 (truncation below 1e-8 relative), then
 * scaled by 2^n (vscalefps, which goes to zero below the smallest float). x is clamped at -104,
 * below which e^x rounds to zero anyway, so that -inf gives 0, not NaN. */
AVX512F static inline __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
    __m512 y = _mm512_set1_ps(1.0f / 5040);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 720));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

AVX512F static void softmax_avx512(float *p, size_t n, float scale) {
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 vm = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(p + i), sc);
        _mm512_storeu_ps(p + i, v);
        vm = _mm512_max_ps(vm, v);
    }
    const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
    if (tail) {
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p + i), sc);
        _mm512_mask_storeu_ps(p + i, tail, v);
        vm = _mm512_mask_max_ps(vm, tail, vm, v);
    }
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512 vs = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(p + i), m));
        _mm512_storeu_ps(p + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (tail) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + i), m));
        _mm512_mask_storeu_ps(p + i, tail, e);
        vs = _mm512_mask_add_ps(vs, tail, vs, e);
    }
    const __m512 inv = _mm512_set1_ps(1 / _mm512_reduce_add_ps(vs));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(p + i, _mm512_mul_ps(_mm512_loadu_ps(p + i), inv));
    if (tail) _mm512_mask_storeu_ps(p + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p + i), inv));
}
#endif

void dsk_softmax_masked(float *p, size_t visible, size_t count, float scale) {
    if (visible > 0) {
#if defined(__x86_64__) && defined(__clang__)
        static int avx512 = -1;
        if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f");
        if (avx512) softmax_avx512(p, visible, scale);
        else softmax_scalar(p, visible, scale);
#else
        softmax_scalar(p, visible, scale);
#endif
    }
    if (count > visible) memset(p + visible, 0, (count - visible) * sizeof(float));
}
