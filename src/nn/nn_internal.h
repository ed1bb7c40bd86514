/* Internal interfaces of src/nn: the thread pool, the deterministic GEMM and
 * the layer kernels the three models are built from.
 *
 * Activations inside the models use the channel-blocked layout (nn_blk,
 * blocked.c) on every ISA, and (C, N, H, W) where a stretch of layers is
 * better off so (channel-major with the batch next, so a convolution's GEMM
 * output (C_out, N*H*W) is already the next layer's input and the batch
 * widens the GEMM instead of repeating it). */
#ifndef CWBA_NN_INTERNAL_H
#define CWBA_NN_INTERNAL_H

#include <math.h>
#include <stddef.h>

/* x86: the vector kernels are compiled with target attributes and picked at
 * run time, so a portable build still has them. */
#if defined(__x86_64__) || defined(__i386__)
#define NN_X86 1
#include <immintrin.h>

/* Lanes i of row[start + i] where 0 <= start + i < w, fill elsewhere; no
 * address outside the row is touched (a negative start, a left padding,
 * goes through an expanding load from row[0]). */
__attribute__((target("avx512f"))) static inline __m512 nn_load16_fill(const float *row, int start,
                                                                      int w, __m512 fill)
{
    int lo = start < 0 ? -start : 0, hi = w - start < 16 ? w - start : 16;
    if (lo == 0 && hi == 16) return _mm512_loadu_ps(row + start);
    if (hi <= lo) return fill;
    __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    if (lo == 0) return _mm512_mask_loadu_ps(fill, m, row + start);
    return _mm512_mask_expandloadu_ps(fill, m, row);
}

/* nn_epilogue_row on 16 channels: bias (b), batch norm (alpha a, beta e),
 * residual (r), ReLU; each step only where its flag is set, one rounding
 * each. ReLU: vmaxps(v, 0) is v where v > 0 and +0 otherwise (-0 included),
 * a NaN v is put back. */
