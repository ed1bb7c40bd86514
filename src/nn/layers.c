/* Layer kernels other than the GEMM itself, with PyTorch's eval-mode
 * arithmetic. Activations are planes of (h, w) floats; the callers handle the
 * (C, N, H, W) layout. */
#include "nn/nn_internal.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cwba/core.h"

int nn_out_side(int in, int k, int stride, int pad)
{
    long span = (long)in + 2L * pad - k;
    if (span < 0 || stride <= 0) return 0;
    return (int)(span / stride + 1);
}

/* A run of a panel's columns that lie on one output row of one image. */
typedef struct im2col_seg {
    int j, len;  /* columns j .. j+len-1 of the panel */
    size_t base; /* offset of the image's plane */
    int ih0;     /* input row for ki = 0 */
    int iw0;     /* input column of the first output column for kj = 0 */
} im2col_seg;

#ifdef NN_X86
/* One panel's 16 columns on one input row (the common case), stride 1 or
 * 2: masked loads, zeros where the window leaves the image (masked-out
 * lanes are never read). */
__attribute__((target("avx512f"))) static void im2col_row_avx512(const float *src, int iw0, int w,
                                                                int s, float *o)
{
    const uintptr_t base = (uintptr_t)src;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i wv = _mm512_set1_epi32(w);
    __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(iw0), lane);
    __mmask16 m0 = _mm512_cmplt_epu32_mask(pos, wv); /* 0 <= pos < w */
    const float *p0 = (const float *)(base + (uintptr_t)((intptr_t)iw0 * 4));
    __m512 v0 = _mm512_maskz_loadu_ps(m0, p0);
    if (s == 1) {
        _mm512_storeu_ps(o, v0);
        return;
    }
    __m512i pos1 = _mm512_add_epi32(pos, _mm512_set1_epi32(16));
    __mmask16 m1 = _mm512_cmplt_epu32_mask(pos1, wv);
    __m512 v1 = _mm512_maskz_loadu_ps(m1, p0 + 16);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    _mm512_storeu_ps(o, _mm512_permutex2var_ps(v0, even, v1));
}
#endif

void nn_pack_b_im2col(const void *vctx, int p0, int np, int k0, int kc, float *dst)
{
    const nn_im2col_ctx *x = vctx;
    const nn_conv_geom *g = &x->g;
    const size_t plane = (size_t)g->h * g->w;
    const size_t chan = (size_t)x->batch * plane; /* stride between input channels */
    const int ohw = g->oh * g->ow, s = g->stride;
    const long ncols = (long)x->batch * ohw;
    const int kk = g->k * g->k;
#ifdef NN_X86
    const int vec = cwba_isa_current() == CWBA_ISA_AVX512 && NN_NR == 16;
#endif
    for (int pi = 0; pi < np; pi++) {
        float *d = dst + (size_t)pi * kc * NN_NR;
        im2col_seg seg[NN_NR];
        int nseg = 0, used = 0;
        long col = (long)(p0 + pi) * NN_NR;
        while (used < NN_NR && col < ncols) {
            long n = col / ohw, r = col % ohw;
            int oh = (int)(r / g->ow), ow0 = (int)(r % g->ow);
            long len = g->ow - ow0;
            if (len > NN_NR - used) len = NN_NR - used;
            if (len > ncols - col) len = ncols - col;
            seg[nseg++] = (im2col_seg){used, (int)len, (size_t)n * plane, oh * s - g->pad,
                                       ow0 * s - g->pad};
            used += (int)len;
            col += len;
        }
        /* Row p of the column matrix is (c, ki, kj) = (p / k^2, p / k % k, p % k). */
        int c = k0 / kk, ki = k0 % kk / g->k, kj = k0 % g->k;
        for (int p = 0; p < kc; p++, d += NN_NR) {
            const float *ic = x->in + (size_t)c * chan;
            for (int q = 0; q < nseg; q++) {
                const im2col_seg *sg = &seg[q];
                float *o = d + sg->j;
                int ih = sg->ih0 + ki;
                if ((unsigned)ih >= (unsigned)g->h) {
                    for (int t = 0; t < sg->len; t++) o[t] = 0.0f;
                    continue;
                }
                const float *src = ic + sg->base + (size_t)ih * g->w;
                int iw0 = sg->iw0 + kj;
#ifdef NN_X86
                if (vec && sg->len == NN_NR && (s == 1 || s == 2)) {
                    im2col_row_avx512(src, iw0, g->w, s, o);
                    continue;
                }
#endif
                if (s == 1) {
                    /* Contiguous: zeros left of the image, a copy, zeros right. */
                    int lo = iw0 < 0 ? -iw0 : 0;
                    int hi = g->w - iw0 < sg->len ? g->w - iw0 : sg->len;
                    if (lo > sg->len) lo = sg->len;
                    if (hi < lo) hi = lo;
                    for (int t = 0; t < lo; t++) o[t] = 0.0f;
                    /* at most 16 floats: a plain loop beats a memcpy call */
                    for (int t = lo; t < hi; t++) o[t] = src[iw0 + t];
                    for (int t = hi; t < sg->len; t++) o[t] = 0.0f;
                } else {
                    for (int t = 0; t < sg->len; t++) {
                        int iw = iw0 + t * s;
                        o[t] = (unsigned)iw < (unsigned)g->w ? src[iw] : 0.0f;
                    }
                }
            }
            for (int t = used; t < NN_NR; t++) d[t] = 0.0f; /* padding columns */
            if (++kj == g->k) {
                kj = 0;
                if (++ki == g->k) {
                    ki = 0;
                    c++;
                }
            }
        }
    }
}

