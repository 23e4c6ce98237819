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

/* Reads n bytes (a multiple of 256) front to back, one stream, 64-byte vectors xor-ed into two
 * accumulators: the sequential read rate one thread reaches, vectorized for the CPU it runs on
 * (four interleaved streams of 8-byte lanes read at a third of this on an AMD EPYC, which made
 * the probe, not the memory, the limit). No writes; the xor goes to *sink so the reads are not
 * optimized away. Returns seconds. */
typedef uint64_t dsk_v8u64 __attribute__((vector_size(64)));
#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
double dsk_timed_read(const void *src, size_t n, uint64_t *sink) {
    struct timespec a, b;
    const unsigned char *p = (const unsigned char *)src;
    dsk_v8u64 acc0 = {0}, acc1 = {0};
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i + 128 <= n; i += 128) {
        dsk_v8u64 v0, v1;
        memcpy(&v0, p + i, 64);
        memcpy(&v1, p + i + 64, 64);
        acc0 ^= v0;
        acc1 ^= v1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    dsk_v8u64 x = acc0 ^ acc1;
    uint64_t r = 0;
    for (int k = 0; k < 8; k++) r ^= x[k];
    *sink = r;
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
