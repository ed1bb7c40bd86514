/* Convolution without im2col.
 *
 * The input is copied once into a zero-padded buffer; for stride s > 1 the
 * padded plane is split into its s x s phases (rows ri + s*y, columns
 * rj + s*x), each phase (hq, wq) = (ceil(hp / s), ceil(wp / s)), laid out as
 * (cin, phase, batch, hq, wq); phases no tap reads (ri or rj >= k, as for a
 * 1x1 stride-2 convolution) are left out. Tap p = (c, ki, kj) of output position (y, x)
 * then sits at off[p] + y * wq + x, where off[p] addresses phase
 * (ki mod s, kj mod s) of channel c shifted by (ki / s, kj / s): for 16
 * consecutive output columns the 16 values of one row of the im2col matrix
 * are 16 consecutive floats, so the GEMM reads them in place
 * (nn_gemm_direct_run) instead of packing K x 16 floats per panel. The
 * output columns run over the phase width (and, between images, the phase
 * height); the positions x >= ow or y >= oh that this adds are computed and
 * dropped when the tiles are copied out.
 *
 * Bit-identical to the im2col path: each kept element reads the same values
 * (a padding tap is +0 here as there) in the same order p = 0..K-1 through
 * the same fused-multiply-add chain from 0; tests compare the two. */
#include "nn/nn_internal.h"

#include <limits.h>
#include <string.h>

typedef struct padded {
    int s, ps, hq, wq; /* stride; phases per axis kept; phase plane */
    long plane;    /* hq * wq */
    long ncomp;    /* computed columns: (batch - 1) * plane + oh * wq */
    long need;     /* floats of the buffer incl. the read slack */
} padded;

static int padded_geom(const nn_conv_geom *g, int batch, padded *d)
{
    if (g->stride < 1 || g->stride > 4 || g->oh < 1 || g->ow < 1 || batch < 1) return 0;
    d->s = g->stride;
    d->ps = g->k < d->s ? g->k : d->s; /* taps reach phases 0 .. k-1 only */
    d->hq = (g->h + 2 * g->pad + d->s - 1) / d->s;
    d->wq = (g->w + 2 * g->pad + d->s - 1) / d->s;
    d->plane = (long)d->hq * d->wq;
    d->ncomp = (long)(batch - 1) * d->plane + (long)g->oh * d->wq;
    /* The last column panel reads up to 15 floats beyond the last column,
     * from the highest tap offset: at most (k - 1) / s + 15 past the phases
     * (since s * (oh - 1) + k <= hp, oh + (k - 1) / s <= hq). */
    d->need = (long)g->cin * d->ps * d->ps * batch * d->plane + g->k + NN_NR;
    return d->need <= INT_MAX;
}

double nn_directconv_overhead(const nn_conv_geom *g, int batch)
{
    padded d;
    if (!padded_geom(g, batch, &d)) return 0.0;
    long computed = (d.ncomp + NN_NR - 1) / NN_NR * NN_NR; /* whole column panels */
    return (double)computed / ((double)batch * g->oh * g->ow);
}

int nn_directconv_applies(const nn_conv_geom *g, int batch)
{
    padded d;
    return padded_geom(g, batch, &d);
}

/* When the direct path is faster than im2col (same-run A/B of both on the
 * layers of the three networks at 224 px batch 1 and 64 px batch 64, 1 and
 * 2 threads): it saves the packing of K x 16 floats per column panel but
 * adds the padded copy, the copy-out of the tiles and the dropped columns.
 * Measured: 1.1-1.4x on stride-1 3x3 layers whose computed columns (whole
 * panels) exceed the kept ones by <= 16% (56x56: 4%, 28x28: 8%, 14x14:
 * 14%), 1.0-1.16x on AlexNet's 13x13 layers (23%), 1.23x on ResNet's 7x7
 * stride-2 conv1, 1.67x on AlexNet's 11x11 stride-4 conv1; slower with more
 * dropped columns (batch-64 planes of 16x16 and less, 26-124%: 0.55-0.93x),
 * with small K (VGG16's first layer, K = 27: 0.77x) and on 1x1 downsamples
 * (0.53-0.85x: the copy outweighs the product). 7x7 planes at batch 1 (31%
 * dropped) are a near tie: a lone layer ran 0.86-0.97x against im2col with
 * its narrow last column, but ResNet18's 256x14x14 probe (layer4 at 7x7)
 * ran 0.92x when they went to im2col, so they stay here. */
