/* Deterministic single-precision GEMM for convolutions and linear layers.
 *
 * Why not OpenBLAS: with OpenBLAS 0.3.21 (Haswell kernels on this project's
 * machine) we measured that the value of one output element changes with the
 * matrix width (the same column computed in a batch of 1 and of 2..64, in
 * either GEMM orientation) and with the thread count, for the convolution
 * and linear shapes of all three networks. A sample's logits would then
 * depend on which other samples share its batch. Here every element is the
 * same sequential chain of fused multiply-adds over k = 0..K-1 (started from
 * 0), whatever its tile, its position in the batch or the thread computing
 * it: partial tiles go through the same micro-kernel on a padded copy,
 * k-blocking resumes the chain from the stored partial sum (exact), threads
 * split whole tiles, and the narrow kernels (1-4 columns, vectorised over
 * rows instead) build the same chains. The AVX-512, AVX2 and scalar kernels
 * all use fused multiply-add, so they agree bit for bit with nn_gemm_ref.
 *
 * Packed layouts: A (the weights, packed once per model) in panels of MR
 * rows, (K, MR) per panel; B in panels of NN_NR columns, produced one
 * (KC, NN_NR) slice at a time by a packing callback (im2col or a plain
 * matrix), so a convolution never builds its full column matrix and the batch
 * simply widens B. */
#include "nn/nn_internal.h"

#include "cwba/core.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>


#define MR_MAX 12
#define NARROW_MAX 4 /* widest right-hand side handled by the narrow kernels */
#define KC 256                   /* k-block: one A slice stays in L1 */
#define PACK_BUDGET (128 * 1024) /* floats of packed B per thread (512 KB, in L2) */
#define SMALL_WORK (1L << 17)    /* multiply-adds below which one thread is faster */

/* The micro-kernel: c (MR rows, 16 * G columns, stride ldc) = the chains
 * over p < kc of A's packed (kc, MR) slice times B, where the 16 values of
 * row p in column group q (q < G = 1, 2 or 3) are b + off[p] + q * ps:
 * a packed B panel has off[p] = 16 p and ps = kc * 16 (nn_gemm_run), a
 * B read in place its own offsets and ps = 16 (nn_gemm_direct_run). acc = 0
 * starts every chain at 0, else it resumes from c. */
typedef void (*kernel_fn)(int kc, const float *a, const float *b, const int *off, size_t ps,
                          float *c, size_t ldc, int acc);
/* Narrow right-hand side (a batch of one to four columns, e.g. a linear layer
 * on a single image): vectorised over the MR rows of one weight panel
 * instead of over 16 columns of which most would be padding. Each element is
 * still the chain acc = fma(a[i][p], b[p][j], acc) for p = 0..K-1 from 0, so
 * it equals what the main kernel computes for the same element. b is a packed
 * (k, NN_NR) panel; results go to c[i*ldc + j] for i < rows, j < ncols. */
typedef void (*narrow_fn)(int k, const float *a, const float *b, int ncols, float *c, size_t ldc,
                          int rows);
/* The narrow kernel over npan consecutive panels of packed A holding mrows rows. */
typedef void (*narrow_range_fn)(int k, const float *a, int npan, int mrows, const float *b,
                                int ncols, float *c, size_t ldc);

typedef struct isa {
    const char *name;
    int mr;
    kernel_fn kernel; /* 1, 2 and 3 column groups: two or three at once let */
    kernel_fn kernel2; /* the A values loaded for a step serve more FMAs; */
    kernel_fn kernel3; /* NULL where the ISA has none */
    narrow_range_fn narrow;
} isa;

/* ---- scalar (any CPU; fmaf is correctly rounded, so it matches the SIMD paths) */
#define MR_SCALAR 4

static void kernel_scalar(int kc, const float *a, const float *b, const int *off, size_t ps,
                          float *c, size_t ldc, int acc)
{
    (void)ps; /* one column group */
    float r[MR_SCALAR][NN_NR];
    for (int i = 0; i < MR_SCALAR; i++)
        for (int j = 0; j < NN_NR; j++) r[i][j] = acc ? c[i * ldc + j] : 0.0f;
    for (int p = 0; p < kc; p++) {
        const float *bp = b + off[p];
        for (int i = 0; i < MR_SCALAR; i++)
            for (int j = 0; j < NN_NR; j++) r[i][j] = fmaf(a[i], bp[j], r[i][j]);
        a += MR_SCALAR;
    }
    for (int i = 0; i < MR_SCALAR; i++)
        for (int j = 0; j < NN_NR; j++) c[i * ldc + j] = r[i][j];
}

static void narrow_scalar(int k, const float *a, const float *b, int ncols, float *c, size_t ldc,
                          int rows)
{
    float acc[NARROW_MAX][MR_SCALAR] = {{0}};
    for (int p = 0; p < k; p++)
        for (int j = 0; j < ncols; j++)
            for (int i = 0; i < MR_SCALAR; i++)
                acc[j][i] = fmaf(a[(size_t)p * MR_SCALAR + i], b[(size_t)p * NN_NR + j], acc[j][i]);
    for (int j = 0; j < ncols; j++)
        for (int i = 0; i < rows; i++) c[(size_t)i * ldc + j] = acc[j][i];
}

#ifdef NN_X86
/* ---- AVX2 + FMA: 6 rows x 2 ymm */
#define MR_AVX2 6
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *a,
                                                             const float *b, const int *off,
                                                             size_t ps, float *c, size_t ldc,
                                                             int acc)
{
    (void)ps; /* one column group */
    __m256 r[MR_AVX2][2];
    for (int i = 0; i < MR_AVX2; i++) {
        r[i][0] = acc ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
        r[i][1] = acc ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
    }
    for (int p = 0; p < kc; p++) {
        const float *bp = b + off[p];
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        for (int i = 0; i < MR_AVX2; i++) {
            __m256 av = _mm256_broadcast_ss(a + i);
            r[i][0] = _mm256_fmadd_ps(av, b0, r[i][0]);
            r[i][1] = _mm256_fmadd_ps(av, b1, r[i][1]);
        }
        a += MR_AVX2;
    }
    for (int i = 0; i < MR_AVX2; i++) {
        _mm256_storeu_ps(c + i * ldc, r[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, r[i][1]);
    }
}

__attribute__((target("avx2,fma"))) static void narrow_avx2(int k, const float *a, const float *b,
                                                             int ncols, float *c, size_t ldc,
                                                             int rows)
{
    const __m256i mask = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0); /* MR_AVX2 lanes */
    __m256 acc[NARROW_MAX];
    for (int j = 0; j < NARROW_MAX; j++) acc[j] = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m256 av = _mm256_maskload_ps(a + (size_t)p * MR_AVX2, mask);
        for (int j = 0; j < ncols; j++)
            acc[j] = _mm256_fmadd_ps(av, _mm256_set1_ps(b[(size_t)p * NN_NR + j]), acc[j]);
    }
    float tmp[8];
    for (int j = 0; j < ncols; j++) {
        _mm256_storeu_ps(tmp, acc[j]);
        for (int i = 0; i < rows; i++) c[(size_t)i * ldc + j] = tmp[i];
    }
}

/* ---- AVX-512: 8 rows x 1, 2 or 3 zmm (16, 32 or 48 columns: one to three
 * adjacent packed panels). 8 rows divide every channel count of the three
 * networks, so no row panel is padded; three panels give 24 accumulators
 * and 8 broadcasts + 3 loads per 24 FMAs. */
#define MR_AVX512 8
#define AVX512_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define K1_DECL(i) __m512 c##i = acc ? _mm512_loadu_ps(c + (i) * ldc) : _mm512_setzero_ps();
#define K1_FMA(i) c##i = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0v, c##i);
#define K1_STORE(i) _mm512_storeu_ps(c + (i) * ldc, c##i);
#define K2_DECL(i)                                                                                 \
    __m512 c##i = acc ? _mm512_loadu_ps(c + (i) * ldc) : _mm512_setzero_ps();                      \
    __m512 d##i = acc ? _mm512_loadu_ps(c + (i) * ldc + 16) : _mm512_setzero_ps();
