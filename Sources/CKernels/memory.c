#include "ckernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void dsk_keep_freed_memory(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

#include <string.h>
#include <time.h>

double dsk_timed_copy(void *dst, const void *src, size_t n) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    memcpy(dst, src, n);
    __asm__ volatile("" ::: "memory");
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}

/* Reads n bytes (a multiple of 256) as four streams in lockstep (the quarters of the buffer), with
 * 8 independent lanes of xor per stream: the way the decode kernels stream four weight rows at
 * once, vectorized for the CPU it runs on. Read bandwidth alone, no writes; the xor goes to *sink
 * so the reads are not optimized away. Returns seconds. */
#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
double dsk_timed_read(const void *src, size_t n, uint64_t *sink) {
    struct timespec a, b;
    size_t q = n / 4 / 8 / 8 * 8; /* words per stream, a multiple of 8 */
    const uint64_t *p0 = (const uint64_t *)src, *p1 = p0 + q, *p2 = p1 + q, *p3 = p2 + q;
    uint64_t acc[4][8] = {{0}};
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i < q; i += 8)
        for (int k = 0; k < 8; k++) {
            acc[0][k] ^= p0[i + k];
            acc[1][k] ^= p1[i + k];
            acc[2][k] ^= p2[i + k];
            acc[3][k] ^= p3[i + k];
        }
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = 0;
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 8; k++) x ^= acc[s][k];
    *sink = x;
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