void nn_pack_b_matrix(const void *vctx, int p0, int np, int k0, int kc, float *dst)
{
    const nn_matrix_ctx *x = vctx;
    for (int pi = 0; pi < np; pi++) {
        long col0 = (long)(p0 + pi) * NN_NR;
        int cols = x->n - col0 < NN_NR ? (int)(x->n - col0) : NN_NR;
        float *d = dst + (size_t)pi * kc * NN_NR;
        for (int p = k0; p < k0 + kc; p++) {
            const float *row = x->b + (size_t)p * x->ld + col0;
            int j = 0;
            for (; j < cols; j++) d[j] = row[j];
            for (; j < NN_NR; j++) d[j] = 0.0f;
            d += NN_NR;
        }
    }
}

/* Max pooling as PyTorch computes it: the maximum of the window, NaN if the
 * window holds a NaN; among equal maxima (+0 and -0) the first in row-major
 * order, since a value replaces the running maximum only when greater. */
static inline float max_step(float m, float v) { return (v > m || v != v) ? v : m; }

static void maxpool_plane_generic(const float *ip, int h, int w, int k, int stride, int pad,
                                  float *op, int oh, int ow)
{
    for (int y = 0; y < oh; y++) {
        int h0 = y * stride - pad, h1 = h0 + k;
        if (h0 < 0) h0 = 0;
        if (h1 > h) h1 = h;
        for (int x = 0; x < ow; x++) {
            int w0 = x * stride - pad, w1 = w0 + k;
            if (w0 < 0) w0 = 0;
            if (w1 > w) w1 = w;
            float m = -INFINITY;
            for (int i = h0; i < h1; i++)
                for (int j = w0; j < w1; j++) m = max_step(m, ip[(size_t)i * w + j]);
            op[(size_t)y * ow + x] = m;
        }
    }
}

/* Row-segment maxima for output columns [x0, x1) whose windows are clipped
 * by the row's ends. */
#define MAXPOOL_ROW_MAX 1024 /* padded input row */
#define MAXPOOL_RING 8       /* row maxima kept: windows of up to 8 rows */

#ifdef NN_X86
/* max_step on 16 lanes: v where v > m or v is NaN, else m. */
__attribute__((target("avx512f"))) static inline __m512 max_step16(__m512 m, __m512 v)
{
    __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(take, m, v);
}