int nn_directconv_pays(const nn_conv_geom *g, int batch)
{
    double ovh = nn_directconv_overhead(g, batch);
    if (ovh <= 0.0 || g->k < 2 || (long)g->cin * g->k * g->k < 128) return 0;
    return ovh <= 1.25 || (batch == 1 && g->ow < NN_NR && ovh <= 1.35);
}

/* The channels-on-lanes variant (nn_gemm_direct_t_run) computes only the
 * kept positions, with the weights packed for it (t-pack): it needs
 * AVX-512, whole 64-channel blocks and at least 20 positions (covered by
 * 5- and 6-position tiles). */
int nn_directconv_t_applies(const nn_conv_geom *g, int batch, int cout)
{
    padded d;
    long npos = (long)batch * g->oh * g->ow;
    return padded_geom(g, batch, &d) && cout > 0 && cout % 64 == 0 && npos >= 20;
}

/* Where it is the faster one (per-layer timings of the three networks at
 * 224 px batch 1, alternating both variants, 2 threads; docs/performance.md):
 * 1.05-1.2x on planes up to 56x56 with K >= 1024 (ResNet18 layers 2-4,
 * VGG16 blocks 3-5, AlexNet's 27x27 and 13x13 layers) and on 7x7 and 14x14
 * planes 1.2-1.5x; level or slower with K < 1024 (ResNet's 56x56 and its
 * stride-2 entry to 28x28: 0.9x; conv1, K = 147: 0.75x) and on 112x112. */
int nn_directconv_t_pays(const nn_conv_geom *g, int batch, int cout)
{
    return nn_isa_avx512() && nn_directconv_t_applies(g, batch, cout) &&
           nn_directconv_pays(g, batch) && (long)batch * g->oh * g->ow <= 56 * 56 &&
           (long)g->cin * g->k * g->k >= 1024;
}

/* Columns of the output tile a chunk of kept positions spans: NN_T_CHUNK
 * positions and the dropped columns between them, wq - ow per row and
 * plane - oh * wq per image; a chunk touches at most chunk / ow + 2 rows
 * and chunk / (oh * ow) + 2 images. */
static long t_span(const nn_conv_geom *g, const padded *d)
{
    long ohw = (long)g->oh * g->ow;
    return NN_T_CHUNK + (NN_T_CHUNK / g->ow + 2) * d->wq + (NN_T_CHUNK / ohw + 2) * d->plane;
}

size_t nn_directconv_t_scratch_size(const nn_conv_geom *g)
{
    padded d;
    if (!padded_geom(g, 1, &d)) return 0;
    return nn_gemm_direct_t_scratch_size((size_t)NN_T_OC * (size_t)t_span(g, &d));
}

size_t nn_directconv_tmp_floats(const nn_conv_geom *g, int batch)
{
    padded d;
    return padded_geom(g, batch, &d) ? (size_t)d.need : 0;
}

#ifdef NN_X86
/* row[t] = in[rj + s * t - p] for t < wq, +0 where that leaves [0, w), 16
 * at a time: for s = 2 the even lanes of two loads (one permutation), else
 * a masked gather (lanes outside the row are not read). */