#define K2_FMA(i)                                                                                  \
    {                                                                                              \
        __m512 av = _mm512_set1_ps(a[i]);                                                          \
        c##i = _mm512_fmadd_ps(av, b0v, c##i);                                                     \
        d##i = _mm512_fmadd_ps(av, b1v, d##i);                                                     \
    }
#define K2_STORE(i)                                                                                \
    _mm512_storeu_ps(c + (i) * ldc, c##i);                                                         \
    _mm512_storeu_ps(c + (i) * ldc + 16, d##i);
#define K3_DECL(i)                                                                                 \
    __m512 c##i = acc ? _mm512_loadu_ps(c + (i) * ldc) : _mm512_setzero_ps();                      \
    __m512 d##i = acc ? _mm512_loadu_ps(c + (i) * ldc + 16) : _mm512_setzero_ps();                 \
    __m512 e##i = acc ? _mm512_loadu_ps(c + (i) * ldc + 32) : _mm512_setzero_ps();
#define K3_FMA(i)                                                                                  \
    {                                                                                              \
        __m512 av = _mm512_set1_ps(a[i]);                                                          \
        c##i = _mm512_fmadd_ps(av, b0v, c##i);                                                     \
        d##i = _mm512_fmadd_ps(av, b1v, d##i);                                                     \
        e##i = _mm512_fmadd_ps(av, b2v, e##i);                                                     \
    }
#define K3_STORE(i)                                                                                \
    _mm512_storeu_ps(c + (i) * ldc, c##i);                                                         \
    _mm512_storeu_ps(c + (i) * ldc + 16, d##i);                                                    \
    _mm512_storeu_ps(c + (i) * ldc + 32, e##i);
__attribute__((target("avx512f"))) static void kernel_avx512(int kc, const float *a,
                                                              const float *b, const int *off,
                                                              size_t ps, float *c, size_t ldc,
                                                              int acc)
{
    (void)ps; /* one column group */
    AVX512_ROWS(K1_DECL)
    for (int p = 0; p < kc; p++) {
        __m512 b0v = _mm512_loadu_ps(b + off[p]);
        AVX512_ROWS(K1_FMA)
        a += MR_AVX512;
    }
    AVX512_ROWS(K1_STORE)
}

__attribute__((target("avx512f"))) static void kernel2_avx512(int kc, const float *a,
                                                               const float *b, const int *off,
                                                               size_t ps, float *c, size_t ldc,
                                                               int acc)
{
    AVX512_ROWS(K2_DECL)
    for (int p = 0; p < kc; p++) {
        const float *bp = b + off[p];
        __m512 b0v = _mm512_loadu_ps(bp), b1v = _mm512_loadu_ps(bp + ps);
        AVX512_ROWS(K2_FMA)
        a += MR_AVX512;
    }
    AVX512_ROWS(K2_STORE)
}

__attribute__((target("avx512f"))) static void kernel3_avx512(int kc, const float *a,
                                                               const float *b, const int *off,
                                                               size_t ps, float *c, size_t ldc,
                                                               int acc)
{
    AVX512_ROWS(K3_DECL)
    for (int p = 0; p < kc; p++) {
        const float *bp = b + off[p];
        __m512 b0v = _mm512_loadu_ps(bp), b1v = _mm512_loadu_ps(bp + ps);
        __m512 b2v = _mm512_loadu_ps(bp + 2 * ps);
        AVX512_ROWS(K3_FMA)
        a += MR_AVX512;
    }
    AVX512_ROWS(K3_STORE)
}

__attribute__((target("avx512f"))) static void narrow_avx512(int k, const float *a, const float *b,
                                                              int ncols, float *c, size_t ldc,
                                                              int rows)
{
    const __mmask16 mask = (__mmask16)((1u << MR_AVX512) - 1);
    __m512 acc[NARROW_MAX];
    for (int j = 0; j < NARROW_MAX; j++) acc[j] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 av = _mm512_maskz_loadu_ps(mask, a + (size_t)p * MR_AVX512);
        for (int j = 0; j < ncols; j++)
            acc[j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[(size_t)p * NN_NR + j]), acc[j]);
    }
    float tmp[16];
    for (int j = 0; j < ncols; j++) {
        _mm512_storeu_ps(tmp, acc[j]);
        for (int i = 0; i < rows; i++) c[(size_t)i * ldc + j] = tmp[i];
    }
}
#endif

#define NARROW_RANGE(name, fn, mr, attr)                                                        \
    attr static void name(int k, const float *a, int npan, int mrows, const float *b, int ncols,  \
                          float *c, size_t ldc)                                                   \
    {                                                                                             \
        for (int q = 0; q < npan; q++) {                                                          \
            int rows = mrows - q * (mr) < (mr) ? mrows - q * (mr) : (mr);                         \
            fn(k, a + (size_t)q * (mr) * k, b, ncols, c + (size_t)q * (mr) * ldc, ldc, rows);     \
        }                                                                                         \
    }
NARROW_RANGE(narrow_range_scalar, narrow_scalar, MR_SCALAR, )
#ifdef NN_X86
NARROW_RANGE(narrow_range_avx2_panels, narrow_avx2, MR_AVX2, __attribute__((target("avx2,fma"))))

/* One column (a linear layer on one image): the chains of eight 6-row
 * panels in eight accumulators, so that eight FMAs are in flight where one
 * panel at a time waits on each FMA's latency. Lanes 6 and 7 of a load
 * read the next k's first two rows (the masked load of the last k stays
 * inside the panel) and are dropped. */
__attribute__((target("avx2,fma"))) static void narrow_range_avx2(int k, const float *a, int npan,
                                                                  int mrows, const float *b,
                                                                  int ncols, float *c, size_t ldc)
{
    if (ncols != 1 || k < 1) {
        narrow_range_avx2_panels(k, a, npan, mrows, b, ncols, c, ldc);
        return;
    }
    const size_t as = (size_t)MR_AVX2 * k;
    const __m256i mask = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    for (int q = 0; q < npan; q += 8) {
        int nq = npan - q < 8 ? npan - q : 8;
        __m256 acc[8];
        for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
        const float *a0 = a + (size_t)q * as;
        if (nq == 8) {
            for (int p = 0; p < k - 1; p++) {
                __m256 bv = _mm256_set1_ps(b[(size_t)p * NN_NR]);
                const float *ap = a0 + (size_t)p * MR_AVX2;
                for (int u = 0; u < 8; u++)
                    acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + u * as), bv, acc[u]);
            }
        } else {
            for (int p = 0; p < k - 1; p++) {
                __m256 bv = _mm256_set1_ps(b[(size_t)p * NN_NR]);
                const float *ap = a0 + (size_t)p * MR_AVX2;
                for (int u = 0; u < nq; u++)
                    acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + u * as), bv, acc[u]);
            }
        }
        {
            __m256 bv = _mm256_set1_ps(b[(size_t)(k - 1) * NN_NR]);
            const float *ap = a0 + (size_t)(k - 1) * MR_AVX2;
            for (int u = 0; u < nq; u++)
                acc[u] = _mm256_fmadd_ps(_mm256_maskload_ps(ap + u * as, mask), bv, acc[u]);
        }
        float tmp[8];
        for (int u = 0; u < nq; u++) {
            int row0 = (q + u) * MR_AVX2;
            int rows = mrows - row0 < MR_AVX2 ? mrows - row0 : MR_AVX2;
            _mm256_storeu_ps(tmp, acc[u]);
            for (int i = 0; i < rows; i++) c[(size_t)(row0 + i) * ldc] = tmp[i];
        }
    }
}