__attribute__((target("avx512f"))) static inline __m512 load16_ninf(const float *row, int start,
                                                                   int w)
{
    return nn_load16_fill(row, start, w, _mm512_set1_ps(-INFINITY));
}

/* The maxima of 16 windows of k = 2 or 3 elements at stride 2 on one input
 * row, the first window starting at padded position 2 * x0: the even and
 * odd elements come from two loads by one permutation each. */
__attribute__((target("avx512f"))) static inline __m512 row16_s2(const float *row, int w, int pad,
                                                                int k, int x0)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    int s0 = 2 * x0 - pad;
    __m512 lo = load16_ninf(row, s0, w), hi = load16_ninf(row, s0 + 16, w);
    __m512 m = max_step16(_mm512_permutex2var_ps(lo, ev, hi), _mm512_permutex2var_ps(lo, od, hi));
    if (k == 3) {
        __m512 lo2 = load16_ninf(row, s0 + 2, w), hi2 = load16_ninf(row, s0 + 18, w);
        m = max_step16(m, _mm512_permutex2var_ps(lo2, ev, hi2));
    }
    return m;
}

/* One plane of a stride-2 pooling with k = 2 or 3 (torchvision's three),
 * 16 output columns at a time, in the separable order of nn_maxpool: each
 * window row's maximum first, then the rows in order. */
__attribute__((target("avx512f"))) static void maxpool_plane_s2_avx512(const float *ip, int h,
                                                                      int w, int k, int pad,
                                                                      float *op, int oh, int ow)
{
    for (int y = 0; y < oh; y++) {
        int h0 = 2 * y - pad, h1 = h0 + k;
        if (h0 < 0) h0 = 0;
        if (h1 > h) h1 = h;
        float *o = op + (size_t)y * ow;
        /* Row by row, so that each input row is read as one stream; the
         * first row's maxima are stored as they are (max_step(-inf, v) is
         * v, bit for bit). */
        for (int i = h0; i < h1; i++) {
            const float *row = ip + (size_t)i * w;
            for (int x0 = 0; x0 < ow; x0 += 16) {
                __mmask16 keep = ow - x0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ow - x0)) - 1u);
                __m512 r = row16_s2(row, w, pad, k, x0);
                if (i > h0) r = max_step16(_mm512_maskz_loadu_ps(keep, o + x0), r);
                _mm512_mask_storeu_ps(o + x0, keep, r);
            }
        }
        if (h0 >= h1)
            for (int x = 0; x < ow; x++) o[x] = -INFINITY;
    }
}
#endif

/* Maxima over each window's segment of one input row, copied first into a
 * row padded with -inf: a padding value never wins a window (a -inf from
 * the padding and a real -inf are the same value), so every window is read
 * whole, with no clipping at the edges. */
static void row_maxima(const float *row, int w, int k, int stride, int pad, int ow, float *buf,
                       float *rowmax)
{
    const int wp = w + 2 * pad;
    for (int t = 0; t < pad; t++) buf[t] = -INFINITY;
    memcpy(buf + pad, row, (size_t)w * sizeof(float));
    for (int t = pad + w; t < wp; t++) buf[t] = -INFINITY;
    if (k == 3 && stride == 2) {
        for (int x = 0; x < ow; x++)
            rowmax[x] = max_step(max_step(buf[2 * x], buf[2 * x + 1]), buf[2 * x + 2]);
    } else if (k == 2 && stride == 2) {
        for (int x = 0; x < ow; x++) rowmax[x] = max_step(buf[2 * x], buf[2 * x + 1]);
    } else {
        for (int x = 0; x < ow; x++) {
            const float *r = buf + (size_t)x * stride;
            float m = r[0];
            for (int j = 1; j < k; j++) m = max_step(m, r[j]);
            rowmax[x] = m;
        }
    }
}