__attribute__((target("avx512f"))) static void phase_row_avx512(const float *in, int w, int rj,
                                                               int s, int p, float *row, int wq)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps();
    if (s == 2) {
        const __m512i ev = _mm512_add_epi32(lane, lane);
        for (int t = 0; t < wq; t += 16) {
            __mmask16 keep = wq - t >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (wq - t)) - 1u);
            int start = rj - p + 2 * t;
            __m512 lo = nn_load16_fill(in, start, w, zero), hi = nn_load16_fill(in, start + 16, w, zero);
            _mm512_mask_storeu_ps(row + t, keep, _mm512_permutex2var_ps(lo, ev, hi));
        }
        return;
    }
    const __m512i step = _mm512_set1_epi32(16 * s), wv = _mm512_set1_epi32(w);
    __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(s)),
                                   _mm512_set1_epi32(rj - p));
    for (int t = 0; t < wq; t += 16) {
        __mmask16 keep = wq - t >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (wq - t)) - 1u);
        __mmask16 inside = _mm512_cmplt_epu32_mask(idx, wv) & keep; /* a negative index is large */
        __m512 v = _mm512_mask_i32gather_ps(zero, inside, idx, in, 4);
        _mm512_mask_storeu_ps(row + t, keep, v);
        idx = _mm512_add_epi32(idx, step);
    }
}
#endif

typedef struct pad_ctx {
    const float *in;
    float *buf;
    int cin, batch, h, w, pad;
    padded d;
} pad_ctx;

/* Input plane q = (c, n) -> its s * s phases of the padded plane. */
static void pad_task(void *vctx, int tid, int nt)
{
    const pad_ctx *x = vctx;
    const int planes = x->cin * x->batch, s = x->d.s, ps = x->d.ps, hq = x->d.hq, wq = x->d.wq;
    const int p = x->pad;
    const int vec = nn_isa_avx512();
    (void)vec; /* read by the x86 path only */
    int q0 = (int)((long)planes * tid / nt), q1 = (int)((long)planes * (tid + 1) / nt);
    for (int q = q0; q < q1; q++) {
        const float *src = x->in + (size_t)q * x->h * x->w;
        int c = q / x->batch, n = q % x->batch;
        for (int ri = 0; ri < ps; ri++)
            for (int rj = 0; rj < ps; rj++) {
                long ph = ((long)c * ps * ps + ri * ps + rj) * x->batch + n;
                float *dst = x->buf + ph * x->d.plane;
                for (int y = 0; y < hq; y++) {
                    float *row = dst + (size_t)y * wq;
                    int iy = ri + s * y - p;
                    if ((unsigned)iy >= (unsigned)x->h) {
                        memset(row, 0, (size_t)wq * sizeof(float));
                        continue;
                    }
                    const float *in = src + (size_t)iy * x->w;
                    if (s == 1) {
                        for (int t = 0; t < p; t++) row[t] = 0.0f;
                        memcpy(row + p, in, (size_t)x->w * sizeof(float));
                        for (int t = p + x->w; t < wq; t++) row[t] = 0.0f;
                        continue;
                    }
#ifdef NN_X86
                    if (vec) {
                        phase_row_avx512(in, x->w, rj, s, p, row, wq);
                        continue;
                    }
#endif
                    for (int t = 0; t < wq; t++) {
                        int ix = rj + s * t - p;
                        row[t] = (unsigned)ix < (unsigned)x->w ? in[ix] : 0.0f;
                    }
                }
            }
    }
    if (tid == nt - 1) {
        long used = (long)planes * ps * ps * x->d.plane;
        memset(x->buf + used, 0, (size_t)(x->d.need - used) * sizeof(float));
    }
}

typedef struct emit_ctx {
    float *out;
    const nn_epilogue *ep;
    size_t ldo; /* batch * oh * ow */
    int oh, ow, wq;
    long plane;
} emit_ctx;

/* Copies the kept columns of the tile to the output, through the epilogue. */
static void emit(const void *vctx, const float *tile, size_t ldt, int r0, int r1, long c0, long c1)
{
    const emit_ctx *e = vctx;
    const long ohw = (long)e->oh * e->ow;
    for (int i = r0; i < r1; i++) {
        const float *src = tile + (size_t)(i - r0) * ldt;
        float *dst = e->out + (size_t)i * e->ldo;
        const float *res = e->ep->res ? e->ep->res + (size_t)i * e->ldo : NULL;
        long j = c0;
        while (j < c1) {
            long n = j / e->plane, r = j % e->plane;
            long y = r / e->wq, x = r % e->wq;
            if (y >= e->oh) {
                j = (n + 1) * e->plane;
                continue;
            }
            if (x >= e->ow) {
                j += e->wq - x;
                continue;
            }
            long len = e->ow - x < c1 - j ? e->ow - x : c1 - j;
            long o = n * ohw + y * e->ow + x;
            nn_epilogue_row(e->ep, i, src + (j - c0), dst + o, res ? res + o : NULL, len);
            j += len;
        }
    }
}