__attribute__((target("avx512f"))) static inline __m512 nn_epi16(__m512 v, int has_b, __m512 b,
                                                               int has_a, __m512 a, __m512 e,
                                                               const float *r, int relu)
{
    if (has_b) v = _mm512_add_ps(v, b);
    if (has_a) v = _mm512_fmadd_ps(v, a, e);
    if (r) v = _mm512_add_ps(v, _mm512_loadu_ps(r));
    if (relu)
        v = _mm512_mask_mov_ps(_mm512_max_ps(v, _mm512_setzero_ps()),
                               _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
    return v;
}

/* nn_epi16 on 8 channels (AVX2+FMA): the same steps and roundings.
 * vmaxps(v, 0) is v where v > 0 and +0 otherwise, a NaN v is put back. */
__attribute__((target("avx2,fma"))) static inline __m256 nn_epi8(__m256 v, int has_b, __m256 b,
                                                                 int has_a, __m256 a, __m256 e,
                                                                 const float *r, int relu)
{
    if (has_b) v = _mm256_add_ps(v, b);
    if (has_a) v = _mm256_fmadd_ps(v, a, e);
    if (r) v = _mm256_add_ps(v, _mm256_loadu_ps(r));
    if (relu)
        v = _mm256_blendv_ps(_mm256_max_ps(v, _mm256_setzero_ps()), v,
                             _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return v;
}
#endif

/* AArch64: Advanced SIMD is part of every such CPU; the NEON kernels are
 * chosen when cwba_isa_current() is CWBA_ISA_NEON (CWBA_MAX_ISA=scalar
 * turns them off). vfmaq_f32 is fused, rounded once as fmaf. */
#if defined(__aarch64__)
#define NN_NEON 1
#include <arm_neon.h>

/* nn_epilogue_row's steps on 4 channels (see nn_epi16). ReLU: v where
 * v > 0 or v is NaN, else +0 (so -0 becomes +0), as nn_relu1. */
static inline float32x4_t nn_epi4(float32x4_t v, int has_b, float32x4_t b, int has_a,
                                  float32x4_t a, float32x4_t e, const float *r, int relu)
{
    if (has_b) v = vaddq_f32(v, b);
    if (has_a) v = vfmaq_f32(e, v, a);
    if (r) v = vaddq_f32(v, vld1q_f32(r));
    if (relu) {
        uint32x4_t keep = vorrq_u32(vcgtq_f32(v, vdupq_n_f32(0.0f)), vmvnq_u32(vceqq_f32(v, v)));
        v = vbslq_f32(keep, v, vdupq_n_f32(0.0f));
    }
    return v;
}
#endif

/* PyTorch's ReLU: max(v, 0) with NaN kept and -0 mapped to +0. */
static inline float nn_relu1(float v) { return v > 0.0f || isnan(v) ? v : 0.0f; }

/* ------------------------------------------------------------ thread pool */

typedef void (*nn_task_fn)(void *ctx, int tid, int nthreads);
typedef struct nn_pool nn_pool;

/* A pool of n-1 worker threads plus the caller. Returns NULL only when memory
 * is short; if threads cannot be started the pool runs with fewer. */
nn_pool *nn_pool_create(int n);
void nn_pool_free(nn_pool *p); /* NULL accepted */
int nn_pool_size(const nn_pool *p);
/* Runs fn(ctx, tid, n) for tid = 0..n-1 (tid 0 on the caller) and waits. */
void nn_pool_run(nn_pool *p, nn_task_fn fn, void *ctx);

/* ------------------------------------------------------------------- GEMM */

/* Column panel width of the packed right-hand matrix. */
#define NN_NR 16

/* Rows per packed panel of the left-hand (weight) matrix; depends on the
 * kernel chosen for this CPU (AVX-512, AVX2+FMA or scalar, picked at run
 * time; all give the same bits). */
int nn_gemm_mr(void);
const char *nn_gemm_isa(void);
/* Tests only: forces "avx512", "avx2" or "scalar" (0 if this CPU lacks it).
 * Data packed by nn_gemm_pack_a before the switch must not be used after it. */
int nn_gemm_set_isa(const char *name);
/* 1 when the chosen ISA is AVX-512: the other layers' vector paths follow the
 * GEMM's choice, so that tests reach every path by nn_gemm_set_isa. */
int nn_isa_avx512(void);
/* 1 when the models run in the channel-blocked layout (nn_blk) at the
 * chosen ISA: on every ISA (the blocked kernels exist on each), unless a
 * test has switched it off with nn_set_blocked(0) to reach the (C, N, H,
 * W) paths; models created then keep that layout. */
int nn_isa_blocked(void);
void nn_set_blocked(int on);

/* malloc for float arrays (free() releases it); large ones are huge-page
 * aligned. NULL on overflow or when memory is short. */
float *nn_alloc_floats(size_t n);

/* Floats needed by nn_gemm_pack_a for an (m, k) matrix. */
size_t nn_gemm_packed_a_size(int m, int k);
/* Packs a row-major (m, k) matrix (row stride lda) into MR-row panels,
 * zero-padding the last panel. dst holds nn_gemm_packed_a_size(m, k) floats. */
void nn_gemm_pack_a(int m, int k, const float *a, size_t lda, float *dst);

/* Writes rows [k0, k0+kc) of column panels [p0, p0+np) of the right-hand
 * (k, n) matrix into dst as np consecutive (kc, NN_NR) blocks; columns >= n
 * must be written as 0. */
typedef void (*nn_pack_b_fn)(const void *ctx, int p0, int np, int k0, int kc, float *dst);

/* What is done to every output element after its dot product, in this order
 * (each step one float32 rounding, as PyTorch's eval-mode layers do):
 * + bias[row]; batch norm fmaf(v, alpha[row], beta[row]); + res[row*ldc+col];
 * ReLU. NULL pointers skip a step. */
typedef struct nn_epilogue {
    const float *bias;  /* (m) */
    const float *alpha; /* (m) */
    const float *beta;  /* (m) */
    const float *res;   /* (m, n) with stride ldc, may not alias c */
    int relu;
} nn_epilogue;

typedef struct nn_gemm {
    int m, n, k;
    const float *apack;       /* nn_gemm_pack_a output for (m, k) */
    nn_pack_b_fn pack_b;
    const void *pack_ctx;
    float *c;                 /* (m, n) row-major, stride ldc */
    size_t ldc;
    nn_epilogue ep;
} nn_gemm;

/* dst[j] = ep applied to src[j] for row i of the output, j < n; res points
 * at the row's residual values (NULL: none). src may equal dst. */
void nn_epilogue_row(const nn_epilogue *ep, int i, const float *src, float *dst, const float *res,
                     long n);
/* Applies ep to rows [r0, r1), columns [c0, c1) of c. */
void nn_epilogue_apply(const nn_epilogue *ep, float *c, size_t ldc, int r0, int r1, long c0,
                       long c1);

/* Floats of per-thread scratch nn_gemm_run needs for inner dimension k. */
size_t nn_gemm_scratch_size(int k);

/* C = A * B followed by the epilogue, spread over the pool. Every element is
 * the sequential fused-multiply-add chain over k = 0..K-1 started from 0, so
 * its value does not depend on n, on its column's position or on the thread
 * count. scratch[t] holds nn_gemm_scratch_size(k) floats for thread t. */
void nn_gemm_run(nn_pool *pool, const nn_gemm *g, float *const *scratch);

/* Applies only g's epilogue to C (a product with k = 0, whose chains are +0). */
void nn_gemm_epilogue_only(const nn_gemm *g);

/* GEMM with B read in place, without packing: B[p][j] = b[off[p] + j]. For
 * a stride-1 convolution over a zero-padded input, off[p] is the offset of
 * tap p = (c, ki, kj) and column j an output position in the padded width,
 * so the columns are the im2col matrix's (plus a few discarded ones at the
 * right edge) and every element the same fused-multiply-add chain over
 * p = 0..K-1 from 0 as nn_gemm_run computes. b[off[p] + j] must be readable
 * for j < n rounded up to NN_NR. Results are handed to emit in blocks: tile
 * holds rows [r0, r1) x columns [c0, c1) (tile[(i - r0) * ldt + j - c0]),
 * each element final; emit is called from the pool's threads on disjoint
 * blocks. */
typedef void (*nn_emit_fn)(const void *ctx, const float *tile, size_t ldt, int r0, int r1,
                           long c0, long c1);
typedef struct nn_gemm_direct {
    int m, k;
    long n;
    const float *apack; /* nn_gemm_pack_a output for (m, k) */
    const float *b;
    const int *off;     /* (k) */
    nn_emit_fn emit;
    const void *emit_ctx;
} nn_gemm_direct;
/* Floats of per-thread scratch nn_gemm_direct_run needs for m rows (its
 * result tiles), besides what nn_gemm_run needs. */
size_t nn_gemm_direct_scratch_size(int m);
/* scratch[t] holds nn_gemm_direct_scratch_size(m) floats for thread t. */
void nn_gemm_direct_run(nn_pool *pool, const nn_gemm_direct *g, float *const *scratch);

/* The same product with the output channels on the vector lanes (64 per
 * block) and the columns taken as a list of positions, so that only kept
 * output positions are computed: C[i][j] for i < m, j < npos, where
 * position j reads tap p at b[boff[j] + off[p]] (pos fills boff). Each
 * element is the same chain over p = 0..K-1 from 0 as nn_gemm_direct_run's,
 * to the bit. Kernels for AVX-512, AVX2+FMA and portable C (the ISA's
 * choice, cwba_isa_current); wt is nn_gemm_pack_t's
 * output. Positions are taken NN_T_CHUNK at a time and each block of
 * results handed to store from the pool's threads: acc[(j - j0) * 64 + i -
 * r0] holds C[i][j] for rows [r0, r1) and positions [j0, j0 + cnt), final;
 * spare is the thread's own `spare` floats of scratch. */
#define NN_T_CHUNK 240
#define NN_T_OC 64
typedef void (*nn_tpos_fn)(const void *ctx, long j0, int cnt, long *boff);
typedef void (*nn_tstore_fn)(const void *ctx, const float *acc, long j0, int cnt, int r0, int r1,
                             float *spare);
/* Instead of store, results can go straight from the registers to a
 * channel-blocked output (16 channels per vector; m a multiple of 64):
 * C[i][j] after the epilogue (bias, batch norm, residual, ReLU as
 * nn_epilogue_row) lands at out[ooff[j] + (i / 16) * ostep + i % 16], the
 * residual read at res[roff[j] + (i / 16) * rstep + i % 16]; opos fills
 * ooff and roff for positions j0 .. j0 + cnt - 1 (nn_blk_final sets all
 * this up for a blocked output). */
typedef void (*nn_topos_fn)(const void *ctx, long j0, int cnt, long *ooff, long *roff);
typedef struct nn_tfinal {
    float *out;
    long ostep;
    const float *res; /* NULL: none */
    long rstep;
    const float *bias, *alpha, *beta;
    int relu;
    nn_topos_fn opos;
    const void *octx; /* of opos */
} nn_tfinal;
typedef struct nn_gemm_direct_t {
    int m, k;
    long npos;
    const float *wt;  /* nn_gemm_pack_t output for (m, k) */
    const float *b;
    const int *off;   /* (k) */
    nn_tpos_fn pos;
    nn_tstore_fn store; /* NULL with fin */
    const nn_tfinal *fin;
    const void *ctx;  /* of pos and store */
} nn_gemm_direct_t;
size_t nn_gemm_packed_t_size(int m, int k);
void nn_gemm_pack_t(int m, int k, const float *a, size_t lda, float *dst);
/* Floats of per-thread scratch when store needs `spare` floats of its own. */
size_t nn_gemm_direct_t_scratch_size(size_t spare);
void nn_gemm_direct_t_run(nn_pool *pool, const nn_gemm_direct_t *g, float *const *scratch);

/* Scalar reference of the same arithmetic (tests): C(m,n) = A(m,k)*B(k,n). */
void nn_gemm_ref(int m, int n, int k, const float *a, size_t lda, const float *b, size_t ldb,
                 float *c, size_t ldc);

/* ----------------------------------------------------------------- layers */

/* Shapes of activations: (C, N, H, W). */

typedef struct nn_conv_geom {
    int cin, h, w;       /* input plane */
    int k, stride, pad;
    int oh, ow;          /* output plane */
} nn_conv_geom;

/* Output side of a convolution / pooling window; <= 0 when the input is too small. */
int nn_out_side(int in, int k, int stride, int pad);

/* im2col packing context for nn_pack_b_im2col: the input (cin, batch, h, w). */
typedef struct nn_im2col_ctx {
    const float *in;
    int batch;
    nn_conv_geom g;
} nn_im2col_ctx;
void nn_pack_b_im2col(const void *ctx, int p0, int np, int k0, int kc, float *dst);

/* Packing from a plain row-major (k, n) matrix (stride ld). */
typedef struct nn_matrix_ctx {
    const float *b;
    int k, n;
    size_t ld;
} nn_matrix_ctx;
void nn_pack_b_matrix(const void *ctx, int p0, int np, int k0, int kc, float *dst);

/* Convolution that skips padding taps (tapconv.c): output positions grouped
 * by their window of valid taps [ky0, ky1) x [kx0, kx1), one GEMM per group
 * with the weights restricted to the window. Bit-identical to the im2col
 * path (see tapconv.c); worth it on small planes with much padding. */
typedef struct nn_tapgroup {
    int ky0, ky1, kx0, kx1;
    int kdim;      /* cin * window taps */
    int npos;      /* output positions oy*ow+ox in the group, raster order */
    int *pos;      /* (npos) */
    float *apack;  /* packed (cout, kdim) */
} nn_tapgroup;

typedef struct nn_tapconv {
    nn_conv_geom geom;
    int cout;
    int ngroups, min_npos, max_npos;
    nn_tapgroup *groups;
} nn_tapconv;

/* Share of the im2col entries that are padding for this geometry. */
double nn_tapconv_padded_fraction(const nn_conv_geom *g);
/* w is the (cout, cin, k, k) weight. Returns 0 when memory is short (t is
 * then empty). */
int nn_tapconv_init(nn_tapconv *t, const nn_conv_geom *g, int cout, const float *w);
void nn_tapconv_free(nn_tapconv *t); /* NULL or empty accepted */
/* Floats of `tmp` nn_tapconv_run needs for a batch. */
size_t nn_tapconv_tmp_floats(const nn_tapconv *t, int batch);
/* (cout, batch, oh, ow) = conv((cin, batch, h, w)) with the epilogue (its
 * res has the output's layout); scratch as for nn_gemm_run. */
void nn_tapconv_run(nn_pool *pool, const nn_tapconv *t, const float *in, int batch, float *out,
                    const nn_epilogue *ep, float *const *scratch, float *tmp);

/* Convolution (stride 1 to 4) reading the im2col rows in place from a
 * zero-padded copy of the input split into its stride x stride phases
 * (directconv.c); bit-identical to the im2col path. */
int nn_directconv_applies(const nn_conv_geom *g, int batch);
/* Computed columns (whole panels of NN_NR) per kept output position (>= 1:
 * the padded width's extra columns are computed and dropped); 0 if the path
 * does not apply. */
double nn_directconv_overhead(const nn_conv_geom *g, int batch);
/* Whether the direct path is the faster one here (see directconv.c). */
int nn_directconv_pays(const nn_conv_geom *g, int batch);
/* Floats of `tmp` (the padded input) nn_directconv_run needs. */
size_t nn_directconv_tmp_floats(const nn_conv_geom *g, int batch);
/* The channels-on-lanes variant (nn_gemm_direct_t_run): whether it can run
 * this layer, whether it is the faster one here (needs AVX-512), and the
 * per-thread scratch it needs for this geometry (any batch). */
int nn_directconv_t_applies(const nn_conv_geom *g, int batch, int cout);
int nn_directconv_t_pays(const nn_conv_geom *g, int batch, int cout);
size_t nn_directconv_t_scratch_size(const nn_conv_geom *g);
/* (cout, batch, oh, ow) = conv((cin, batch, h, w)) with the epilogue (res in
 * the output's layout); apack the packed (cout, cin*k*k) weights, tpack NULL
 * or the same packed by nn_gemm_pack_t (then the channels-on-lanes variant
 * runs where nn_directconv_t_pays), scratch as for nn_gemm_direct_run (and
 * nn_directconv_t_scratch_size with tpack), off holds cin*k*k ints. */
void nn_directconv_run(nn_pool *pool, const float *apack, const float *tpack, int cout,
                       const nn_conv_geom *g, const float *in, int batch, float *out,
                       const nn_epilogue *ep, float *const *scratch, float *tmp, int *off);

/* ---------------------------------------------- channel-blocked activations */

/* (C / 16, N, H + 2 pb, W + 2 pb, 16): the 16 channels of a position are
 * one vector, and every plane has a border of pb zeros (blocked.c). */
#define NN_CB 16
typedef struct nn_blk {
    float *d;
    int c, n, h, w, pb; /* c a multiple of NN_CB */
} nn_blk;
static inline long nn_blk_wp(const nn_blk *t) { return t->w + 2L * t->pb; }
/* Positions per padded plane. */
static inline long nn_blk_plane(const nn_blk *t) { return (t->h + 2L * t->pb) * nn_blk_wp(t); }
/* Offset of channel block cb's vector at (y, x) of image n; -pb <= y, x. */
static inline long nn_blk_off(const nn_blk *t, int cb, int n, int y, int x)
{
    return ((((long)cb * t->n + n) * (t->h + 2L * t->pb) + y + t->pb) * nn_blk_wp(t) + x + t->pb) *
           NN_CB;
}
size_t nn_blk_floats(int c, int n, int h, int w, int pb);
void nn_blk_clear_border(const nn_blk *t);
/* (C, N, H, W) <-> blocked (the border is written as zeros). */
void nn_blk_from_cnhw(nn_pool *pool, const float *src, const nn_blk *dst);
void nn_blk_to_cnhw(nn_pool *pool, const nn_blk *src, float *dst);
/* x = fmaf(x, alpha[c], beta[c]) (alpha NULL: skipped), then ReLU if relu,
 * on the interior. */
void nn_blk_bn(nn_pool *pool, const nn_blk *t, const float *alpha, const float *beta, int relu);
/* nn_maxpool's arithmetic on blocked tensors. */
void nn_blk_maxpool(nn_pool *pool, const nn_blk *in, const nn_blk *out, int k, int stride, int pad);

/* Where the channels-on-lanes product writes a blocked output (through
 * nn_tfinal): position j = (n, y, x) of the (oh, ow) output, the epilogue
 * (res: the residual, a blocked tensor of the output's shape, or NULL;
 * ep->res unused). nn_blk_final fills f, which points at s. */
typedef struct nn_blk_store {
    const nn_blk *out, *res;
    const nn_epilogue *ep;
    int oh, ow;
} nn_blk_store;
void nn_blk_final(nn_tfinal *f, const nn_blk_store *s);
/* Convolution of a blocked input to a blocked output through the
 * channels-on-lanes product (tpack from nn_gemm_pack_t), bit-identical to
 * the other paths; scratch as nn_gemm_direct_t_scratch_size(0), off holds
 * cin*k*k ints. */
int nn_blk_conv_applies(const nn_conv_geom *g, int cout, const nn_blk *in);
void nn_blk_conv(nn_pool *pool, const float *tpack, int cout, const nn_conv_geom *g,
                 const nn_blk *in, const nn_blk *out, const nn_epilogue *ep, const nn_blk *res,
                 float *const *scratch, int *off);
/* The same from a (C, N, H, W) input, for the first layer (the image, any
 * channel count): the input is copied once into a zero-padded buffer tmp of
 * nn_blk_image_tmp_floats floats, whose taps the kernel reads in place. */
int nn_blk_image_conv_applies(const nn_conv_geom *g, int batch, int cout);
size_t nn_blk_image_tmp_floats(const nn_conv_geom *g, int batch);
void nn_blk_conv_image(nn_pool *pool, const float *tpack, int cout, const nn_conv_geom *g,
                       const float *in, int batch, const nn_blk *out, const nn_epilogue *ep,
                       float *const *scratch, float *tmp, int *off);

/* Winograd F(2x2, 3x3) convolution of a blocked input to a blocked output
 * (winograd.c): 3x3, stride 1, pad 1, planes of 4x4 and more, odd
 * sides from 9 (nn_wino_applies). Not the direct
 * convolution's arithmetic (within a few roundings of it, see winograd.c);
 * identical at any thread count. upack: nn_wino_pack's output for the
 * (cout, cin, 3, 3) weights (0: memory short); tmp holds
 * nn_wino_tmp_floats for the pool's size; scratch as nn_blk_conv; off
 * holds cin ints per thread. */
int nn_wino_applies(const nn_conv_geom *g, int cout, const nn_blk *in);
size_t nn_wino_packed_size(int cout, int cin);
int nn_wino_pack(int cout, int cin, const float *w, float *dst);
size_t nn_wino_tmp_floats(const nn_conv_geom *g, int batch, int nthreads);
void nn_wino_conv(nn_pool *pool, const float *upack, int cout, const nn_conv_geom *g,
                  const nn_blk *in, const nn_blk *out, const nn_epilogue *ep, const nn_blk *res,
                  float *const *scratch, float *tmp, int *off);

/* Max pooling (PyTorch semantics: padding never wins, NaN propagates) on
 * `planes` planes (h, w) -> (oh, ow). */
void nn_maxpool(const float *in, int planes, int h, int w, int k, int stride, int pad, float *out,
                int oh, int ow);
/* torch adaptive_avg_pool2d on `planes` planes (h, w) -> (oh, ow). */
void nn_adaptive_avgpool(const float *in, int planes, int h, int w, float *out, int oh, int ow);
/* PyTorch's eval batch norm constants: alpha = (1/sqrt(var+eps))*weight,
 * beta = fmaf(-mean, alpha, bias). */
void nn_bn_fold(int c, const float *weight, const float *bias, const float *mean, const float *var,
                float eps, float *alpha, float *beta);
/* x = fmaf(x, alpha[c], beta[c]) over (c, plane) data, optional ReLU. */
void nn_bn_apply(float *x, int c, size_t plane, const float *alpha, const float *beta, int relu);
void nn_relu(float *x, size_t n);

#endif
