/* Channel-blocked activations (nn_blk, "NCHW16c"): 16 channels of one
 * position are one 64-byte vector, planes carry a border of zeros, so that
 * the channels-on-lanes convolution (nn_gemm_direct_t_run) reads its taps in
 * place, without the padded copy, and writes its results, 16 channels per
 * store, through a vectorised epilogue, without the transposed copy-out.
 *
 * Tap p = (c, ki, kj) of output position (n, y, x) sits at
 * off[p] + boff(n, y, x) with off[p] = block(c) + (ki * wp + kj) * 16 + c mod 16
 * and boff = offset of padded position (n, s*y - pad + pb, s*x - pad + pb):
 * the same values in the same order p = 0..K-1 as every other path, so the
 * results are theirs to the bit (a padding tap reads a border zero, +0, as
 * the padded copy and im2col do). */
#include "nn/nn_internal.h"
#include "nn/v16.h"

#include "cwba/core.h"

#include <limits.h>
#include <math.h>
#include <string.h>

size_t nn_blk_floats(int c, int n, int h, int w, int pb)
{
    return (size_t)(c / NN_CB) * (size_t)n * (size_t)(h + 2 * pb) * (size_t)(w + 2 * pb) * NN_CB;
}

void nn_blk_clear_border(const nn_blk *t)
{
    if (t->pb == 0) return;
    const long wp = nn_blk_wp(t);
    const size_t rowf = (size_t)wp * NN_CB, sidef = (size_t)t->pb * NN_CB;
    for (int cb = 0; cb < t->c / NN_CB; cb++)
        for (int n = 0; n < t->n; n++) {
            float *top = t->d + nn_blk_off(t, cb, n, -t->pb, -t->pb);
            memset(top, 0, (size_t)t->pb * rowf * sizeof(float));
            memset(top + (size_t)(t->h + t->pb) * rowf, 0, (size_t)t->pb * rowf * sizeof(float));
            for (int y = 0; y < t->h; y++) {
                float *row = t->d + nn_blk_off(t, cb, n, y, -t->pb);
                memset(row, 0, sidef * sizeof(float));
                memset(row + (size_t)(t->pb + t->w) * NN_CB, 0, sidef * sizeof(float));
            }
        }
}

/* ------------------------------------------------- layout changes, rows */

typedef enum row_op { R_FROM_CNHW, R_TO_CNHW, R_BN, R_MAXPOOL } row_op;

typedef struct row_job {
    row_op op;
    const nn_blk *a; /* the blocked tensor (for R_MAXPOOL the output) */
    const nn_blk *in;
    float *cnhw;     /* (C, N, H, W) side of a layout change */
    const float *alpha, *beta;
    int relu;
    int k, s, pad;
    cwba_isa isa; /* whose kernels run */
} row_job;

/* The row kernels, once per ISA. */
#define V16_TEMPLATE "nn/blocked_tmpl.h"
#include "nn/v16_each.h"

#ifdef NN_X86
/* r[i][l] -> r[l][i]: 16 x 16 floats. */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4g + j] now holds elements j, j + 4, j + 8, j + 12 of rows 4g..4g+3,
     * one per 128-bit lane. */
    for (int j = 0; j < 4; j++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        t[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[j + 8] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[j + 4] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[j + 12] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* One row of a layout change, 16 columns at a time: planes pl + l * ps
 * (l < 16) <-> the blocked row. */
__attribute__((target("avx512f"))) static void change_row_avx512(float *row, float *pl, size_t ps,
                                                                int w, int to_blk)
{
    for (int x0 = 0; x0 < w; x0 += 16) {
        int nx = w - x0 < 16 ? w - x0 : 16;
        __mmask16 keep = (__mmask16)((1u << nx) - 1u);
        __m512 r[16];
        if (to_blk) {
            for (int l = 0; l < 16; l++) r[l] = _mm512_maskz_loadu_ps(keep, pl + l * ps + x0);
            transpose16(r);
            for (int x = 0; x < nx; x++) _mm512_storeu_ps(row + (size_t)(x0 + x) * NN_CB, r[x]);
        } else {
            for (int x = 0; x < 16; x++)
                r[x] = x < nx ? _mm512_loadu_ps(row + (size_t)(x0 + x) * NN_CB) : _mm512_setzero_ps();
            transpose16(r);
            for (int l = 0; l < 16; l++) _mm512_mask_storeu_ps(pl + l * ps + x0, keep, r[l]);
        }
    }
}

/* r[i][l] -> r[l][i]: 8 x 8 floats. */
__attribute__((target("avx2,fma"))) static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

/* change_row_avx512 with 8 columns and 8 planes at a time. */
__attribute__((target("avx2,fma"))) static void change_row_avx2(float *row, float *pl, size_t ps,
                                                                 int w, int to_blk)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int x0 = 0; x0 < w; x0 += 8) {
        int nx = w - x0 < 8 ? w - x0 : 8;
        __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(nx), lane);
        for (int h = 0; h < 2; h++) {
            __m256 r[8];
            float *p0 = pl + (size_t)8 * h * ps + x0, *b0 = row + (size_t)x0 * NN_CB + 8 * h;
            if (to_blk) {
                for (int l = 0; l < 8; l++) r[l] = _mm256_maskload_ps(p0 + l * ps, keep);
                transpose8(r);
                for (int x = 0; x < nx; x++) _mm256_storeu_ps(b0 + (size_t)x * NN_CB, r[x]);
            } else {
                for (int x = 0; x < 8; x++)
                    r[x] = x < nx ? _mm256_loadu_ps(b0 + (size_t)x * NN_CB) : _mm256_setzero_ps();
                transpose8(r);
                for (int l = 0; l < 8; l++) _mm256_maskstore_ps(p0 + l * ps, keep, r[l]);
            }
        }
    }
}
#endif