/* AVX-512: eight panels at a time, two 8-row panels per zmm (16 independent
 * chains, four columns each; columns beyond ncols are zero padding of b,
 * computed and dropped) so the FMA latency is hidden even for one image. */
/* One column (a linear layer on one image): the chains of eight 8-row
 * panels in eight ymm accumulators, one FMA per 8 weights loaded — the
 * paired-zmm path above would spend four FMAs and an insert on the same
 * weights (three of the four columns being padding). Streams the weights
 * at memory speed rather than FMA speed. */
__attribute__((target("avx512f,avx2,fma"))) static void narrow1_avx512(int k, const float *a,
                                                                       int npan, int mrows,
                                                                       const float *b, float *c,
                                                                       size_t ldc)
{
    const size_t as = (size_t)MR_AVX512 * k;
    for (int q = 0; q < npan; q += 8) {
        int nq = npan - q < 8 ? npan - q : 8;
        __m256 acc[8];
        for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
        const float *a0 = a + (size_t)q * as;
        if (nq == 8) {
            for (int p = 0; p < k; p++) {
                __m256 bv = _mm256_set1_ps(b[(size_t)p * NN_NR]);
                const float *ap = a0 + (size_t)p * MR_AVX512;
                for (int u = 0; u < 8; u++)
                    acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + u * as), bv, acc[u]);
            }
        } else {
            for (int p = 0; p < k; p++) {
                __m256 bv = _mm256_set1_ps(b[(size_t)p * NN_NR]);
                const float *ap = a0 + (size_t)p * MR_AVX512;
                for (int u = 0; u < nq; u++)
                    acc[u] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + u * as), bv, acc[u]);
            }
        }
        float tmp[8];
        for (int u = 0; u < nq; u++) {
            int row0 = (q + u) * MR_AVX512;
            int rows = mrows - row0 < MR_AVX512 ? mrows - row0 : MR_AVX512;
            _mm256_storeu_ps(tmp, acc[u]);
            for (int i = 0; i < rows; i++) c[(size_t)(row0 + i) * ldc] = tmp[i];
        }
    }
}

__attribute__((target("avx512f"))) static void narrow_range_avx512(int k, const float *a, int npan,
                                                                    int mrows, const float *b,
                                                                    int ncols, float *c, size_t ldc)
{
    const size_t as = (size_t)MR_AVX512 * k;
    if (ncols == 1) {
        narrow1_avx512(k, a, npan, mrows, b, c, ldc);
        return;
    }
    int q = 0;
    for (; q + 8 <= npan; q += 8) {
        __m512 acc[4][4];
        for (int u = 0; u < 4; u++)
            for (int j = 0; j < 4; j++) acc[u][j] = _mm512_setzero_ps();
        const float *a0 = a + (size_t)q * as;
        for (int p = 0; p < k; p++) {
            const float *bp = b + (size_t)p * NN_NR;
            __m512 b0 = _mm512_set1_ps(bp[0]), b1 = _mm512_set1_ps(bp[1]);
            __m512 b2 = _mm512_set1_ps(bp[2]), b3 = _mm512_set1_ps(bp[3]);
            for (int u = 0; u < 4; u++) {
                const float *ap = a0 + 2 * u * as + (size_t)p * MR_AVX512;
                /* (insertf64x4 on the bits: AVX512F only, unlike insertf32x8) */
                __m512 av = _mm512_castpd_ps(_mm512_insertf64x4(
                    _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(ap))),
                    _mm256_castps_pd(_mm256_loadu_ps(ap + as)), 1));
                acc[u][0] = _mm512_fmadd_ps(av, b0, acc[u][0]);
                acc[u][1] = _mm512_fmadd_ps(av, b1, acc[u][1]);
                acc[u][2] = _mm512_fmadd_ps(av, b2, acc[u][2]);
                acc[u][3] = _mm512_fmadd_ps(av, b3, acc[u][3]);
            }
        }
        float tmp[16];
        for (int u = 0; u < 4; u++) {
            int row0 = (q + 2 * u) * MR_AVX512;
            int rows = mrows - row0 < 2 * MR_AVX512 ? mrows - row0 : 2 * MR_AVX512;
            for (int j = 0; j < ncols; j++) {
                _mm512_storeu_ps(tmp, acc[u][j]);
                for (int i = 0; i < rows; i++) c[(size_t)(row0 + i) * ldc + j] = tmp[i];
            }
        }
    }
    for (; q < npan; q++) {
        int row0 = q * MR_AVX512;
        int rows = mrows - row0 < MR_AVX512 ? mrows - row0 : MR_AVX512;
        narrow_avx512(k, a + (size_t)q * as, b, ncols, c + (size_t)row0 * ldc, ldc, rows);
    }
}
#endif

#ifdef NN_NEON
/* ---- NEON: 6 rows x 4 q registers (16 columns): 24 accumulators, the 4
 * B vectors of a step and the 6 A values (one q, one d register) of the
 * 32 vector registers; each FMA takes its A value from a lane. */
#define MR_NEON 6
static void kernel_neon(int kc, const float *a, const float *b, const int *off, size_t ps, float *c,
                        size_t ldc, int acc)
{
    (void)ps; /* one column group */
    float32x4_t r[MR_NEON][4];
    for (int i = 0; i < MR_NEON; i++)
        for (int q = 0; q < 4; q++) r[i][q] = acc ? vld1q_f32(c + i * ldc + 4 * q) : vdupq_n_f32(0.0f);
    for (int p = 0; p < kc; p++) {
        const float *bp = b + off[p];
        float32x4_t b0 = vld1q_f32(bp), b1 = vld1q_f32(bp + 4);
        float32x4_t b2 = vld1q_f32(bp + 8), b3 = vld1q_f32(bp + 12);
        float32x4_t a03 = vld1q_f32(a);
        float32x2_t a45 = vld1_f32(a + 4);
#define NEON_ROW_Q(i, av, lane)                                                                    \
    r[i][0] = vfmaq_laneq_f32(r[i][0], b0, av, lane);                                              \
    r[i][1] = vfmaq_laneq_f32(r[i][1], b1, av, lane);                                              \
    r[i][2] = vfmaq_laneq_f32(r[i][2], b2, av, lane);                                              \
    r[i][3] = vfmaq_laneq_f32(r[i][3], b3, av, lane);
#define NEON_ROW_D(i, av, lane)                                                                    \
    r[i][0] = vfmaq_lane_f32(r[i][0], b0, av, lane);                                               \
    r[i][1] = vfmaq_lane_f32(r[i][1], b1, av, lane);                                               \
    r[i][2] = vfmaq_lane_f32(r[i][2], b2, av, lane);                                               \
    r[i][3] = vfmaq_lane_f32(r[i][3], b3, av, lane);
        NEON_ROW_Q(0, a03, 0)
        NEON_ROW_Q(1, a03, 1)
        NEON_ROW_Q(2, a03, 2)
        NEON_ROW_Q(3, a03, 3)
        NEON_ROW_D(4, a45, 0)
        NEON_ROW_D(5, a45, 1)
#undef NEON_ROW_Q
#undef NEON_ROW_D
        a += MR_NEON;
    }
    for (int i = 0; i < MR_NEON; i++)
        for (int q = 0; q < 4; q++) vst1q_f32(c + i * ldc + 4 * q, r[i][q]);
}

