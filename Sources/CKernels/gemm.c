#include "ckernels.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Prefill GEMMs, Y = X · Wᵀ, W [N, K] row-major as the checkpoint stores it (K contiguous). The
 * caller packs X once per product (dsk_gemm_pack_x) and threads share it, each multiplying its own
 * range of W rows (dsk_gemm_xwT). Kinds:
 *   DSK_GEMM_F32        the exact path: f32 X, f32 or bf16 W (converted exactly as it is packed),
 *                       f32 FMAs in 4 × 6 register tiles (AVX-512F); from 64 rows of X on,
 *                       32 × 12 broadcast tiles over X packed transposed.
 *   DSK_GEMM_F32_AVX2   the same packing and sums for CPUs without AVX-512F: each tile as two
 *                       2 × 6 passes of 8-lane FMAs (AVX2 has 16 vector registers, not 32).
 *                       Without AVX2 and FMA the caller uses BLAS.
 *   DSK_GEMM_AVX512BF16 X rounded to bf16; vdpbf16ps in the same register tiles.
 *   DSK_GEMM_AMX        X rounded to bf16; AMX-BF16 tile products, 32 W rows × 32 X rows per
 *                       2 × 2 tile block, W rows loaded as tiles straight from the checkpoint.
 * The bf16 kinds accumulate in f32; X is rounded to bf16 (nearest even) once, when packed.
 * dsk_gemm_bf16_kind() names the fastest bf16 kind this CPU has, or DSK_GEMM_F32 where a
 * bf16 kind would not beat f32 FMAs (then the caller rounds X itself and takes the exact path). */



#define KC_BF16 2048 /* K block: an X panel of M × KC stays in L2, 6 W rows of KC in L1 */
#define KC_F32 1024
#define RM 4
#define RN 6
#define M_CHUNK 32 /* row blocks of X (128 rows, 512 KB of a K block) multiplied per packed W block */
/* DSK_GEMM_F32 with many rows (M >= BC_MIN_M) takes broadcast tiles instead: 32 X rows (two
 * vectors, X packed transposed per K block) × 12 W rows (one broadcast each), 24 accumulators
 * that need no horizontal sums. Fewer rows keep the 4 × 6 tiles, which pad M to 4, not 32. */
#define BC_MIN_M 64
#define BC_MR 32
#define BC_NR 12
#define BC_KC 512
#define BC_M_CHUNK 8 /* 32-row blocks of X (256 rows, 512 KB of a K block) per packed W panel */

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* ---------- kind detection ---------- */

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int detected_kind = -1;
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Throughput of vdpbf16ps against f32 FMA, in flops, on 12 independent accumulators: some cores
 * (seen: a Xeon with AMX) run vdpbf16ps at half the FMA rate, so its 2× flops per instruction buy
 * nothing; others (Zen 4/5) run both at full rate. Best of three short runs each. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double bf16_dot_advantage(void) {
    double best[2] = {1e9, 1e9};
    for (int rep = 0; rep < 3; rep++)
        for (int kind = 0; kind < 2; kind++) {
            __m512 a[12];
            for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i * 1e-3f);
            __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
            __m512bh bx = (__m512bh)_mm512_set1_epi16(0x3f7f);
            double t0 = seconds();
            for (int it = 0; it < 20000; it++) {
                for (int i = 0; i < 12; i++) a[i] = kind ? _mm512_dpbf16_ps(a[i], bx, bx) : _mm512_fmadd_ps(a[i], x, y);
                __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]), "+v"(a[6]),
                                 "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
            }
            double dt = seconds() - t0;
            if (dt < best[kind]) best[kind] = dt;
        }
    /* flops per instruction: 32 for the FMA, 64 for the bf16 pair dot product */
    return (64.0 / best[1]) / (32.0 / best[0]);
}

static void detect_kind(void) {
    __builtin_cpu_init();
    int avx512bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    int amx = avx512bf16 && __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
    /* Linux hands out the 8 KB tile state only on request (per process, kernel 5.16+). */
    if (amx && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) amx = 0;
    if (amx) detected_kind = DSK_GEMM_AMX;
    else if (avx512bf16 && bf16_dot_advantage() > 1.25) detected_kind = DSK_GEMM_AVX512BF16;
    else detected_kind = DSK_GEMM_F32;
}

int dsk_gemm_bf16_kind(void) {
    pthread_once(&kind_once, detect_kind);
    return detected_kind;
}

int dsk_gemm_supported(int kind) {
    __builtin_cpu_init();
    switch (kind) {
    case DSK_GEMM_F32: return __builtin_cpu_supports("avx512f");
    case DSK_GEMM_F32_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case DSK_GEMM_AVX512BF16:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bf16");
    case DSK_GEMM_AMX: return dsk_gemm_bf16_kind() == DSK_GEMM_AMX;
    default: return 0;
    }
}