static void row_range(const row_job *j, long r0, long r1)
{
    const nn_blk *t = j->a;
    for (long r = r0; r < r1; r++) {
        int y = (int)(r % t->h);
        int n = (int)(r / t->h % t->n);
        int cb = (int)(r / t->h / t->n);
        float *row = t->d + nn_blk_off(t, cb, n, y, 0);
        switch (j->op) {
        case R_FROM_CNHW:
        case R_TO_CNHW:
#ifdef NN_X86
            if (j->isa == CWBA_ISA_AVX512 || j->isa == CWBA_ISA_AVX2) {
                size_t ps = (size_t)t->n * t->h * t->w;
                float *pl = j->cnhw + (size_t)cb * NN_CB * ps + ((size_t)n * t->h + y) * t->w;
                if (j->isa == CWBA_ISA_AVX512)
                    change_row_avx512(row, pl, ps, t->w, j->op == R_FROM_CNHW);
                else
                    change_row_avx2(row, pl, ps, t->w, j->op == R_FROM_CNHW);
                break;
            }
#endif
            for (int l = 0; l < NN_CB; l++) {
                float *pl = j->cnhw + (((size_t)(cb * NN_CB + l) * t->n + n) * t->h + y) * t->w;
                if (j->op == R_FROM_CNHW)
                    for (int x = 0; x < t->w; x++) row[(size_t)x * NN_CB + l] = pl[x];
                else
                    for (int x = 0; x < t->w; x++) pl[x] = row[(size_t)x * NN_CB + l];
            }
            break;
        case R_BN:
#ifdef NN_X86
            if (j->isa == CWBA_ISA_AVX512) {
                bn_row_avx512(j, row, cb, t->w);
                break;
            }
            if (j->isa == CWBA_ISA_AVX2) {
                bn_row_avx2(j, row, cb, t->w);
                break;
            }
#endif
#ifdef NN_NEON
            if (j->isa == CWBA_ISA_NEON) {
                bn_row_neon(j, row, cb, t->w);
                break;
            }
#endif
            bn_row_scalar(j, row, cb, t->w);
            break;
        case R_MAXPOOL:
#ifdef NN_X86
            if (j->isa == CWBA_ISA_AVX512) {
                maxpool_row_avx512(j, cb, n, y);
                break;
            }
            if (j->isa == CWBA_ISA_AVX2) {
                maxpool_row_avx2(j, cb, n, y);
                break;
            }
#endif
#ifdef NN_NEON
            if (j->isa == CWBA_ISA_NEON) {
                maxpool_row_neon(j, cb, n, y);
                break;
            }
#endif
            maxpool_row_scalar(j, cb, n, y);
            break;
        }
    }
}

static void row_task(void *ctx, int tid, int nt)
{
    const row_job *j = ctx;
    long rows = (long)j->a->c / NN_CB * j->a->n * j->a->h;
    long r0 = rows * tid / nt, r1 = rows * (tid + 1) / nt;
    if (r0 < r1) row_range(j, r0, r1);
}

static void run_rows(nn_pool *pool, row_job *j)
{
    j->isa = cwba_isa_current();
    size_t floats = (size_t)j->a->c * j->a->n * j->a->h * j->a->w;
    if (nn_pool_size(pool) == 1 || floats < 65536)
        row_task((void *)j, 0, 1);
    else
        nn_pool_run(pool, row_task, (void *)j);
}