/* Narrow: the 6 rows of a panel in a q and a d register per column. */
static void narrow_neon(int k, const float *a, const float *b, int ncols, float *c, size_t ldc,
                        int rows)
{
    float32x4_t lo[NARROW_MAX];
    float32x2_t hi[NARROW_MAX];
    for (int j = 0; j < NARROW_MAX; j++) lo[j] = vdupq_n_f32(0.0f), hi[j] = vdup_n_f32(0.0f);
    for (int p = 0; p < k; p++) {
        const float *ap = a + (size_t)p * MR_NEON, *bp = b + (size_t)p * NN_NR;
        float32x4_t a03 = vld1q_f32(ap);
        float32x2_t a45 = vld1_f32(ap + 4);
        for (int j = 0; j < ncols; j++) {
            lo[j] = vfmaq_n_f32(lo[j], a03, bp[j]);
            hi[j] = vfma_n_f32(hi[j], a45, bp[j]);
        }
    }
    float tmp[MR_NEON];
    for (int j = 0; j < ncols; j++) {
        vst1q_f32(tmp, lo[j]);
        vst1_f32(tmp + 4, hi[j]);
        for (int i = 0; i < rows; i++) c[(size_t)i * ldc + j] = tmp[i];
    }
}
NARROW_RANGE(narrow_range_neon, narrow_neon, MR_NEON, )
#endif

static const isa ISA_SCALAR = {"scalar", MR_SCALAR, kernel_scalar, NULL, NULL,
                               narrow_range_scalar};
#ifdef NN_X86
static const isa ISA_AVX2 = {"avx2", MR_AVX2, kernel_avx2, NULL, NULL, narrow_range_avx2};
static const isa ISA_AVX512 = {"avx512",       MR_AVX512,      kernel_avx512,
                               kernel2_avx512, kernel3_avx512, narrow_range_avx512};
#endif
#ifdef NN_NEON
static const isa ISA_NEON = {"neon", MR_NEON, kernel_neon, NULL, NULL, narrow_range_neon};
#endif

/* The kernels follow the library's ISA (cwba_isa_current: detected at run
 * time, capped by CWBA_MAX_ISA), so that a portable build still gets the
 * vector kernels; every path gives the same bits, so the choice only
 * changes speed. */
static pthread_once_t g_off_once = PTHREAD_ONCE_INIT;

/* Row offsets of a packed (KC, NN_NR) B panel: off[p] = NN_NR * p. */
static int g_packed_off[KC];

static void off_init(void)
{
    for (int p = 0; p < KC; p++) g_packed_off[p] = NN_NR * p;
}

static const isa *cur_isa(void)
{
    pthread_once(&g_off_once, off_init);
    switch (cwba_isa_current()) {
#ifdef NN_X86
    case CWBA_ISA_AVX512: return &ISA_AVX512;
    case CWBA_ISA_AVX2: return &ISA_AVX2;
#endif
#ifdef NN_NEON
    case CWBA_ISA_NEON: return &ISA_NEON;
#endif
    default: return &ISA_SCALAR;
    }
}

int nn_gemm_mr(void) { return cur_isa()->mr; }
const char *nn_gemm_isa(void) { return cur_isa()->name; }
int nn_isa_avx512(void)
{
#ifdef NN_X86
    return cur_isa() == &ISA_AVX512;
#else
    return 0;
#endif
}

/* Every ISA runs the blocked layout: its kernels beat the (C, N, H, W)
 * paths with AVX-512 and AVX2 (docs/performance.md), and only there can
 * Winograd run, so one layout everywhere gives each arithmetic the same
 * bits on every ISA. */
static int g_blocked_off; /* tests: nn_set_blocked(0) */

int nn_isa_blocked(void) { return !g_blocked_off; }
void nn_set_blocked(int on) { g_blocked_off = !on; }

int nn_gemm_set_isa(const char *name)
{
    cwba_isa x;
    if (cwba_isa_parse(name, &x, NULL) != CWBA_OK) return 0;
    return cwba_isa_set(x);
}

float *nn_alloc_floats(size_t n)
{
    size_t bytes;
    if (n == 0) n = 1;
    if (n > SIZE_MAX / sizeof(float)) return NULL;
    bytes = n * sizeof(float);
    if (bytes < ((size_t)4 << 20)) return malloc(bytes);
    /* Large weight panels and workspaces: 2 MB alignment and transparent huge
     * pages, because first-touch page faults cost more than packing here. */
    size_t align = (size_t)2 << 20;
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return p;
}

size_t nn_gemm_packed_a_size(int m, int k)
{
    const int MR = cur_isa()->mr;
    size_t panels = ((size_t)m + MR - 1) / MR;
    return panels * MR * (size_t)k;
}

void nn_gemm_pack_a(int m, int k, const float *a, size_t lda, float *dst)
{
    /* Blocks of 64 columns: rows are read sequentially and the transposed
     * block being written stays in L1 (the weights of VGG16's first linear
     * layer are 400 MB). */
    const int MR = cur_isa()->mr;
    for (int i0 = 0; i0 < m; i0 += MR) {
        float *panel = dst + (size_t)i0 * k;
        int rows = m - i0 < MR ? m - i0 : MR;
        for (int p0 = 0; p0 < k; p0 += 64) {
            int p1 = k - p0 < 64 ? k : p0 + 64;
            for (int i = 0; i < MR; i++) {
                if (i >= rows) {
                    for (int p = p0; p < p1; p++) panel[(size_t)p * MR + i] = 0.0f;
                    continue;
                }
                const float *row = a + (size_t)(i0 + i) * lda;
                for (int p = p0; p < p1; p++) panel[(size_t)p * MR + i] = row[p];
            }
        }
    }
}

size_t nn_gemm_scratch_size(int k)
{
    /* Main path: PACK_BUDGET floats of (KC, NN_NR) slices; narrow path: one
     * whole (k, NN_NR) panel. */
    size_t narrow = (size_t)(k > 0 ? k : 1) * NN_NR;
    return narrow > PACK_BUDGET ? narrow : PACK_BUDGET;
}

void nn_epilogue_row(const nn_epilogue *ep, int i, const float *src, float *dst, const float *res,
                     long n)
{
    float bias = ep->bias ? ep->bias[i] : 0.0f;
    float al = ep->alpha ? ep->alpha[i] : 1.0f, be = ep->beta ? ep->beta[i] : 0.0f;
    for (long j = 0; j < n; j++) {
        float v = src[j];
        if (ep->bias) v = v + bias;
        if (ep->alpha) v = fmaf(v, al, be);
        if (res) v = v + res[j];
        if (ep->relu) v = nn_relu1(v);
        dst[j] = v;
    }
}

void nn_epilogue_apply(const nn_epilogue *ep, float *c, size_t ldc, int r0, int r1, long c0, long c1)
{
    if (!ep->bias && !ep->alpha && !ep->res && !ep->relu) return;
    for (int i = r0; i < r1; i++) {
        float *row = c + (size_t)i * ldc + c0;
        nn_epilogue_row(ep, i, row, row, ep->res ? ep->res + (size_t)i * ldc + c0 : NULL, c1 - c0);
    }
}

typedef struct run_ctx {
    const isa *is;
    const nn_gemm *g;
    float *const *scratch;
    int split_m; /* threads share out row panels (else column panels) */
    int npanels, nmb;
} run_ctx;