void nn_maxpool(const float *in, int planes, int h, int w, int k, int stride, int pad, float *out,
                int oh, int ow)
{
    const int vec = nn_isa_avx512(); /* same bits either way */
    (void)vec;                       /* read by the x86 path only */
    for (int pl = 0; pl < planes; pl++) {
        const float *ip = in + (size_t)pl * h * w;
        float *op = out + (size_t)pl * oh * ow;
#ifdef NN_X86
        if (vec && stride == 2 && (k == 2 || k == 3) && pad <= 1) {
            maxpool_plane_s2_avx512(ip, h, w, k, pad, op, oh, ow);
            continue;
        }
#endif
        if ((long)w + 2L * pad > MAXPOOL_ROW_MAX || k > MAXPOOL_RING) {
            maxpool_plane_generic(ip, h, w, k, stride, pad, op, oh, ow);
            continue;
        }
        /* Separable: the maximum over each window's row segment, then over
         * its rows in order. Taking the first greatest value at each stage
         * gives the first in row-major order, and a NaN anywhere survives
         * both stages, so this equals the window scan above. Each input
         * row's maxima are computed once and kept in a ring of
         * MAXPOOL_RING rows (row i in slot i mod MAXPOOL_RING; a window
         * spans at most k <= MAXPOOL_RING rows). */
        float buf[MAXPOOL_ROW_MAX];
        float ring[MAXPOOL_RING][MAXPOOL_ROW_MAX];
        int done = 0; /* input rows [.., done) have their maxima computed */
        for (int y = 0; y < oh; y++) {
            int h0 = y * stride - pad, h1 = h0 + k;
            if (h0 < 0) h0 = 0;
            if (h1 > h) h1 = h;
            float *o = op + (size_t)y * ow;
            for (int i = h0 > done ? h0 : done; i < h1; i++)
                row_maxima(ip + (size_t)i * w, w, k, stride, pad, ow, buf,
                           ring[i % MAXPOOL_RING]);
            if (h1 > done) done = h1;
            for (int x = 0; x < ow; x++) o[x] = -INFINITY;
            for (int i = h0; i < h1; i++) {
                const float *r = ring[i % MAXPOOL_RING];
                for (int x = 0; x < ow; x++) o[x] = max_step(o[x], r[x]);
            }
        }
    }
}

void nn_adaptive_avgpool(const float *in, int planes, int h, int w, float *out, int oh, int ow)
{
    for (int pl = 0; pl < planes; pl++) {
        const float *ip = in + (size_t)pl * h * w;
        float *op = out + (size_t)pl * oh * ow;
        for (int y = 0; y < oh; y++) {
            /* PyTorch: start = floor(y*h/oh), end = ceil((y+1)*h/oh) */
            int h0 = (int)((long)y * h / oh);
            int h1 = (int)(((long)(y + 1) * h + oh - 1) / oh);
            for (int x = 0; x < ow; x++) {
                int w0 = (int)((long)x * w / ow);
                int w1 = (int)(((long)(x + 1) * w + ow - 1) / ow);
                float s = 0.0f;
                for (int i = h0; i < h1; i++)
                    for (int j = w0; j < w1; j++) s += ip[(size_t)i * w + j];
                /* Two divisions, as PyTorch's CPU kernel (sum / kh / kw). */
                op[(size_t)y * ow + x] = s / (float)(h1 - h0) / (float)(w1 - w0);
            }
        }
    }
}

void nn_bn_fold(int c, const float *weight, const float *bias, const float *mean, const float *var,
                float eps, float *alpha, float *beta)
{
    for (int i = 0; i < c; i++) {
        float invstd = 1.0f / sqrtf(var[i] + eps);
        alpha[i] = invstd * weight[i];
        beta[i] = fmaf(-mean[i], alpha[i], bias[i]);
    }
}

void nn_bn_apply(float *x, int c, size_t plane, const float *alpha, const float *beta, int relu)
{
    for (int i = 0; i < c; i++) {
        float *p = x + (size_t)i * plane;
        float a = alpha[i], b = beta[i];
        for (size_t j = 0; j < plane; j++) {
            float v = fmaf(p[j], a, b);
            p[j] = relu ? nn_relu1(v) : v;
        }
    }
}

void nn_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = nn_relu1(x[i]);
}
