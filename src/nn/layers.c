/* Layer kernels other than the GEMM itself, with PyTorch's eval-mode
 * arithmetic. Activations are planes of (h, w) floats; the callers handle the
 * (C, N, H, W) layout. */
#include "nn/nn_internal.h"

#include <limits.h>
#include <math.h>

int nn_out_side(int in, int k, int stride, int pad)
{
    long span = (long)in + 2L * pad - k;
    if (span < 0 || stride <= 0) return 0;
    return (int)(span / stride + 1);
}

void nn_pack_b_im2col(const void *vctx, int p0, int np, float *dst)
{
    const nn_im2col_ctx *x = vctx;
    const nn_conv_geom *g = &x->g;
    const size_t plane = (size_t)g->h * g->w;
    const size_t chan = (size_t)x->batch * plane; /* stride between input channels */
    const int ohw = g->oh * g->ow;
    const long ncols = (long)x->batch * ohw;
    const size_t kdim = (size_t)g->cin * g->k * g->k;
    for (int pi = 0; pi < np; pi++) {
        float *d = dst + (size_t)pi * kdim * NN_NR;
        int hb[NN_NR], wb[NN_NR];
        size_t base[NN_NR];
        for (int j = 0; j < NN_NR; j++) {
            long col = (long)(p0 + pi) * NN_NR + j;
            if (col < ncols) {
                long n = col / ohw, r = col % ohw;
                hb[j] = (int)(r / g->ow) * g->stride - g->pad;
                wb[j] = (int)(r % g->ow) * g->stride - g->pad;
                base[j] = (size_t)n * plane;
            } else {
                /* Padding columns read as zero: keep them out of bounds. */
                hb[j] = INT_MIN / 2;
                wb[j] = 0;
                base[j] = 0;
            }
        }
        for (int c = 0; c < g->cin; c++) {
            const float *ic = x->in + (size_t)c * chan;
            for (int ki = 0; ki < g->k; ki++) {
                for (int kj = 0; kj < g->k; kj++) {
                    for (int j = 0; j < NN_NR; j++) {
                        int ih = hb[j] + ki, iw = wb[j] + kj;
                        d[j] = ((unsigned)ih < (unsigned)g->h && (unsigned)iw < (unsigned)g->w)
                                   ? ic[base[j] + (size_t)ih * g->w + iw]
                                   : 0.0f;
                    }
                    d += NN_NR;
                }
            }
        }
    }
}

void nn_pack_b_matrix(const void *vctx, int p0, int np, float *dst)
{
    const nn_matrix_ctx *x = vctx;
    for (int pi = 0; pi < np; pi++) {
        long col0 = (long)(p0 + pi) * NN_NR;
        int cols = x->n - col0 < NN_NR ? (int)(x->n - col0) : NN_NR;
        float *d = dst + (size_t)pi * x->k * NN_NR;
        for (int p = 0; p < x->k; p++) {
            const float *row = x->b + (size_t)p * x->ld + col0;
            int j = 0;
            for (; j < cols; j++) d[j] = row[j];
            for (; j < NN_NR; j++) d[j] = 0.0f;
            d += NN_NR;
        }
    }
}

void nn_maxpool(const float *in, int planes, int h, int w, int k, int stride, int pad, float *out,
                int oh, int ow)
{
    for (int pl = 0; pl < planes; pl++) {
        const float *ip = in + (size_t)pl * h * w;
        float *op = out + (size_t)pl * oh * ow;
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
                    for (int j = w0; j < w1; j++) {
                        float v = ip[(size_t)i * w + j];
                        if (v > m || isnan(v)) m = v;
                    }
                op[(size_t)y * ow + x] = m;
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