static void run_task(void *vctx, int tid, int nt)
{
    const run_ctx *rc = vctx;
    const nn_gemm *g = rc->g;
    const int MR = rc->is->mr;
    const kernel_fn kernel = rc->is->kernel;
    const kernel_fn kernel2 = rc->is->kernel2;
    const kernel_fn kernel3 = rc->is->kernel3;
    const int *off = g_packed_off;
    int p0 = 0, p1 = rc->npanels, m0 = 0, m1 = rc->nmb;
    if (rc->split_m) {
        m0 = (int)((long)rc->nmb * tid / nt);
        m1 = (int)((long)rc->nmb * (tid + 1) / nt);
    } else {
        p0 = (int)((long)rc->npanels * tid / nt);
        p1 = (int)((long)rc->npanels * (tid + 1) / nt);
    }
    if (p0 >= p1 || m0 >= m1) return;
    float *buf = rc->scratch[tid];
    if (g->n <= NARROW_MAX) {
        g->pack_b(g->pack_ctx, 0, 1, 0, g->k, buf);
        int r1 = m1 * MR < g->m ? m1 * MR : g->m;
        rc->is->narrow(g->k, g->apack + (size_t)m0 * MR * g->k, m1 - m0, r1 - m0 * MR, buf, g->n,
                       g->c + (size_t)m0 * MR * g->ldc, g->ldc);
        nn_epilogue_apply(&g->ep, g->c, g->ldc, m0 * MR, r1, 0, g->n);
        return;
    }
    /* Loop order: a chunk of column panels, then k-blocks; per k-block the
     * chunk's (KC, NN_NR) slices are packed (in L2) and every MR-row slice of
     * A (in L1) sweeps over them, so A is read once per chunk. */
    const int chunk = PACK_BUDGET / (KC * NN_NR);
    float tile[MR_MAX * NN_NR];
    /* A last panel of at most NARROW_MAX columns (49 = 3 x 16 + 1 on a 7x7
     * plane, 196 = 12 x 16 + 4 on 14x14) goes through the narrow kernel
     * (same chains) instead of a 16-column tile that is mostly padding. */
    const int tail_cols = g->n - (rc->npanels - 1) * NN_NR;
    const int tail = p1 == rc->npanels && rc->npanels > 1 && tail_cols <= NARROW_MAX;
    if (tail) p1--;
    for (int pc = p0; pc < p1; pc += chunk) {
        int npc = p1 - pc < chunk ? p1 - pc : chunk;
        for (int k0 = 0; k0 < g->k; k0 += KC) {
            int kc = g->k - k0 < KC ? g->k - k0 : KC;
            g->pack_b(g->pack_ctx, pc, npc, k0, kc, buf);
            for (int mb = m0; mb < m1; mb++) {
                const float *a = g->apack + (size_t)mb * MR * g->k + (size_t)k0 * MR;
                int row0 = mb * MR;
                int rows = g->m - row0 < MR ? g->m - row0 : MR;
                for (int pi = 0; pi < npc; pi++) {
                    const float *b = buf + (size_t)pi * kc * NN_NR;
                    int col0 = (pc + pi) * NN_NR;
                    int cols = g->n - col0 < NN_NR ? g->n - col0 : NN_NR;
                    float *c = g->c + (size_t)row0 * g->ldc + col0;
                    if (kernel3 && rows == MR && pi + 2 < npc && g->n - col0 >= 3 * NN_NR) {
                        const size_t ps = (size_t)kc * NN_NR;
                        kernel3(kc, a, b, off, ps, c, g->ldc, k0 > 0);
                        pi += 2;
                        continue;
                    }
                    if (kernel2 && rows == MR && pi + 1 < npc && g->n - col0 >= 2 * NN_NR) {
                        kernel2(kc, a, b, off, (size_t)kc * NN_NR, c, g->ldc, k0 > 0);
                        pi++;
                        continue;
                    }
                    if (rows == MR && cols == NN_NR) {
                        kernel(kc, a, b, off, 0, c, g->ldc, k0 > 0);
                        continue;
                    }
                    /* Edge tile: same kernel on a padded copy, so these
                     * elements get exactly the arithmetic of the others. */
                    memset(tile, 0, (size_t)MR * NN_NR * sizeof(float));
                    if (k0 > 0)
                        for (int i = 0; i < rows; i++)
                            memcpy(tile + i * NN_NR, c + (size_t)i * g->ldc,
                                   (size_t)cols * sizeof(float));
                    kernel(kc, a, b, off, 0, tile, NN_NR, k0 > 0);
                    for (int i = 0; i < rows; i++)
                        memcpy(c + (size_t)i * g->ldc, tile + i * NN_NR, (size_t)cols * sizeof(float));
                }
            }
        }
        int r1 = m1 * MR < g->m ? m1 * MR : g->m;
        int c1 = (pc + npc) * NN_NR < g->n ? (pc + npc) * NN_NR : g->n;
        nn_epilogue_apply(&g->ep, g->c, g->ldc, m0 * MR, r1, pc * NN_NR, c1);
    }
    if (tail) {
        const int col0 = (rc->npanels - 1) * NN_NR;
        int r1 = m1 * MR < g->m ? m1 * MR : g->m;
        g->pack_b(g->pack_ctx, rc->npanels - 1, 1, 0, g->k, buf);
        rc->is->narrow(g->k, g->apack + (size_t)m0 * MR * g->k, m1 - m0, r1 - m0 * MR, buf,
                       tail_cols, g->c + (size_t)m0 * MR * g->ldc + col0, g->ldc);
        nn_epilogue_apply(&g->ep, g->c, g->ldc, m0 * MR, r1, col0, g->n);
    }
}

void nn_gemm_run(nn_pool *pool, const nn_gemm *g, float *const *scratch)
{
    if (g->m <= 0 || g->n <= 0) return;
    run_ctx rc = {.is = cur_isa(), .g = g, .scratch = scratch};
    rc.npanels = (g->n + NN_NR - 1) / NN_NR;
    rc.nmb = (g->m + rc.is->mr - 1) / rc.is->mr;
    int nt = nn_pool_size(pool);
    long work = (long)g->m * g->n * (g->k > 0 ? g->k : 1);
    if (nt == 1 || work < SMALL_WORK) {
        run_task(&rc, 0, 1);
        return;
    }
    /* Wide matrices split by columns (each thread packs only its own panels);
     * narrower ones by weight rows: up to 16 column panels per thread, the
     * whole-panel granularity of a column split leaves threads unbalanced
     * (13 panels of a 14x14 plane: 6 against 7, the 7th partly padding),
     * while a row split is even (channel counts are multiples of 8) and only
     * repeats the cheap packing of B. Measured on 2 threads (threshold 2 -> 16
     * panels per thread): ResNet18 224 batch 1 23.0 -> 18.7 ms, its
     * 256x14x14 probe at batch 1 8.4 -> 5.0 ms, 256x4x4 probes at batch 64
     * 15.9 -> 11.2 ms; results are identical (the split never changes a chain). */
    rc.split_m = rc.npanels < 16 * nt && rc.nmb >= 2 * nt;
    nn_pool_run(pool, run_task, &rc);
}

void nn_gemm_epilogue_only(const nn_gemm *g)
{
    nn_epilogue_apply(&g->ep, g->c, g->ldc, 0, g->m, 0, g->n);
}

/* ------------------------------------------------------------ direct B */

/* Column panels per chunk of nn_gemm_direct_run: about as many as the
 * packed path holds in PACK_BUDGET (32), so that A is streamed as often,
 * and a multiple of 3 so that whole chunks go through the 3-panel kernel. */
#define DIRECT_CHUNK 33

typedef struct direct_ctx {
    const isa *is;
    const nn_gemm_direct *g;
    float *const *scratch;
    int split_m;
    int npanels, nmb;
} direct_ctx;