void nn_blk_from_cnhw(nn_pool *pool, const float *src, const nn_blk *dst)
{
    nn_blk_clear_border(dst);
    row_job j = {.op = R_FROM_CNHW, .a = dst, .cnhw = (float *)src};
    run_rows(pool, &j);
}

void nn_blk_to_cnhw(nn_pool *pool, const nn_blk *src, float *dst)
{
    row_job j = {.op = R_TO_CNHW, .a = src, .cnhw = dst};
    run_rows(pool, &j);
}

void nn_blk_bn(nn_pool *pool, const nn_blk *t, const float *alpha, const float *beta, int relu)
{
    row_job j = {.op = R_BN, .a = t, .alpha = alpha, .beta = beta, .relu = relu};
    run_rows(pool, &j);
}

void nn_blk_maxpool(nn_pool *pool, const nn_blk *in, const nn_blk *out, int k, int stride, int pad)
{
    nn_blk_clear_border(out);
    row_job j = {.op = R_MAXPOOL, .a = out, .in = in, .k = k, .s = stride, .pad = pad};
    run_rows(pool, &j);
}

/* ------------------------------------------------------------ convolution */

/* Output positions j = (n, y, x) of an (oh, ow) plane, walked in order. */
typedef struct pos_walk {
    int oh, ow, n, y, x;
} pos_walk;

static pos_walk walk_at(int oh, int ow, long j0)
{
    const long ohw = (long)oh * ow;
    return (pos_walk){.oh = oh, .ow = ow, .n = (int)(j0 / ohw), .y = (int)(j0 % ohw / ow),
                      .x = (int)(j0 % ow)};
}

static void walk_next(pos_walk *w)
{
    if (++w->x == w->ow) {
        w->x = 0;
        if (++w->y == w->oh) {
            w->y = 0;
            w->n++;
        }
    }
}

static void final_pos(const void *vctx, long j0, int cnt, long *ooff, long *roff)
{
    const nn_blk_store *s = vctx;
    for (pos_walk w = walk_at(s->oh, s->ow, j0); cnt > 0; cnt--, walk_next(&w)) {
        *ooff++ = nn_blk_off(s->out, 0, w.n, w.y, w.x);
        *roff++ = s->res ? nn_blk_off(s->res, 0, w.n, w.y, w.x) : 0;
    }
}

void nn_blk_final(nn_tfinal *f, const nn_blk_store *s)
{
    *f = (nn_tfinal){.out = s->out->d,
                     .ostep = (long)s->out->n * nn_blk_plane(s->out) * NN_CB,
                     .res = s->res ? s->res->d : NULL,
                     .rstep = s->res ? (long)s->res->n * nn_blk_plane(s->res) * NN_CB : 0,
                     .bias = s->ep->bias,
                     .alpha = s->ep->alpha,
                     .beta = s->ep->beta,
                     .relu = s->ep->relu,
                     .opos = final_pos,
                     .octx = s};
}

int nn_blk_conv_applies(const nn_conv_geom *g, int cout, const nn_blk *in)
{
    return cout > 0 && cout % NN_T_OC == 0 && g->cin == in->c &&
           g->cin % NN_CB == 0 && g->h == in->h && g->w == in->w && g->pad <= in->pb &&
           g->stride >= 1 && g->oh >= 1 && g->ow >= 1 &&
           nn_blk_floats(in->c, in->n, in->h, in->w, in->pb) <= INT_MAX;
}

typedef struct blk_conv_ctx {
    const nn_blk *in;
    int s, pad;
    nn_blk_store st;
} blk_conv_ctx;

static void blk_pos(const void *vctx, long j0, int cnt, long *boff)
{
    const blk_conv_ctx *c = vctx;
    for (pos_walk w = walk_at(c->st.oh, c->st.ow, j0); cnt > 0; cnt--, walk_next(&w))
        *boff++ = nn_blk_off(c->in, 0, w.n, w.y * c->s - c->pad, w.x * c->s - c->pad);
}

void nn_blk_conv(nn_pool *pool, const float *tpack, int cout, const nn_conv_geom *g,
                 const nn_blk *in, const nn_blk *out, const nn_epilogue *ep, const nn_blk *res,
                 float *const *scratch, int *off)
{
    const long wp = nn_blk_wp(in), cstride = (long)in->n * nn_blk_plane(in) * NN_CB;
    int p = 0;
    for (int c = 0; c < g->cin; c++)
        for (int ki = 0; ki < g->k; ki++)
            for (int kj = 0; kj < g->k; kj++)
                off[p++] = (int)((c / NN_CB) * cstride + ((long)ki * wp + kj) * NN_CB + c % NN_CB);
    nn_blk_clear_border(out);
    blk_conv_ctx cc = {.in = in, .s = g->stride, .pad = g->pad,
                       .st = {.out = out, .res = res, .ep = ep, .oh = g->oh, .ow = g->ow}};
    nn_tfinal fin;
    nn_blk_final(&fin, &cc.st);
    nn_gemm_direct_t gt = {.m = cout, .k = p, .npos = (long)in->n * g->oh * g->ow, .wt = tpack,
                           .b = in->d, .off = off, .pos = blk_pos, .fin = &fin,
                           .ctx = &cc};
    nn_gemm_direct_t_run(pool, &gt, scratch);
}