/* ---------- dot-product register tiles (AVX-512 BF16 tier and the f32 path) ----------
 * Both operands are packed per K block so that the inner loop reads two contiguous streams: X as
 * [M/4][kc/L][4][L] and W as [kc/L][6][L] (L elements per 64-byte vector), zero-padded in M, N
 * and K. A 4 × 6 tile of 16-lane accumulators runs over the block, then each is reduced. */

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define AVX512F __attribute__((target("avx512f")))

static void *scratch(size_t bytes) {
    void *p = aligned_alloc(64, round_up(bytes, 64));
    if (!p) abort();
    return p;
}

/* Four accumulators reduced at once: lane i of the result is the sum of v[i]'s 16 lanes (about a
 * third of the shuffles and adds of four separate reductions). */
AVX512F static inline __attribute__((always_inline)) __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); /* a02 b02 a13 b13 per 128 bits */
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 v = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(v);
}

/* Y tile (rm × rn valid of 4 × 6) stored or added: each column's four rows reduced together.
 * Every column is reduced and only the stores are guarded, so that each accumulator is named by
 * a constant index: a loop bounded by rn made the compiler keep the tile in a stack array (zeroed
 * by a memset call per tile, about 5% of a bf16 prefill). */
AVX512F static inline __attribute__((always_inline)) void store_tile(__m512 acc[RM][RN], int rm, int rn, float *Y, size_t ldy,
                                                                      int add) {
    float s[RN][4];
    for (int j = 0; j < RN; j++) _mm_storeu_ps(s[j], reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
    for (int i = 0; i < rm; i++)
        for (int j = 0; j < rn; j++) Y[i * ldy + j] = add ? Y[i * ldy + j] + s[j][i] : s[j][i];
}

/* A W panel as the tiles read it: row j's step s (L elements) at base + j · row + s · step, in
 * elements. Packed panels are [steps][6][L] (row L, step 6L); panels read in place from the
 * checkpoint are its rows (row K, step L). `next`: the following panel's rows in the checkpoint
 * (byte stride next_ld), prefetched a line per row as each step's lines are read, so that the next
 * panel's memory reads overlap this one's arithmetic; NULL for none. */
typedef struct {
    const void *base;
    size_t row, step;
    const char *next;
    size_t next_ld;
} w_panel;

AVX512BF16 static inline __attribute__((always_inline)) void tile_bf16(const uint16_t *xp, w_panel w, size_t steps, int rm, int rn, float *Y, size_t ldy, int add) {
    __m512 acc[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    const uint16_t *wp = w.base;
    for (size_t s = 0; s < steps; s++, xp += RM * 32) {
        if (w.next)
            for (int j = 0; j < RN; j++) __builtin_prefetch(w.next + j * w.next_ld + s * 64);
        __m512bh x[RM];
        for (int i = 0; i < RM; i++) x[i] = (__m512bh)_mm512_loadu_si512(xp + i * 32);
        const uint16_t *ws = wp + s * w.step;
        for (int j = 0; j < RN; j++) {
            __m512bh wv = (__m512bh)_mm512_loadu_si512(ws + j * w.row);
            for (int i = 0; i < RM; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], x[i], wv);
        }
    }
    store_tile(acc, rm, rn, Y, ldy, add);
}

/* `next`: as w_panel's, for a panel whose rows hold `next_step` bytes per 16-element step (32 for
 * bf16, 64 for f32); NULL for none. */
AVX512F static void tile_f32(const float *xp, const float *wp, size_t steps, int rm, int rn, float *Y, size_t ldy, int add,
                             const char *next, size_t next_ld, size_t next_step) {
    __m512 acc[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
    for (size_t s = 0; s < steps; s++, xp += RM * 16, wp += RN * 16) {
        if (next && (s * next_step) % 64 == 0)
            for (int j = 0; j < RN; j++) __builtin_prefetch(next + j * next_ld + s * next_step);
        __m512 x[RM];
        for (int i = 0; i < RM; i++) x[i] = _mm512_loadu_ps(xp + i * 16);
        for (int j = 0; j < RN; j++) {
            __m512 w = _mm512_loadu_ps(wp + j * 16);
            for (int i = 0; i < RM; i++) acc[i][j] = _mm512_fmadd_ps(x[i], w, acc[i][j]);
        }
    }
    store_tile(acc, rm, rn, Y, ldy, add);
}

/* The AVX2 tier: rows i0 and i0 + 1 of a 4 × 6 tile (the packed X block holds four rows per
 * step), 12 accumulators of 8 lanes, each 16-lane step taken as two halves. */
#define AVX2FMA __attribute__((target("avx2,fma")))

AVX2FMA static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2FMA static void tile_f32_avx2_pair(const float *xp, const float *wp, size_t steps, int i0, int rm, int rn, float *Y,
                                       size_t ldy, int add) {
    __m256 acc[2][RN];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
    for (size_t s = 0; s < steps; s++, xp += RM * 16, wp += RN * 16)
        for (int h = 0; h < 16; h += 8) {
            __m256 x0 = _mm256_loadu_ps(xp + i0 * 16 + h), x1 = _mm256_loadu_ps(xp + (i0 + 1) * 16 + h);
            for (int j = 0; j < RN; j++) {
                __m256 w = _mm256_loadu_ps(wp + j * 16 + h);
                acc[0][j] = _mm256_fmadd_ps(x0, w, acc[0][j]);
                acc[1][j] = _mm256_fmadd_ps(x1, w, acc[1][j]);
            }
        }
    for (int i = 0; i < 2 && i0 + i < rm; i++)
        for (int j = 0; j < rn; j++) {
            float v = hsum256(acc[i][j]);
            float *y = Y + (size_t)(i0 + i) * ldy + j;
            *y = add ? *y + v : v;
        }
}

AVX2FMA static void tile_f32_avx2(const float *xp, const float *wp, size_t steps, int rm, int rn, float *Y, size_t ldy,
                                  int add, const char *next, size_t next_ld, size_t next_step) {
    (void)next, (void)next_ld, (void)next_step;
    tile_f32_avx2_pair(xp, wp, steps, 0, rm, rn, Y, ldy, add);
    if (rm > 2) tile_f32_avx2_pair(xp, wp, steps, 2, rm, rn, Y, ldy, add);
}

/* Packs rows [r0, r0 + rows) × columns [k0, k0 + kc) of a row-major matrix (stride ld) into
 * [steps][group][L], rows past `rows` and columns past kc zero. */
static void pack_bf16_rows(const uint16_t *src, size_t ld, size_t rows, size_t group, size_t k0, size_t kc, uint16_t *out) {
    size_t steps = round_up(kc, 32) / 32;
    for (size_t s = 0; s < steps; s++)
        for (size_t g = 0; g < group; g++) {
            uint16_t *o = out + (s * group + g) * 32;
            size_t k = s * 32, n = g < rows ? (kc - k < 32 ? kc - k : 32) : 0;
            if (n) memcpy(o, src + g * ld + k0 + k, n * 2);
            if (n < 32) memset(o + n, 0, (32 - n) * 2);
        }
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void pack_f32_rows(const void *src, int bf16, size_t ld, size_t rows, size_t group, size_t k0, size_t kc, float *out) {
    size_t steps = round_up(kc, 16) / 16;
    for (size_t s = 0; s < steps; s++)
        for (size_t g = 0; g < group; g++) {
            float *o = out + (s * group + g) * 16;
            size_t k = s * 16, n = g < rows ? (kc - k < 16 ? kc - k : 16) : 0;
            if (bf16) {
                const uint16_t *p = (const uint16_t *)src + g * ld + k0 + k;
                for (size_t l = 0; l < n; l++) o[l] = bf16_to_f32(p[l]);
            } else if (n) {
                memcpy(o, (const float *)src + g * ld + k0 + k, n * 4);
            }
            for (size_t l = n; l < 16; l++) o[l] = 0;
        }
}

/* X packed for the dot-product kinds: K blocks of KC one after another, each [M/4][kc/L][4][L]. */
int dsk_gemm_is_f32(int kind) { return kind == DSK_GEMM_F32 || kind == DSK_GEMM_F32_AVX2; }
static size_t dot_block(int kind) { return dsk_gemm_is_f32(kind) ? KC_F32 : KC_BF16; }
static size_t dot_lanes(int kind) { return dsk_gemm_is_f32(kind) ? 16 : 32; }

/* Whole panels (6 rows, K a multiple of 32) are read in place from the checkpoint; a short last
 * panel or an odd K goes through a zero-padded packed copy. */
AVX512BF16 static void gemm_avx512bf16(const uint16_t *xp, size_t M, size_t K, const uint16_t *W, size_t ldw, size_t n0, size_t n1,
                                       float *Y, size_t ldy) {
    size_t mb = round_up(M, RM) / RM, kcmax = K < KC_BF16 ? round_up(K, 32) : KC_BF16;
    uint16_t *wp = scratch(RN * kcmax * 2);
    for (size_t k0 = 0; k0 < K; k0 += KC_BF16) {
        size_t kc = K - k0 < KC_BF16 ? K - k0 : KC_BF16, steps = round_up(kc, 32) / 32;
        const uint16_t *xb = xp + mb * RM * k0;
        for (size_t c0 = 0; c0 < mb; c0 += M_CHUNK) {
            size_t c1 = c0 + M_CHUNK < mb ? c0 + M_CHUNK : mb;
            for (size_t n = n0; n < n1; n += RN) {
                int rn = (int)(n1 - n < RN ? n1 - n : RN);
                w_panel w;
                if (rn == RN && K % 32 == 0) {
                    w = (w_panel){W + n * ldw + k0, ldw, 32, NULL, ldw * 2};
                } else {
                    pack_bf16_rows(W + n * ldw, ldw, (size_t)rn, RN, k0, kc, wp);
                    w = (w_panel){wp, 32, RN * 32, NULL, ldw * 2};
                }
                /* the next panel's lines, fetched while the first row block runs */
                if (n + 2 * RN <= n1) w.next = (const char *)(W + (n + RN) * ldw + k0);
                for (size_t b = c0; b < c1; b++) {
                    int rm = (int)(M - b * RM < RM ? M - b * RM : RM);
                    tile_bf16(xb + b * RM * steps * 32, w, steps, rm, rn, Y + b * RM * ldy + (n - n0), ldy, k0 > 0);
                    w.next = NULL;
                }
            }
        }
    }
    free(wp);
}

typedef void (*f32_tile_fn)(const float *, const float *, size_t, int, int, float *, size_t, int, const char *, size_t, size_t);

/* The f32 kinds: W rows packed (converted from bf16) 6 at a time per K block, then multiplied by
 * every 4-row block of a 128-row chunk of X by `tile`. */
static void gemm_f32(const float *xp, size_t M, size_t K, const void *W, size_t ldw, int wbf16, size_t n0, size_t n1, float *Y,
                     size_t ldy, f32_tile_fn tile) {
    size_t mb = round_up(M, RM) / RM, kcmax = K < KC_F32 ? round_up(K, 16) : KC_F32;
    float *wp = scratch(RN * kcmax * 4);
    for (size_t k0 = 0; k0 < K; k0 += KC_F32) {
        size_t kc = K - k0 < KC_F32 ? K - k0 : KC_F32, steps = round_up(kc, 16) / 16;
        const float *xb = xp + mb * RM * k0;
        for (size_t c0 = 0; c0 < mb; c0 += M_CHUNK) {
            size_t c1 = c0 + M_CHUNK < mb ? c0 + M_CHUNK : mb;
            for (size_t n = n0; n < n1; n += RN) {
                int rn = (int)(n1 - n < RN ? n1 - n : RN);
                const void *w = wbf16 ? (const void *)((const uint16_t *)W + n * ldw) : (const void *)((const float *)W + n * ldw);
                pack_f32_rows(w, wbf16, ldw, (size_t)rn, RN, k0, kc, wp);
                /* the next panel's source lines, fetched while the first row block runs */
                size_t esize = wbf16 ? 2 : 4;
                const char *next = n + 2 * RN <= n1 ? (const char *)W + ((n + RN) * ldw + k0) * esize : NULL;
                for (size_t b = c0; b < c1; b++) {
                    int rm = (int)(M - b * RM < RM ? M - b * RM : RM);
                    tile(xb + b * RM * steps * 16, wp, steps, rm, rn, Y + b * RM * ldy + (n - n0), ldy, k0 > 0, next, ldw * esize,
                         16 * esize);
                    next = NULL;
                }
            }
        }
    }
    free(wp);
}

/* ---------- packed quantized weights ---------- */

/* The bf16 bits of 32 floats that are bf16 numbers (exact: their low halves are zero). */
AVX512F static void high_halves32(const float *in, uint16_t *out) {
    for (int h = 0; h < 32; h += 16) {
        __m512i u = _mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(in + h)), 16);
        _mm256_storeu_si256((__m256i *)(out + h), _mm512_cvtepi32_epi16(u));
    }
}

/* Rows [n, n + rn) × columns [k0, k0 + kc) of a packed W dequantized into a panel laid out as
 * pack_bf16_rows (bf16) or pack_f32_rows (f32) lay theirs: [steps][RN][L], zero past rn and kc.
 * The dequantized values are bf16 numbers, so the bf16 panel holds them exactly. `line`: kc floats. */
static void pack_dequant_rows(dsk_packed_weight w, size_t K, size_t n, size_t rn, size_t k0, size_t kc, int bf16, void *out,
                              float *line) {
    const size_t words = (K * (size_t)w.bits + 31) / 32, groups = (K + w.group - 1) / w.group;
    const size_t lanes = bf16 ? 32 : 16, steps = round_up(kc, lanes) / lanes;
    for (size_t j = 0; j < RN; j++) {
        if (j < rn)
            dsk_dequant_row_cols_f32(w.words + (n + j) * words, K, w.bits, w.group, w.scale + (n + j) * groups,
                                     w.zp ? w.zp + (n + j) * groups : NULL, k0, kc, line);
        for (size_t st = 0; st < steps; st++) {
            size_t k = st * lanes, cnt = j < rn ? (kc - k < lanes ? kc - k : lanes) : 0;
            if (bf16) {
                uint16_t *o = (uint16_t *)out + (st * RN + j) * 32;
                if (cnt == 32) {
                    high_halves32(line + k, o);
                } else {
                    for (size_t l = 0; l < cnt; l++) {
                        uint32_t u;
                        memcpy(&u, line + k + l, 4);
                        o[l] = (uint16_t)(u >> 16);
                    }
                    for (size_t l = cnt; l < 32; l++) o[l] = 0;
                }
            } else {
                float *o = (float *)out + (st * RN + j) * 16;
                if (cnt) memcpy(o, line + k, cnt * 4);
                for (size_t l = cnt; l < 16; l++) o[l] = 0;
            }
        }
    }
}

static int use_bcast(int kind, size_t M);

int dsk_gemm_packed_applies(int kind, size_t M) {
    if (!dsk_gemm_supported(kind)) return 0;
    /* Up to one chunk of X's rows: more would dequantize each panel once per chunk, where the
     * caller's whole-tile conversion is amortized over the rows anyway. */
    if (M > RM * M_CHUNK) return 0;
    return kind == DSK_GEMM_AVX512BF16 || (kind == DSK_GEMM_F32 && !use_bcast(kind, M));
}

/* The loops of dsk_gemm_xwT_packed, instantiated per kind (each with its tile inlined). */
#define GEMM_PACKED_LOOPS(BF16, TILE_CALL)                                                                          \
    const size_t kcb = BF16 ? KC_BF16 : KC_F32, lanes = BF16 ? 32 : 16, esize = BF16 ? 2 : 4;                         \
    const size_t mb = round_up(M, RM) / RM, kcmax = K < kcb ? round_up(K, lanes) : kcb;                               \
    void *wp = scratch(RN * kcmax * esize);                                                                           \
    float *line = scratch(kcmax * sizeof(float));                                                                     \
    for (size_t k0 = 0; k0 < K; k0 += kcb) {                                                                          \
        size_t kc = K - k0 < kcb ? K - k0 : kcb, steps = round_up(kc, lanes) / lanes;                                 \
        for (size_t c0 = 0; c0 < mb; c0 += M_CHUNK) {                                                                 \
            size_t c1 = c0 + M_CHUNK < mb ? c0 + M_CHUNK : mb;                                                        \
            for (size_t n = n0; n < n1; n += RN) {                                                                    \
                int rn = (int)(n1 - n < RN ? n1 - n : RN);                                                            \
                pack_dequant_rows(w, K, n, (size_t)rn, k0, kc, BF16, wp, line);                                       \
                for (size_t b = c0; b < c1; b++) {                                                                    \
                    int rm = (int)(M - b * RM < RM ? M - b * RM : RM);                                                \
                    float *y = Y + b * RM * ldy + (n - n0);                                                           \
                    TILE_CALL;                                                                                        \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }                                                                                                                 \
    free(line);                                                                                                       \
    free(wp);

AVX512BF16 static void gemm_packed_bf16(const uint16_t *xp, size_t M, size_t K, dsk_packed_weight w, size_t n0, size_t n1,
                                        float *Y, size_t ldy) {
    GEMM_PACKED_LOOPS(1, tile_bf16(xp + mb * RM * k0 + b * RM * steps * 32, (w_panel){wp, 32, RN * 32, NULL, 0}, steps, rm, rn, y,
                                   ldy, k0 > 0))
}

AVX512F static void gemm_packed_f32(const float *xp, size_t M, size_t K, dsk_packed_weight w, size_t n0, size_t n1, float *Y,
                                    size_t ldy) {
    GEMM_PACKED_LOOPS(0, tile_f32(xp + mb * RM * k0 + b * RM * steps * 16, wp, steps, rm, rn, y, ldy, k0 > 0, NULL, 0, 0))
}

void dsk_gemm_xwT_packed(const void *xp, size_t M, size_t K, dsk_packed_weight w, size_t n0, size_t n1, float *Y, size_t ldy,
                         int kind) {
    if (M == 0 || n1 <= n0) return;
    if (!dsk_gemm_packed_applies(kind, M) || (w.bits != 4 && w.bits != 8) || w.group == 0) abort(); /* caller bugs */
    if (kind == DSK_GEMM_AVX512BF16) gemm_packed_bf16(xp, M, K, w, n0, n1, Y, ldy);
    else gemm_packed_f32(xp, M, K, w, n0, n1, Y, ldy);
}

/* ---------- broadcast tiles (DSK_GEMM_F32, many rows) ---------- */

static int use_bcast(int kind, size_t M) { return kind == DSK_GEMM_F32 && M >= BC_MIN_M; }

/* Y[0..rm) × [0..rn) (stride ldy) = or += X block · W panelᵀ over kc columns: xp [kc][32]
 * (column k of 32 X rows), wp [12][kc] (12 W rows as f32). */
AVX512F static void bcast_tile(const float *xp, const float *wp, size_t kc, int rm, int rn, float *Y, size_t ldy, int add,
                               const char *next, size_t next_ld, size_t esize) {
    __m512 acc[BC_NR][2];
    for (int j = 0; j < BC_NR; j++) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    /* the next panel's source lines (`next`, rows next_ld bytes apart, esize bytes per element),
     * one line per row each time these rows have advanced a line */
    const size_t line_mask = 64 / esize - 1;
    if (rm > 16) {
        for (size_t k = 0; k < kc; k++) {
            if (next && (k & line_mask) == 0)
                for (int j = 0; j < BC_NR; j++) __builtin_prefetch(next + j * next_ld + k * esize);
            const __m512 x0 = _mm512_loadu_ps(xp + k * BC_MR), x1 = _mm512_loadu_ps(xp + k * BC_MR + 16);
            for (int j = 0; j < BC_NR; j++) {
                const __m512 w = _mm512_set1_ps(wp[j * kc + k]);
                acc[j][0] = _mm512_fmadd_ps(x0, w, acc[j][0]);
                acc[j][1] = _mm512_fmadd_ps(x1, w, acc[j][1]);
            }
        }
    } else {
        for (size_t k = 0; k < kc; k++) {
            if (next && (k & line_mask) == 0)
                for (int j = 0; j < BC_NR; j++) __builtin_prefetch(next + j * next_ld + k * esize);
            const __m512 x0 = _mm512_loadu_ps(xp + k * BC_MR);
            for (int j = 0; j < BC_NR; j++) acc[j][0] = _mm512_fmadd_ps(x0, _mm512_set1_ps(wp[j * kc + k]), acc[j][0]);
        }
    }
    float buf[BC_NR][BC_MR] __attribute__((aligned(64)));
    for (int j = 0; j < BC_NR; j++) {
        _mm512_store_ps(buf[j], acc[j][0]);
        _mm512_store_ps(buf[j] + 16, acc[j][1]);
    }
    for (int i = 0; i < rm; i++)
        for (int j = 0; j < rn; j++) {
            float *y = Y + (size_t)i * ldy + j;
            *y = add ? *y + buf[j][i] : buf[j][i];
        }
}

AVX512F static void gemm_f32_bcast(const float *xp, size_t M, size_t K, const void *W, size_t ldw, int wbf16, size_t n0, size_t n1,
                                   float *Y, size_t ldy) {
    size_t mp = round_up(M, BC_MR), mb = mp / BC_MR, kcmax = K < BC_KC ? K : BC_KC;
    float *wp = scratch(BC_NR * kcmax * 4);
    for (size_t k0 = 0; k0 < K; k0 += BC_KC) {
        size_t kc = K - k0 < BC_KC ? K - k0 : BC_KC;
        const float *xb = xp + mp * k0;
        for (size_t c0 = 0; c0 < mb; c0 += BC_M_CHUNK) {
            size_t c1 = c0 + BC_M_CHUNK < mb ? c0 + BC_M_CHUNK : mb;
            for (size_t n = n0; n < n1; n += BC_NR) {
                int rn = (int)(n1 - n < BC_NR ? n1 - n : BC_NR);
                for (int j = 0; j < BC_NR; j++) {
                    if (j < rn && wbf16) {
                        dsk_bf16_to_f32((const uint16_t *)W + (n + j) * ldw + k0, wp + j * kc, kc);
                    } else if (j < rn) {
                        memcpy(wp + j * kc, (const float *)W + (n + j) * ldw + k0, kc * 4);
                    } else {
                        memset(wp + j * kc, 0, kc * 4);
                    }
                }
                size_t esize = wbf16 ? 2 : 4;
                const char *next = n + 2 * BC_NR <= n1 ? (const char *)W + ((n + BC_NR) * ldw + k0) * esize : NULL;
                for (size_t b = c0; b < c1; b++) {
                    int rm = (int)(M - b * BC_MR < BC_MR ? M - b * BC_MR : BC_MR);
                    bcast_tile(xb + b * BC_MR * kc, wp, kc, rm, rn, Y + b * BC_MR * ldy + (n - n0), ldy, k0 > 0, next, ldw * esize,
                               esize);
                    next = NULL;
                }
            }
        }
    }
    free(wp);
}

/* ---------- AMX tier ---------- */

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* Tiles 0-3: C (16 W rows × 16 X rows, f32); 4, 5: A (16 W rows × 32 k); 6, 7: B (32 k × 16 X rows in pairs). */
AMX static void amx_configure(void) {
    amx_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    _tile_loadconfig(&c);
}

/* 32 W rows (stride ldw) copied to rows of kp, zero-padded (rows past `rows`, columns past K). */
static void amx_pack_w(const uint16_t *W, size_t ldw, size_t K, size_t rows, size_t kp, uint16_t *panel) {
    memset(panel, 0, 32 * kp * 2);
    for (size_t r = 0; r < rows; r++) memcpy(panel + r * kp, W + r * ldw, K * 2);
}

AMX static void gemm_amx(const uint16_t *Xv, size_t M, size_t K, const uint16_t *W, size_t ldw, size_t n0, size_t n1, float *Y,
                         size_t ldy) {
    size_t kp = round_up(K, 32), mp = round_up(M, 32), steps = kp / 32;
    uint16_t *panel = scratch(32 * kp * 2);
    float c[4][16][16] __attribute__((aligned(64)));
    amx_configure();
    for (size_t n = n0; n < n1; n += 32) {
        size_t rows = n1 - n < 32 ? n1 - n : 32;
        /* Whole blocks are tiles as stored (rows of K); a short block or an odd K goes through
         * a zero-padded panel laid out the same way. */
        const uint16_t *A0 = W + n * ldw;
        size_t lda = ldw;
        if (rows < 32 || K % 32 != 0) {
            amx_pack_w(W + n * ldw, ldw, K, rows, kp, panel);
            A0 = panel;
            lda = kp;
        }
        for (size_t m = 0; m < mp; m += 32) {
            const uint16_t *B = Xv + (m / 32) * steps * 1024, *A = A0;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t s = 0; s < steps; s++, A += 32, B += 1024) {
                _tile_loadd(4, A, lda * 2);
                _tile_loadd(5, A + 16 * lda, lda * 2);
                _tile_loadd(6, B, 64);
                _tile_loadd(7, B + 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, c[0], 64);
            _tile_stored(1, c[1], 64);
            _tile_stored(2, c[2], 64);
            _tile_stored(3, c[3], 64);
            /* c[2a + b][i][j] = Σ_k W[n + 16a + i, k] · X[m + 16b + j, k] */
            for (int t = 0; t < 4; t++) {
                size_t wr = (size_t)(t / 2) * 16, xr = m + (size_t)(t % 2) * 16;
                for (size_t j = 0; j < 16 && xr + j < M; j++) {
                    float *y = Y + (xr + j) * ldy + (n - n0) + wr;
                    for (size_t i = 0; i < 16 && wr + i < rows; i++) y[i] = c[t][i][j];
                }
            }
        }
    }
    _tile_release();
    free(panel);
}

/* ---------- packing X and the entry point ---------- */

size_t dsk_gemm_packed_x_count(size_t M, size_t K, int kind) {
    if (kind == DSK_GEMM_AMX) return round_up(M, 32) * round_up(K, 32);
    if (use_bcast(kind, M)) return round_up(M, BC_MR) * K;
    size_t kc = dot_block(kind), last = K % kc ? K % kc : kc;
    return round_up(M, RM) * (K - last + round_up(last, dot_lanes(kind)));
}

#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void round_row(const float *x, size_t K, size_t kp, uint16_t *out) {
    for (size_t k = 0; k < K; k++) out[k] = f32_to_bf16(x[k]);
    for (size_t k = K; k < kp; k++) out[k] = 0;
}

size_t dsk_gemm_x_row_block(int kind, size_t M) { return kind == DSK_GEMM_AMX ? 32 : use_bcast(kind, M) ? BC_MR : RM; }

void dsk_gemm_pack_x(const float *X, size_t M, size_t ldx, size_t K, int kind, void *out) {
    dsk_gemm_pack_x_rows(X, M, ldx, K, kind, out, 0, round_up(M, dsk_gemm_x_row_block(kind, M)));
}

void dsk_gemm_pack_x_rows(const float *X, size_t M, size_t ldx, size_t K, int kind, void *out, size_t m0, size_t m1) {
    if (use_bcast(kind, M)) {
        /* K blocks of BC_KC one after another, each [M/32][kc][32]: X transposed per 32 rows */
        size_t mp = round_up(M, BC_MR);
        for (size_t k0 = 0; k0 < K; k0 += BC_KC) {
            size_t kc = K - k0 < BC_KC ? K - k0 : BC_KC;
            for (size_t m = m0; m < m1; m++) {
                float *o = (float *)out + mp * k0 + (m / BC_MR) * BC_MR * kc + m % BC_MR;
                if (m < M)
                    for (size_t k = 0; k < kc; k++) o[k * BC_MR] = X[m * ldx + k0 + k];
                else
                    for (size_t k = 0; k < kc; k++) o[k * BC_MR] = 0;
            }
        }
        return;
    }
    if (dsk_gemm_is_f32(kind)) {
        size_t mb = round_up(M, RM) / RM;
        for (size_t k0 = 0; k0 < K; k0 += KC_F32) {
            size_t kc = K - k0 < KC_F32 ? K - k0 : KC_F32, steps = round_up(kc, 16) / 16;
            for (size_t b = m0 / RM; b < m1 / RM; b++)
                pack_f32_rows(X + b * RM * ldx, 0, ldx, M - b * RM, RM, k0, kc, (float *)out + mb * RM * k0 + b * RM * steps * 16);
        }
        return;
    }
    size_t kp = round_up(K, 32);
    uint16_t *row = aligned_alloc(64, kp * sizeof(uint16_t));
    if (!row) abort();
    if (kind == DSK_GEMM_AVX512BF16) {
        size_t mb = round_up(M, RM) / RM;
        for (size_t m = m0; m < m1; m++) {
            if (m < M) round_row(X + m * ldx, K, kp, row);
            else memset(row, 0, kp * sizeof(uint16_t));
            /* row m of block b = m / 4 lands at [k block][b][step][m % 4][32] */
            for (size_t k0 = 0; k0 < K; k0 += KC_BF16) {
                size_t kc = K - k0 < KC_BF16 ? K - k0 : KC_BF16, steps = round_up(kc, 32) / 32;
                uint16_t *o = (uint16_t *)out + mb * RM * k0 + (m / RM) * RM * steps * 32 + (m % RM) * 32;
                for (size_t st = 0; st < steps; st++) memcpy(o + st * RM * 32, row + k0 + st * 32, 64);
            }
        }
        free(row);
        return;
    }
    /* AMX: per 32 rows and 32 columns one 2 KB block holding two B tiles (rows 0-15 and 16-31),
     * each 16 column pairs × 16 rows × 2: element (m, k) at
     * (((m/32)·kp/32 + k/32)·2 + (m%32)/16)·512 + ((k%32)/2)·32 + (m%16)·2 + k%2.
     * Rows past M are zero. */
    for (size_t m = m0; m < m1; m++) {
        if (m < M) round_row(X + m * ldx, K, kp, row);
        else memset(row, 0, kp * sizeof(uint16_t));
        const uint32_t *pairs = (const uint32_t *)row; /* column pairs moved as 32-bit words */
        uint32_t *o = (uint32_t *)out + ((m / 32) * (kp / 32) * 2 + (m % 32) / 16) * 256 + (m % 16);
        for (size_t b = 0; b < kp / 32; b++, o += 512)
            for (size_t p = 0; p < 16; p++) o[p * 16] = pairs[b * 16 + p];
    }
    free(row);
}

#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void dsk_round_bf16_f32(const float *x, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)f32_to_bf16(x[i]) << 16;
        memcpy(out + i, &u, 4);
    }
}

#if defined(__x86_64__) && defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void dsk_round_bf16(const float *x, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = f32_to_bf16(x[i]);
}