static void direct_task(void *vctx, int tid, int nt)
{
    const direct_ctx *rc = vctx;
    const nn_gemm_direct *g = rc->g;
    const isa *is = rc->is;
    const int MR = is->mr;
    int p0 = 0, p1 = rc->npanels, m0 = 0, m1 = rc->nmb;
    if (rc->split_m) {
        m0 = (int)((long)rc->nmb * tid / nt);
        m1 = (int)((long)rc->nmb * (tid + 1) / nt);
    } else {
        p0 = (int)((long)rc->npanels * tid / nt);
        p1 = (int)((long)rc->npanels * (tid + 1) / nt);
    }
    if (p0 >= p1 || m0 >= m1) return;
    /* The thread's rows x a chunk of column panels accumulate in its scratch
     * (whole tiles: A is zero-padded to MR rows and B readable up to the
     * panel boundary), then go to the caller's emit. */
    const int chunk = DIRECT_CHUNK;
    const size_t ldt = (size_t)chunk * NN_NR;
    float *tile = rc->scratch[tid];
    for (int pc = p0; pc < p1; pc += chunk) {
        int npc = p1 - pc < chunk ? p1 - pc : chunk;
        for (int k0 = 0; k0 < g->k; k0 += KC) {
            int kc = g->k - k0 < KC ? g->k - k0 : KC;
            const int *off = g->off + k0;
            for (int mb = m0; mb < m1; mb++) {
                const float *a = g->apack + (size_t)mb * MR * g->k + (size_t)k0 * MR;
                float *trow = tile + (size_t)(mb - m0) * MR * ldt;
                for (int pi = 0; pi < npc; pi++) {
                    const float *b = g->b + (size_t)(pc + pi) * NN_NR;
                    float *c = trow + (size_t)pi * NN_NR;
                    if (is->kernel3 && pi + 2 < npc) {
                        is->kernel3(kc, a, b, off, NN_NR, c, ldt, k0 > 0);
                        pi += 2;
                    } else if (is->kernel2 && pi + 1 < npc) {
                        is->kernel2(kc, a, b, off, NN_NR, c, ldt, k0 > 0);
                        pi++;
                    } else {
                        is->kernel(kc, a, b, off, NN_NR, c, ldt, k0 > 0);
                    }
                }
            }
        }
        int r1 = m1 * MR < g->m ? m1 * MR : g->m;
        long c1 = (long)(pc + npc) * NN_NR < g->n ? (long)(pc + npc) * NN_NR : g->n;
        g->emit(g->emit_ctx, tile, ldt, m0 * MR, r1, (long)pc * NN_NR, c1);
    }
}

size_t nn_gemm_direct_scratch_size(int m)
{
    size_t mr = (size_t)cur_isa()->mr;
    return (((size_t)(m > 0 ? m : 1) + mr - 1) / mr * mr) * DIRECT_CHUNK * NN_NR;
}

void nn_gemm_direct_run(nn_pool *pool, const nn_gemm_direct *g, float *const *scratch)
{
    if (g->m <= 0 || g->n <= 0) return;
    direct_ctx rc = {.is = cur_isa(), .g = g, .scratch = scratch};
    rc.npanels = (int)((g->n + NN_NR - 1) / NN_NR);
    rc.nmb = (g->m + rc.is->mr - 1) / rc.is->mr;
    int nt = nn_pool_size(pool);
    double work = (double)g->m * (double)g->n * (g->k > 0 ? g->k : 1);
    if (nt == 1 || work < SMALL_WORK) {
        direct_task(&rc, 0, 1);
        return;
    }
    /* As nn_gemm_run: columns when there are enough panels, else rows. */
    rc.split_m = rc.npanels < 16 * nt && rc.nmb >= 2 * nt;
    nn_pool_run(pool, direct_task, &rc);
}

/* ------------------------------------------------- direct B, channels on lanes */

/* nn_gemm_direct_t_run: the same product with C's rows (output channels) on
 * the vector lanes, 64 at a time, and the columns (output positions) taken
 * one by one from a list, so that only kept positions are computed. A tile
 * is T_P positions x 64 rows: per k, four loads of the packed weights and
 * one broadcast per position feed 4 * T_P fused multiply-adds. Each element
 * is still the chain over p = 0..K-1 from 0 (an FMA's two factors commute),
 * so the result is the other paths' to the bit. AVX-512, AVX2+FMA
 * (tkernel2_*: the same chains in 16-row slices) and portable C. */
#define T_OC NN_T_OC
/* k-blocks: K is cut into equal blocks of at most T_KC (147 KB of packed
 * weights, read from L2): whole networks at 224 px batch 1 ran 1.03-1.05x
 * faster than with blocks of 128 (32 KB, kept in L1), the accumulators
 * going through scratch less often (paired A/B, 12-16 rounds; 64 px batch
 * 64 level). */
#define T_KC 576
#define T_PF_LINES 512 /* weights prefetched ahead: 32 KB */
#define T_PMAX 6

size_t nn_gemm_packed_t_size(int m, int k) { return ((size_t)m + T_OC - 1) / T_OC * T_OC * (size_t)k; }

void nn_gemm_pack_t(int m, int k, const float *a, size_t lda, float *dst)
{
    for (int i0 = 0; i0 < m; i0 += T_OC) {
        float *blk = dst + (size_t)i0 * k;
        for (int i = 0; i < T_OC; i++) {
            const float *row = i0 + i < m ? a + (size_t)(i0 + i) * lda : NULL;
            for (int p = 0; p < k; p++) blk[(size_t)p * T_OC + i] = row ? row[p] : 0.0f;
        }
    }
}

/* Where a tile's results go when the kernel finishes them itself (the last
 * k-block with nn_tfinal): per position its output (and residual) pointer
 * at channel block 0 of the tile's rows, the epilogue's constants of those
 * rows. */
typedef struct tfin {
    float *op[T_PMAX];
    const float *rp[T_PMAX];
    long ostep, rstep;
    const float *bias, *alpha, *beta;
    int relu, has_res;
} tfin;
typedef void (*tkernel_fn)(int kc, const float *w, const float *const *bp, const int *off,
                           float *c, int acc, const tfin *f);

/* Portable kernel of the same arithmetic: per element the chain
 * fmaf(b, w, r) over p from r = 0 (or c), then nn_epilogue_row's steps. */
static void tkernel_scalar(int P, int kc, const float *w, const float *const *bp, const int *off,
                           float *c, int acc, const tfin *f)
{
    for (int j = 0; j < P; j++) {
        float r[T_OC];
        for (int i = 0; i < T_OC; i++) r[i] = acc ? c[j * T_OC + i] : 0.0f;
        const float *b = bp[j];
        for (int p = 0; p < kc; p++) {
            const float bv = b[off[p]], *wp = w + (size_t)p * T_OC;
            for (int i = 0; i < T_OC; i++) r[i] = fmaf(bv, wp[i], r[i]);
        }
        if (!f) {
            memcpy(c + j * T_OC, r, sizeof r);
            continue;
        }
        for (int i = 0; i < T_OC; i++) {
            float v = r[i];
            if (f->bias) v = v + f->bias[i];
            if (f->alpha) v = fmaf(v, f->alpha[i], f->beta ? f->beta[i] : 0.0f);
            if (f->has_res) v = v + f->rp[j][(i / 16) * f->rstep + i % 16];
            if (f->relu) v = nn_relu1(v);
            f->op[j][(i / 16) * f->ostep + i % 16] = v;
        }
    }
}
#define TKS_DEF(P)                                                                                 \
    static void tkernel_s##P(int kc, const float *w, const float *const *bp, const int *off,       \
                             float *c, int acc, const tfin *f)                                     \
    {                                                                                              \
        tkernel_scalar(P, kc, w, bp, off, c, acc, f);                                              \
    }
TKS_DEF(1)
TKS_DEF(2)
TKS_DEF(3)
TKS_DEF(4)
TKS_DEF(5)
TKS_DEF(6)
static const tkernel_fn g_tkernel_scalar[T_PMAX + 1] = {NULL,         tkernel_s1, tkernel_s2,
                                                        tkernel_s3, tkernel_s4, tkernel_s5,
                                                        tkernel_s6};

#ifdef NN_X86
/* AVX2+FMA: the 64 rows as four 16-row slices, one after the other, each
 * P positions x 2 ymm (12 accumulators, 2 weight registers and the
 * broadcast: 15 of the 16 ymm registers). The slices re-read the tile's
 * inputs (in L1) and a quarter of each weight row each; every element is
 * the AVX-512 kernel's chain, to the bit. */