/* ------------------------------------------------ the image, (C, N, H, W) */

size_t nn_blk_image_tmp_floats(const nn_conv_geom *g, int batch)
{
    return (size_t)g->cin * (size_t)batch * (size_t)(g->h + 2 * g->pad) * (size_t)(g->w + 2 * g->pad);
}

int nn_blk_image_conv_applies(const nn_conv_geom *g, int batch, int cout)
{
    return cout > 0 && cout % NN_T_OC == 0 && g->cin >= 1 && batch >= 1 &&
           g->stride >= 1 && g->oh >= 1 && g->ow >= 1 && nn_blk_image_tmp_floats(g, batch) <= INT_MAX;
}

typedef struct image_ctx {
    const float *in;
    float *buf;
    const nn_conv_geom *g;
    int batch;
} image_ctx;

/* Plane q = (c, n) of the input -> its zero-padded copy (hp, wp). */
static void image_pad_task(void *vctx, int tid, int nt)
{
    const image_ctx *x = vctx;
    const nn_conv_geom *g = x->g;
    const int p = g->pad, wp = g->w + 2 * p, hp = g->h + 2 * p, planes = g->cin * x->batch;
    for (int q = planes * tid / nt; q < planes * (tid + 1) / nt; q++) {
        const float *src = x->in + (size_t)q * g->h * g->w;
        float *dst = x->buf + (size_t)q * hp * wp;
        memset(dst, 0, (size_t)p * wp * sizeof(float));
        memset(dst + (size_t)(p + g->h) * wp, 0, (size_t)p * wp * sizeof(float));
        for (int y = 0; y < g->h; y++) {
            float *row = dst + (size_t)(p + y) * wp;
            memset(row, 0, (size_t)p * sizeof(float));
            memcpy(row + p, src + (size_t)y * g->w, (size_t)g->w * sizeof(float));
            memset(row + p + g->w, 0, (size_t)p * sizeof(float));
        }
    }
}

typedef struct image_pos_ctx {
    int oh, ow, s;
    long hp, wp;
} image_pos_ctx;

/* Position (n, y, x) reads channel 0's window at padded (s*y, s*x) of
 * image n. */
static void image_pos(const void *vctx, long j0, int cnt, long *boff)
{
    const image_pos_ctx *c = vctx;
    for (pos_walk w = walk_at(c->oh, c->ow, j0); cnt > 0; cnt--, walk_next(&w))
        *boff++ = ((long)w.n * c->hp + (long)w.y * c->s) * c->wp + (long)w.x * c->s;
}

void nn_blk_conv_image(nn_pool *pool, const float *tpack, int cout, const nn_conv_geom *g,
                       const float *in, int batch, const nn_blk *out, const nn_epilogue *ep,
                       float *const *scratch, float *tmp, int *off)
{
    image_ctx ic = {.in = in, .buf = tmp, .g = g, .batch = batch};
    if (nn_pool_size(pool) == 1 || (size_t)g->cin * batch * g->h * g->w < 65536)
        image_pad_task(&ic, 0, 1);
    else
        nn_pool_run(pool, image_pad_task, &ic);
    image_pos_ctx pc = {.oh = g->oh, .ow = g->ow, .s = g->stride, .hp = g->h + 2L * g->pad,
                        .wp = g->w + 2L * g->pad};
    const long chan = (long)batch * pc.hp * pc.wp;
    int p = 0;
    for (int c = 0; c < g->cin; c++)
        for (int ki = 0; ki < g->k; ki++)
            for (int kj = 0; kj < g->k; kj++) off[p++] = (int)(c * chan + ki * pc.wp + kj);
    nn_blk_clear_border(out);
    nn_blk_store st = {.out = out, .ep = ep, .oh = g->oh, .ow = g->ow};
    nn_tfinal fin;
    nn_blk_final(&fin, &st);
    nn_gemm_direct_t gt = {.m = cout, .k = p, .npos = (long)batch * g->oh * g->ow, .wt = tpack,
                           .b = tmp, .off = off, .pos = image_pos, .fin = &fin, .ctx = &pc};
    nn_gemm_direct_t_run(pool, &gt, scratch);
}