void dsk_transpose_rows(const float *src, size_t rows, size_t cols, size_t lds, int bf16, void *dst, size_t ldd) {
    /* 16 source rows at a time, so that each destination row is written 64 bytes at a stretch */
    for (size_t r0 = 0; r0 < rows; r0 += 16) {
        const size_t r1 = r0 + 16 < rows ? r0 + 16 : rows;
        for (size_t c = 0; c < cols; c++) {
            if (bf16) {
                uint16_t *d = (uint16_t *)dst + c * ldd;
                for (size_t r = r0; r < r1; r++) d[r] = f32_to_bf16(src[r * lds + c]);
            } else {
                float *d = (float *)dst + c * ldd;
                for (size_t r = r0; r < r1; r++) d[r] = src[r * lds + c];
            }
        }
    }
}

void dsk_gemm_xwT(const void *xp, size_t M, size_t K, const void *W, int w_is_bf16, size_t n0, size_t n1, float *Y,
                  size_t ldy, int kind) {
    dsk_gemm_xwT_ld(xp, M, K, W, K, w_is_bf16, n0, n1, Y, ldy, kind);
}

void dsk_gemm_xwT_ld(const void *xp, size_t M, size_t K, const void *W, size_t ldw, int w_is_bf16, size_t n0, size_t n1,
                     float *Y, size_t ldy, int kind) {
    if (M == 0 || n1 <= n0) return;
    if (ldw < K) abort(); /* a caller bug: rows overlap */
    /* caller bugs: a kind this CPU lacks, or f32 weights for a bf16 kind */
    if (!dsk_gemm_supported(kind) || (!dsk_gemm_is_f32(kind) && !w_is_bf16)) abort();
    switch (kind) {
    case DSK_GEMM_AMX: gemm_amx(xp, M, K, W, ldw, n0, n1, Y, ldy); break;
    case DSK_GEMM_AVX512BF16: gemm_avx512bf16(xp, M, K, W, ldw, n0, n1, Y, ldy); break;
    case DSK_GEMM_F32_AVX2: gemm_f32(xp, M, K, W, ldw, w_is_bf16, n0, n1, Y, ldy, tile_f32_avx2); break;
    default:
        if (use_bcast(kind, M)) gemm_f32_bcast(xp, M, K, W, ldw, w_is_bf16, n0, n1, Y, ldy);
        else gemm_f32(xp, M, K, W, ldw, w_is_bf16, n0, n1, Y, ldy, tile_f32);
        break;
    }
}