#define TK2_DEF(P)                                                                                 \
    __attribute__((target("avx2,fma"))) static void tkernel2_##P(                                 \
        int kc, const float *w, const float *const *bp, const int *off, float *c, int acc,          \
        const tfin *f)                                                                             \
    {                                                                                              \
        const float *b[P];                                                                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < P; j++) b[j] = bp[j];                          \
        for (int q = 0; q < 4; q++) {                                                              \
            __m256 r[P][2];                                                                        \
            _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                    \
            {                                                                                      \
                r[j][0] = acc ? _mm256_loadu_ps(c + j * T_OC + 16 * q) : _mm256_setzero_ps();      \
                r[j][1] = acc ? _mm256_loadu_ps(c + j * T_OC + 16 * q + 8) : _mm256_setzero_ps();  \
            }                                                                                      \
            const float *wq = w + 16 * q;                                                          \
            for (int p = 0; p < kc; p++) {                                                         \
                __m256 w0 = _mm256_loadu_ps(wq), w1 = _mm256_loadu_ps(wq + 8);                     \
                const int o = off[p];                                                              \
                wq += T_OC;                                                                        \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                {                                                                                  \
                    __m256 bv = _mm256_broadcast_ss(b[j] + o);                                     \
                    r[j][0] = _mm256_fmadd_ps(bv, w0, r[j][0]);                                    \
                    r[j][1] = _mm256_fmadd_ps(bv, w1, r[j][1]);                                    \
                }                                                                                  \
            }                                                                                      \
            if (!f) {                                                                              \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                {                                                                                  \
                    _mm256_storeu_ps(c + j * T_OC + 16 * q, r[j][0]);                              \
                    _mm256_storeu_ps(c + j * T_OC + 16 * q + 8, r[j][1]);                          \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            const __m256 zero = _mm256_setzero_ps();                                               \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)                                    \
            {                                                                                      \
                const int i0 = 16 * q + 8 * h;                                                     \
                __m256 bq = f->bias ? _mm256_loadu_ps(f->bias + i0) : zero;                        \
                __m256 aq = f->alpha ? _mm256_loadu_ps(f->alpha + i0) : zero;                      \
                __m256 eq = f->alpha && f->beta ? _mm256_loadu_ps(f->beta + i0) : zero;            \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                    _mm256_storeu_ps(f->op[j] + q * f->ostep + 8 * h,                              \
                                     nn_epi8(r[j][h], f->bias != NULL, bq, f->alpha != NULL, aq,   \
                                             eq, f->has_res ? f->rp[j] + q * f->rstep + 8 * h      \
                                                            : NULL,                                \
                                             f->relu));                                            \
            }                                                                                      \
        }                                                                                          \
    }
TK2_DEF(1)
TK2_DEF(2)
TK2_DEF(3)
TK2_DEF(4)
TK2_DEF(5)
TK2_DEF(6)
static const tkernel_fn g_tkernel_avx2[T_PMAX + 1] = {NULL,         tkernel2_1, tkernel2_2,
                                                      tkernel2_3, tkernel2_4, tkernel2_5,
                                                      tkernel2_6};

/* The tile's accumulators start from c (acc) or 0; they go back to c, or
 * through the epilogue to the blocked output (f). */
#define TK_DEF(P)                                                                                  \
    __attribute__((target("avx512f"))) static void tkernel##P(int kc, const float *w,           \
                                                              const float *const *bp,             \
                                                              const int *off, float *c, int acc,  \
                                                              const tfin *f)                      \
    {                                                                                              \
        __m512 r[P][4];                                                                            \
        const float *b[P];                                                                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                        \
        {                                                                                          \
            b[j] = bp[j];                                                                          \
            _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) r[j][q] =                          \
                acc ? _mm512_loadu_ps(c + j * T_OC + 16 * q) : _mm512_setzero_ps();                \
        }                                                                                          \
        for (int p = 0; p < kc; p++) {                                                             \
            __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);                          \
            __m512 w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);                     \
            const int o = off[p];                                                                  \
            w += T_OC;                                                                             \
            _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                    \
            {                                                                                      \
                __m512 bv = _mm512_set1_ps(b[j][o]);                                               \
                r[j][0] = _mm512_fmadd_ps(bv, w0, r[j][0]);                                        \
                r[j][1] = _mm512_fmadd_ps(bv, w1, r[j][1]);                                        \
                r[j][2] = _mm512_fmadd_ps(bv, w2, r[j][2]);                                        \
                r[j][3] = _mm512_fmadd_ps(bv, w3, r[j][3]);                                        \
            }                                                                                      \
        }                                                                                          \
        if (!f) {                                                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                    \
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)                                \
                    _mm512_storeu_ps(c + j * T_OC + 16 * q, r[j][q]);                             \
            return;                                                                                \
        }                                                                                          \
        const __m512 zero = _mm512_setzero_ps();                                                   \
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)                                        \
        {                                                                                          \
            __m512 bq = f->bias ? _mm512_loadu_ps(f->bias + 16 * q) : zero;                        \
            __m512 aq = f->alpha ? _mm512_loadu_ps(f->alpha + 16 * q) : zero;                      \
            __m512 eq = f->alpha && f->beta ? _mm512_loadu_ps(f->beta + 16 * q) : zero;            \
            _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                    \
                _mm512_storeu_ps(f->op[j] + q * f->ostep,                                          \
                                 nn_epi16(r[j][q], f->bias != NULL, bq, f->alpha != NULL, aq, eq,  \
                                          f->has_res ? f->rp[j] + q * f->rstep : NULL, f->relu));  \
        }                                                                                          \
    }
TK_DEF(1)
TK_DEF(2)
TK_DEF(3)
TK_DEF(4)
TK_DEF(5)
TK_DEF(6)
static const tkernel_fn g_tkernel_avx512[T_PMAX + 1] = {NULL,       tkernel1, tkernel2, tkernel3,
                                                 tkernel4, tkernel5, tkernel6};
#endif

#ifdef NN_NEON
/* NEON: as the AVX2 kernels, the 64 rows as four 16-row slices one after
 * the other, each P positions x 4 q registers (24 accumulators, 4 weight
 * registers and the broadcast of the 32); every element the same chain
 * fmaf(b, w, r) over p, to the bit. */
#define TKN_DEF(P)                                                                                 \
    static void tkernel_n##P(int kc, const float *w, const float *const *bp, const int *off,       \
                             float *c, int acc, const tfin *f)                                     \
    {                                                                                              \
        const float *b[P];                                                                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < P; j++) b[j] = bp[j];                          \
        for (int q = 0; q < 4; q++) {                                                              \
            float32x4_t r[P][4];                                                                   \
            _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                    \
                _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) r[j][h] =                      \
                    acc ? vld1q_f32(c + j * T_OC + 16 * q + 4 * h) : vdupq_n_f32(0.0f);            \
            const float *wq = w + 16 * q;                                                          \
            for (int p = 0; p < kc; p++) {                                                         \
                float32x4_t w0 = vld1q_f32(wq), w1 = vld1q_f32(wq + 4);                            \
                float32x4_t w2 = vld1q_f32(wq + 8), w3 = vld1q_f32(wq + 12);                       \
                const int o = off[p];                                                              \
                wq += T_OC;                                                                        \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                {                                                                                  \
                    float32x4_t bv = vld1q_dup_f32(b[j] + o);                                      \
                    r[j][0] = vfmaq_f32(r[j][0], bv, w0);                                          \
                    r[j][1] = vfmaq_f32(r[j][1], bv, w1);                                          \
                    r[j][2] = vfmaq_f32(r[j][2], bv, w2);                                          \
                    r[j][3] = vfmaq_f32(r[j][3], bv, w3);                                          \
                }                                                                                  \
            }                                                                                      \
            if (!f) {                                                                              \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                    _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                            \
                        vst1q_f32(c + j * T_OC + 16 * q + 4 * h, r[j][h]);                         \
                continue;                                                                          \
            }                                                                                      \
            const float32x4_t zero = vdupq_n_f32(0.0f);                                            \
            _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)                                    \
            {                                                                                      \
                const int i0 = 16 * q + 4 * h;                                                     \
                float32x4_t bq = f->bias ? vld1q_f32(f->bias + i0) : zero;                         \
                float32x4_t aq = f->alpha ? vld1q_f32(f->alpha + i0) : zero;                       \
                float32x4_t eq = f->alpha && f->beta ? vld1q_f32(f->beta + i0) : zero;             \
                _Pragma("GCC unroll 8") for (int j = 0; j < P; j++)                                \
                    vst1q_f32(f->op[j] + q * f->ostep + 4 * h,                                     \
                              nn_epi4(r[j][h], f->bias != NULL, bq, f->alpha != NULL, aq, eq,      \
                                      f->has_res ? f->rp[j] + q * f->rstep + 4 * h : NULL,         \
                                      f->relu));                                                   \
            }                                                                                      \
        }                                                                                          \
    }