/* The channels-on-lanes variant's positions and results: kept position j
 * = (n, y, x) is column n * plane + y * wq + x of the direct path's output;
 * a chunk's results are transposed into a (64, columns) tile in the
 * thread's spare scratch and go through emit. */
typedef struct t_ctx {
    const emit_ctx *ec;
    long ohw, plane;
    int ow, wq;
} t_ctx;

static long t_col(const t_ctx *t, long j)
{
    long n = j / t->ohw, r = j % t->ohw;
    return n * t->plane + (r / t->ow) * t->wq + r % t->ow;
}

static void t_pos(const void *vctx, long j0, int cnt, long *boff)
{
    for (int j = 0; j < cnt; j++) boff[j] = t_col(vctx, j0 + j);
}

static void t_store(const void *vctx, const float *acc, long j0, int cnt, int r0, int r1,
                    float *tile)
{
    const t_ctx *t = vctx;
    long cols[NN_T_CHUNK] = {0};
    t_pos(t, j0, cnt, cols);
    const long c0 = cols[0], c1 = cols[cnt - 1] + 1;
    const size_t ldt = (size_t)(c1 - c0);
    for (int i = r0; i < r1; i++) {
        float *trow = tile + (size_t)(i - r0) * ldt - c0;
        const float *a = acc + (i - r0);
        for (int j = 0; j < cnt; j++) trow[cols[j]] = a[(size_t)j * NN_T_OC];
    }
    emit(t->ec, tile, ldt, r0, r1, c0, c1);
}

/* The padded copy of the input and the tap offsets; returns K. */
static int prepare(nn_pool *pool, const nn_conv_geom *g, const float *in, int batch,
                   const padded *d, float *tmp, int *off)
{
    pad_ctx pc = {.in = in, .buf = tmp, .cin = g->cin, .batch = batch, .h = g->h, .w = g->w,
                  .pad = g->pad, .d = *d};
    nn_pool_run(pool, pad_task, &pc);
    const int s = d->s, ps = d->ps;
    int p = 0;
    for (int c = 0; c < g->cin; c++)
        for (int ki = 0; ki < g->k; ki++)
            for (int kj = 0; kj < g->k; kj++) {
                long ph = ((long)c * ps * ps + (ki % s) * ps + kj % s) * batch;
                off[p++] = (int)(ph * d->plane + (long)(ki / s) * d->wq + kj / s);
            }
    return p;
}

void nn_directconv_run(nn_pool *pool, const float *apack, const float *tpack, int cout,
                       const nn_conv_geom *g, const float *in, int batch, float *out,
                       const nn_epilogue *ep, float *const *scratch, float *tmp, int *off)
{
    padded d;
    if (!padded_geom(g, batch, &d)) return; /* callers check nn_directconv_applies */
    int p = prepare(pool, g, in, batch, &d, tmp, off);
    emit_ctx ec = {.out = out, .ep = ep, .ldo = (size_t)batch * g->oh * g->ow, .oh = g->oh,
                   .ow = g->ow, .wq = d.wq, .plane = d.plane};
    if (tpack && nn_directconv_t_pays(g, batch, cout)) {
        t_ctx tc = {.ec = &ec, .ohw = (long)g->oh * g->ow, .plane = d.plane, .ow = g->ow, .wq = d.wq};
        nn_gemm_direct_t gt = {.m = cout, .k = p, .npos = (long)batch * tc.ohw, .wt = tpack,
                               .b = tmp, .off = off, .pos = t_pos, .store = t_store, .ctx = &tc};
        nn_gemm_direct_t_run(pool, &gt, scratch);
        return;
    }
    nn_gemm_direct gd = {.m = cout, .k = p, .n = d.ncomp, .apack = apack, .b = tmp, .off = off,
                         .emit = emit, .emit_ctx = &ec};
    nn_gemm_direct_run(pool, &gd, scratch);
}