TKN_DEF(1)
TKN_DEF(2)
TKN_DEF(3)
TKN_DEF(4)
TKN_DEF(5)
TKN_DEF(6)
static const tkernel_fn g_tkernel_neon[T_PMAX + 1] = {NULL,        tkernel_n1, tkernel_n2,
                                                      tkernel_n3, tkernel_n4, tkernel_n5,
                                                      tkernel_n6};
#endif

/* Tiles of 6 and 5 positions covering cnt exactly when cnt can be written
 * so (every cnt >= 20), else of 6 and one smaller: the 5- and 6-position
 * kernels run at the same rate, the smaller ones do not. Writes the tile
 * sizes to sizes[] (cnt / 5 + 2 of them at most); returns their count. */
static int t_tiles(int cnt, unsigned char *sizes)
{
    int fives = (6 - cnt % 6) % 6;
    int n = 0;
    if (5 * fives > cnt) fives = 0;
    for (int left = cnt - 5 * fives; left > 0; left -= sizes[n++])
        sizes[n] = (unsigned char)(left >= T_PMAX ? T_PMAX : left);
    for (int i = 0; i < fives; i++) sizes[n++] = 5;
    return n;
}

typedef struct direct_t_ctx {
    const nn_gemm_direct_t *g;
    float *const *scratch;
    const tkernel_fn *tk; /* the ISA's kernels by tile size */
    int split_m, nob;
} direct_t_ctx;

static const tkernel_fn *tkernels(void)
{
    switch (cwba_isa_current()) {
#ifdef NN_X86
    case CWBA_ISA_AVX512: return g_tkernel_avx512;
    case CWBA_ISA_AVX2: return g_tkernel_avx2;
#endif
#ifdef NN_NEON
    case CWBA_ISA_NEON: return g_tkernel_neon;
#endif
    default: return g_tkernel_scalar;
    }
}

static void direct_t_task(void *vctx, int tid, int nt)
{
    const direct_t_ctx *rc = vctx;
    const nn_gemm_direct_t *g = rc->g;
    long npos = g->npos, j0 = 0, j1 = npos;
    int ob0 = 0, ob1 = rc->nob;
    if (rc->split_m) {
        ob0 = (int)((long)rc->nob * tid / nt);
        ob1 = (int)((long)rc->nob * (tid + 1) / nt);
    } else {
        j0 = npos * tid / nt;
        j1 = npos * (tid + 1) / nt;
    }
    if (ob0 >= ob1 || j0 >= j1) return;
    /* scratch: the accumulators (chunk, 64), then the caller's spare. */
    float *accb = rc->scratch[tid], *spare = accb + (size_t)NN_T_CHUNK * T_OC;
    unsigned char sizes[NN_T_CHUNK / 5 + 2];
    long boff[NN_T_CHUNK], ooff[NN_T_CHUNK], roff[NN_T_CHUNK];
    const float *bp[T_PMAX];
    const nn_tfinal *fin = g->fin;
    const int nkb = g->k > T_KC ? (g->k + T_KC - 1) / T_KC : 1;
    const int kb = g->k > 0 ? (g->k + nkb - 1) / nkb : 1;
    tfin tf = {.relu = fin ? fin->relu : 0, .has_res = fin && fin->res,
               .ostep = fin ? fin->ostep : 0, .rstep = fin ? fin->rstep : 0};
    for (long q0 = j0; q0 < j1; q0 += NN_T_CHUNK) {
        int cnt = (int)(j1 - q0 < NN_T_CHUNK ? j1 - q0 : NN_T_CHUNK);
        g->pos(g->ctx, q0, cnt, boff);
        if (fin) fin->opos(fin->octx, q0, cnt, ooff, roff);
        int ntiles = t_tiles(cnt, sizes);
        for (int ob = ob0; ob < ob1; ob++) {
            if (fin) {
                const int r0 = ob * T_OC;
                tf.bias = fin->bias ? fin->bias + r0 : NULL;
                tf.alpha = fin->alpha ? fin->alpha + r0 : NULL;
                tf.beta = fin->beta ? fin->beta + r0 : NULL;
            }
            const long cb = (long)ob * (T_OC / 16); /* the tile's first channel block */
            for (int k0 = 0; k0 < g->k; k0 += kb) {
                int kc = g->k - k0 < kb ? g->k - k0 : kb;
                const int last = fin && k0 + kc == g->k;
                const float *w = g->wt + ((size_t)ob * g->k + k0) * T_OC;
                /* The next k-block's weights (the next block of this row
                 * block, or the next row block's first: they follow in
                 * memory) come from DRAM on small planes (9.4 MB per 7x7
                 * layer): each tile asks for its share of them in advance,
                 * so that the next block's first tile finds them in L2. */
                const char *pf = (const char *)(w + (size_t)kc * T_OC);
                const char *pf_end = (const char *)(g->wt + (size_t)ob1 * g->k * T_OC);
                const long pf_lines = pf < pf_end ? ((long)(pf_end - pf) + 63) / 64 : 0;
                const long pf_n = pf_lines < T_PF_LINES ? pf_lines : T_PF_LINES;
                const long pf_step = (pf_n + ntiles - 1) / ntiles;
                for (int t = 0, j = 0; t < ntiles; j += sizes[t++]) {
                    int P = sizes[t];
                    long l1 = (t + 1) * pf_step < pf_n ? (t + 1) * pf_step : pf_n;
                    for (long l = t * pf_step; l < l1; l++) __builtin_prefetch(pf + 64 * l, 0, 2);
                    for (int q = 0; q < P; q++) bp[q] = g->b + boff[j + q];
                    if (last)
                        for (int q = 0; q < P; q++) {
                            tf.op[q] = fin->out + ooff[j + q] + cb * fin->ostep;
                            tf.rp[q] = fin->res ? fin->res + roff[j + q] + cb * fin->rstep : NULL;
                        }
                    rc->tk[P](kc, w, bp, g->off + k0, accb + (size_t)j * T_OC, k0 > 0,
                                 last ? &tf : NULL);
                }
            }
            if (fin) continue;
            int r0 = ob * T_OC, r1 = r0 + T_OC < g->m ? r0 + T_OC : g->m;
            g->store(g->ctx, accb, q0, cnt, r0, r1, spare);
        }
    }
}

size_t nn_gemm_direct_t_scratch_size(size_t spare) { return (size_t)T_OC * NN_T_CHUNK + spare; }

void nn_gemm_direct_t_run(nn_pool *pool, const nn_gemm_direct_t *g, float *const *scratch)
{
    if (g->m <= 0 || g->npos <= 0) return;
    direct_t_ctx rc = {.g = g, .scratch = scratch, .tk = tkernels(),
                       .nob = (g->m + T_OC - 1) / T_OC};
    int nt = nn_pool_size(pool);
    /* Threads share out the 64-row blocks when they divide evenly (each then
     * streams only its share of the weights), else the positions. */
    rc.split_m = rc.nob % nt == 0;
    if (nt == 1)
        direct_t_task(&rc, 0, 1);
    else
        nn_pool_run(pool, direct_t_task, &rc);
}

void nn_gemm_ref(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb,
                 float *c, size_t ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) s = fmaf(a[(size_t)i * lda + p], b[(size_t)p * ldb + j], s);
            c[(size_t)i * ldc + j] = s;
        }
}
