/* Layer kernels of src/nn against scalar references written here, plus a few
 * cases computed by hand. The GEMM and convolution must equal the scalar
 * fused-multiply-add chains bit for bit (that is what makes results
 * independent of batch and thread count). */
#include "testutil.h"

#include "cwba/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(const char *name, size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    cwba_synthetic_fill(name, 42, x, n);
    return x;
}

/* C = A * B through the packed path with the matrix packer. */
static void gemm_packed(nn_pool *pool, int m, int n, int k, const float *a, const float *b,
                        float *c, const nn_epilogue *ep)
{
    float *ap = malloc(nn_gemm_packed_a_size(m, k) * sizeof(float));
    assert_non_null(ap);
    nn_gemm_pack_a(m, k, a, (size_t)k, ap);
    nn_matrix_ctx mc = {.b = b, .k = k, .n = n, .ld = (size_t)n};
    nn_gemm g = {.m = m, .n = n, .k = k, .apack = ap, .pack_b = nn_pack_b_matrix,
                 .pack_ctx = &mc, .c = c, .ldc = (size_t)n};
    if (ep) g.ep = *ep;
    int nt = nn_pool_size(pool);
    float **s = tu_gemm_scratch_new(nt, k);
    nn_gemm_run(pool, &g, s);
    tu_gemm_scratch_free(s, nt);
    free(ap);
}

static void gemm_cases(void)
{
    /* Odd sizes: partial row panels, partial column panels, k beyond one
     * k-block, and big enough to be split across threads; narrow products
     * (n <= 4) over many row panels (the paired-panel path) and widths that
     * use the 2- and 3-panel kernels exactly or with a remainder. */
    static const int shapes[][3] = {{1, 1, 1},     {13, 5, 7},      {37, 70, 300}, {64, 256, 600},
                                    {12, 16, 256}, {200, 33, 1000}, {10, 1, 4096}, {50, 3, 700},
                                    {13, 4, 300},  {100, 2, 50},    {130, 3, 333}, {256, 4, 1000},
                                    {1000, 1, 64}, {24, 48, 20},    {8, 96, 5},    {16, 47, 9}};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            float *a = rnd("a", (size_t)m * k), *b = rnd("b", (size_t)k * n);
            float *c = malloc((size_t)m * n * sizeof *c), *r = malloc((size_t)m * n * sizeof *r);
            gemm_packed(pool, m, n, k, a, b, c, NULL);
            nn_gemm_ref(m, n, k, a, (size_t)k, b, (size_t)n, r, (size_t)n);
            assert_memory_equal(c, r, (size_t)m * n * sizeof *c);
            free(a);
            free(b);
            free(c);
            free(r);
        }
        nn_pool_free(pool);
    }
}

static void test_gemm_matches_reference(void **state)
{
    (void)state;
    tu_for_each_isa(gemm_cases);
}

/* One column computed alone equals the same column computed among 69 others. */
static void test_gemm_column_independent_of_width(void **state)
{
    (void)state;
    int m = 77, k = 700, n = 70;
    float *a = rnd("a", (size_t)m * k), *b = rnd("b", (size_t)k * n);
    float *c = malloc((size_t)m * n * sizeof *c), *col = malloc((size_t)k * sizeof *col);
    float *c1 = malloc((size_t)m * sizeof *c1);
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        gemm_packed(pool, m, n, k, a, b, c, NULL);
        for (int j = 0; j < n; j += 23) {
            for (int p = 0; p < k; p++) col[p] = b[(size_t)p * n + j];
            gemm_packed(pool, m, 1, k, a, col, c1, NULL);
            for (int i = 0; i < m; i++) assert_memory_equal(&c1[i], &c[(size_t)i * n + j], sizeof(float));
        }
        nn_pool_free(pool);
    }
    free(a);
    free(b);
    free(c);
    free(col);
    free(c1);
}

/* Naive convolution on (cin, batch, h, w) -> (cout, batch, oh, ow): the chain
 * over (c, ki, kj) with zeros for padding, then + bias and ReLU. */
static void conv_naive(const float *in, int cin, int batch, int h, int w, const float *wt,
                       const float *bias, int cout, int k, int s, int p, int relu, float *out)
{
    int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
    for (int o = 0; o < cout; o++)
        for (int n = 0; n < batch; n++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    float acc = 0.0f;
                    for (int c = 0; c < cin; c++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int iy = y * s - p + ki, ix = x * s - p + kj;
                                float v = (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                              ? in[(((size_t)c * batch + n) * h + iy) * w + ix]
                                              : 0.0f;
                                acc = fmaf(wt[(((size_t)o * cin + c) * k + ki) * k + kj], v, acc);
                            }
                    if (bias) acc = acc + bias[o];
                    if (relu && acc < 0.0f) acc = 0.0f;
                    out[(((size_t)o * batch + n) * oh + y) * ow + x] = acc;
                }
}

static void conv_fast(nn_pool *pool, const float *in, int cin, int batch, int h, int w,
                      const float *wt, const float *bias, int cout, int k, int s, int p, int relu,
                      float *out)
{
    nn_conv_geom g = {.cin = cin, .h = h, .w = w, .k = k, .stride = s, .pad = p};
    g.oh = nn_out_side(h, k, s, p);
    g.ow = nn_out_side(w, k, s, p);
    int kdim = cin * k * k;
    float *ap = malloc(nn_gemm_packed_a_size(cout, kdim) * sizeof(float));
    nn_gemm_pack_a(cout, kdim, wt, (size_t)kdim, ap);
    nn_im2col_ctx ic = {.in = in, .batch = batch, .g = g};
    nn_gemm gm = {.m = cout, .n = batch * g.oh * g.ow, .k = kdim, .apack = ap,
                  .pack_b = nn_pack_b_im2col, .pack_ctx = &ic, .c = out};
    gm.ldc = (size_t)gm.n;
    gm.ep.bias = bias;
    gm.ep.relu = relu;
    int nt = nn_pool_size(pool);
    float **sc = tu_gemm_scratch_new(nt, kdim);
    nn_gemm_run(pool, &gm, sc);
    tu_gemm_scratch_free(sc, nt);
    free(ap);
}

static void conv_cases(void)
{
    /* cin, h, w, cout, k, stride, pad: AlexNet conv0, ResNet conv1, 3x3 with
     * stride 2, a 1x1 stride-2 downsample and a 5x5 "same" conv; then output
     * rows of 16 and more columns (whole packed panels on one row: the
     * masked-load path of im2col) at strides 1 and 2, with and without padding. */
    static const int cases[][7] = {{3, 23, 23, 13, 11, 4, 2}, {3, 16, 16, 17, 7, 2, 3},
                                   {5, 9, 7, 13, 3, 2, 1},    {8, 6, 6, 12, 1, 2, 0},
                                   {4, 7, 7, 30, 5, 1, 2},    {2, 3, 3, 3, 3, 1, 1},
                                   {3, 9, 45, 5, 7, 2, 3},    {4, 5, 37, 6, 3, 1, 1},
                                   {3, 6, 70, 4, 3, 2, 1},    {2, 4, 40, 3, 1, 2, 0},
                                   {2, 3, 18, 3, 3, 1, 0},    {2, 5, 33, 3, 3, 2, 0}};
    const int batch = 3;
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int cin = cases[i][0], h = cases[i][1], w = cases[i][2], cout = cases[i][3];
            int k = cases[i][4], s = cases[i][5], p = cases[i][6];
            int oh = nn_out_side(h, k, s, p), ow = nn_out_side(w, k, s, p);
            assert_true(oh > 0 && ow > 0);
            size_t nout = (size_t)cout * batch * oh * ow;
            float *in = rnd("in", (size_t)cin * batch * h * w);
            float *wt = rnd("w", (size_t)cout * cin * k * k), *bias = rnd("bias", (size_t)cout);
            float *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
            for (int relu = 0; relu <= 1; relu++) {
                conv_fast(pool, in, cin, batch, h, w, wt, bias, cout, k, s, p, relu, o1);
                conv_naive(in, cin, batch, h, w, wt, bias, cout, k, s, p, relu, o2);
                assert_memory_equal(o1, o2, nout * sizeof *o1);
            }
            free(in);
            free(wt);
            free(bias);
            free(o1);
            free(o2);
        }
        nn_pool_free(pool);
    }
}

static void test_conv_matches_naive(void **state)
{
    (void)state;
    tu_for_each_isa(conv_cases);
}

/* 3x3 input 1..9, 3x3 kernel diag(1, 2, 3), stride 2, padding 1, bias 0.5:
 * out(0,0) = 2*1 + 3*5 = 17, out(0,1) = 2*3 = 6, out(1,0) = 2*7 = 14,
 * out(1,1) = 1*5 + 2*9 = 23, each + 0.5. */
static void test_conv_by_hand(void **state)
{
    (void)state;
    float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float wt[9] = {1, 0, 0, 0, 2, 0, 0, 0, 3};
    float bias[1] = {0.5f}, out[4];
    nn_pool *pool = nn_pool_create(1);
    conv_fast(pool, in, 1, 1, 3, 3, wt, bias, 1, 3, 2, 1, 0, out);
    nn_pool_free(pool);
    const float want[4] = {17.5f, 6.5f, 14.5f, 23.5f};
    for (int i = 0; i < 4; i++) assert_true(out[i] == want[i]);
    assert_int_equal(nn_out_side(64, 11, 4, 2), 15);
    assert_int_equal(nn_out_side(15, 3, 2, 0), 7);
    assert_int_equal(nn_out_side(32, 3, 2, 1), 16);
    assert_int_equal(nn_out_side(1, 3, 2, 0), 0);
}

static void maxpool_naive(const float *in, int planes, int h, int w, int k, int s, int p, float *out)
{
    int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
    for (int pl = 0; pl < planes; pl++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float m = -INFINITY;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int iy = y * s - p + i, ix = x * s - p + j;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        float v = in[((size_t)pl * h + iy) * w + ix];
                        if (v > m || isnan(v)) m = v;
                    }
                out[((size_t)pl * oh + y) * ow + x] = m;
            }
}

/* Under each ISA (the AVX-512 build has its own stride-2 path). */
static void maxpool_cases(void)
{
    /* By hand, ResNet's k3 s2 p1 on 4x4 (padding never wins, even when every
     * input is negative). */
    float in[16] = {-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -16};
    float out[4];
    nn_maxpool(in, 1, 4, 4, 3, 2, 1, out, 2, 2);
    assert_true(out[0] == -1 && out[1] == -2 && out[2] == -5 && out[3] == -6);
    /* NaN propagates, as in PyTorch. */
    in[5] = NAN;
    nn_maxpool(in, 1, 4, 4, 3, 2, 1, out, 2, 2);
    assert_true(isnan(out[0]) && isnan(out[1]) && isnan(out[2]) && isnan(out[3]));

    static const int cases[][5] = {{15, 3, 2, 0, 7}, {16, 3, 2, 1, 8}, {8, 2, 2, 0, 4}, {7, 3, 2, 0, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int h = cases[i][0], k = cases[i][1], s = cases[i][2], p = cases[i][3], o = cases[i][4];
        assert_int_equal(nn_out_side(h, k, s, p), o);
        float *x = rnd("pool", (size_t)5 * h * h);
        float *a = malloc((size_t)5 * o * o * sizeof *a), *b = malloc((size_t)5 * o * o * sizeof *b);
        nn_maxpool(x, 5, h, h, k, s, p, a, o, o);
        maxpool_naive(x, 5, h, h, k, s, p, b);
        assert_memory_equal(a, b, (size_t)5 * o * o * sizeof *a);
        free(x);
        free(a);
        free(b);
    }
    /* Ties between +0 and -0 (the first in row-major order wins, whose sign
     * shows) and NaN, against the window scan, also on rows wider than the
     * separable path's buffer. */
    static const int shapes[][5] = {{9, 9, 3, 2, 1}, {12, 10, 3, 1, 1}, {6, 11, 2, 2, 0},
                                    {3, 1030, 3, 2, 1}, {5, 5, 5, 1, 2},  {7, 9, 2, 3, 0},
                                    {1, 1, 3, 2, 1},    {9, 37, 3, 2, 1}, {6, 70, 2, 2, 0},
                                    {5, 33, 3, 2, 0},   {4, 64, 2, 2, 1}, {13, 13, 3, 2, 0},
                                    {2, 2, 2, 2, 1}};
    const float pool[] = {-0.0f, 0.0f, -1.0f, 1.0f, NAN};
    unsigned st = 7u;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int h = shapes[i][0], w = shapes[i][1], k = shapes[i][2], s = shapes[i][3], p = shapes[i][4];
        int oh = nn_out_side(h, k, s, p), ow = nn_out_side(w, k, s, p);
        size_t nin = (size_t)2 * h * w, nout = (size_t)2 * oh * ow;
        float *x = malloc(nin * sizeof *x), *a = malloc(nout * sizeof *a), *b = malloc(nout * sizeof *b);
        assert_true(x && a && b);
        for (int trial = 0; trial < 20; trial++) {
            int kinds = trial % 2 ? 5 : 2; /* zeros only, or everything */
            for (size_t j = 0; j < nin; j++) {
                st = st * 1664525u + 1013904223u;
                x[j] = pool[(st >> 16) % (unsigned)kinds];
            }
            nn_maxpool(x, 2, h, w, k, s, p, a, oh, ow);
            maxpool_naive(x, 2, h, w, k, s, p, b);
            for (size_t j = 0; j < nout; j++)
                if (!(isnan(a[j]) && isnan(b[j])) && memcmp(&a[j], &b[j], sizeof a[j]) != 0)
                    fail_msg("maxpool %dx%d k%d s%d p%d trial %d out %zu: %g vs %g", h, w, k, s, p,
                             trial, j, (double)a[j], (double)b[j]);
        }
        free(x);
        free(a);
        free(b);
    }
}

static void test_maxpool(void **state)
{
    (void)state;
    tu_for_each_isa(maxpool_cases);
}

static void avgpool_naive(const float *in, int h, int w, float *out, int oh, int ow)
{
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int h0 = (int)floor((double)y * h / oh), h1 = (int)ceil((double)(y + 1) * h / oh);
            int w0 = (int)floor((double)x * w / ow), w1 = (int)ceil((double)(x + 1) * w / ow);
            float s = 0.0f;
            for (int i = h0; i < h1; i++)
                for (int j = w0; j < w1; j++) s += in[i * w + j];
            out[y * ow + x] = s / (float)(h1 - h0) / (float)(w1 - w0);
        }
}

static void test_adaptive_avgpool(void **state)
{
    (void)state;
    /* 2x2 -> 7x7 by hand: rows/cols 0-2 read index 0, 4-6 read index 1, 3 averages both. */
    float in[4] = {1, 2, 3, 4};
    float out[49];
    nn_adaptive_avgpool(in, 1, 2, 2, out, 7, 7);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 7; x++) {
            float r = y < 3 ? 1.0f : y > 3 ? 3.0f : 2.0f; /* row contribution */
            float c = x < 3 ? 0.0f : x > 3 ? 1.0f : 0.5f;
            assert_true(out[y * 7 + x] == r + c);
        }
    /* 1x1 -> 6x6 (AlexNet at 64 px) replicates. */
    float one = 3.25f, six[36];
    nn_adaptive_avgpool(&one, 1, 1, 1, six, 6, 6);
    for (int i = 0; i < 36; i++) assert_true(six[i] == 3.25f);
    /* Global average of 2x2 (ResNet18 at 64 px). */
    float g;
    nn_adaptive_avgpool(in, 1, 2, 2, &g, 1, 1);
    assert_true(g == 2.5f);

    static const int cases[][3] = {{13, 6, 3}, {6, 6, 2}, {2, 7, 2}, {5, 7, 4}, {7, 1, 2}, {14, 7, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int h = cases[i][0], o = cases[i][1], planes = cases[i][2];
        float *x = rnd("avg", (size_t)planes * h * h);
        float *a = malloc((size_t)planes * o * o * sizeof *a), *b = malloc((size_t)o * o * sizeof *b);
        nn_adaptive_avgpool(x, planes, h, h, a, o, o);
        for (int p = 0; p < planes; p++) {
            avgpool_naive(x + (size_t)p * h * h, h, h, b, o, o);
            assert_memory_equal(a + (size_t)p * o * o, b, (size_t)o * o * sizeof *b);
        }
        free(x);
        free(a);
        free(b);
    }
}

static void test_batchnorm(void **state)
{
    (void)state;
    const int c = 7;
    const size_t plane = 11;
    float *x = rnd("bnx", c * plane), *w = rnd("bnw", c), *b = rnd("bnb", c), *mean = rnd("bnm", c);
    float *var = rnd("bnv", c);
    for (int i = 0; i < c; i++) var[i] = 1.0f + 0.5f * var[i];
    float alpha[7], beta[7];
    nn_bn_fold(c, w, b, mean, var, 1e-5f, alpha, beta);
    float *y = malloc(c * plane * sizeof *y);
    memcpy(y, x, c * plane * sizeof *y);
    nn_bn_apply(y, c, plane, alpha, beta, 0);
    for (int i = 0; i < c; i++)
        for (size_t j = 0; j < plane; j++) {
            float v = x[i * plane + j];
            /* PyTorch's CPU arithmetic, step by step. */
            float inv = 1.0f / sqrtf(var[i] + 1e-5f), al = inv * w[i];
            float be = fmaf(-mean[i], al, b[i]);
            assert_true(y[i * plane + j] == fmaf(v, al, be));
            /* The textbook formula, to rounding. */
            double t = ((double)v - mean[i]) / sqrt((double)var[i] + 1e-5) * w[i] + b[i];
            assert_true(fabs(y[i * plane + j] - t) <= 1e-6 * (1.0 + fabs(t)));
        }
    /* By hand: w 2, b 1, mean 3, var 4 -> (5 - 3) / 2 * 2 + 1 = 3 (eps aside). */
    float hw = 2, hb = 1, hm = 3, hv = 4, ha, hbeta, hx = 5;
    nn_bn_fold(1, &hw, &hb, &hm, &hv, 1e-5f, &ha, &hbeta);
    nn_bn_apply(&hx, 1, 1, &ha, &hbeta, 0);
    assert_true(fabsf(hx - 3.0f) < 1e-5f);
    /* Fused ReLU; -0 becomes +0 and NaN stays NaN, as torch.relu. */
    float r[3] = {-5, -0.0f, NAN}, one = 1.0f, zero = 0.0f;
    nn_bn_apply(r, 1, 3, &one, &zero, 1);
    assert_true(r[0] == 0.0f && !signbit(r[1]) && isnan(r[2]));
    free(x);
    free(w);
    free(b);
    free(mean);
    free(var);
    free(y);
}

static void test_linear(void **state)
{
    (void)state;
    /* By hand: W (3, 2), x = (1, 1) and (2, -1) as the two columns of B. */
    float wt[6] = {1, 2, 3, 4, 5, 6}, xb[4] = {1, 2, 1, -1}, bias[3] = {0.5f, 0, -1}, y[6];
    nn_pool *pool = nn_pool_create(2);
    nn_epilogue ep = {.bias = bias, .relu = 0};
    gemm_packed(pool, 3, 2, 2, wt, xb, y, &ep);
    const float want[6] = {3.5f, 0.5f, 7, 2, 10, 3};
    for (int i = 0; i < 6; i++) assert_true(y[i] == want[i]);
    ep.relu = 1;
    float wneg[6] = {-1, -2, 3, 4, 5, 6};
    gemm_packed(pool, 3, 2, 2, wneg, xb, y, &ep);
    assert_true(y[0] == 0.0f && y[1] == 0.5f && y[2] == 7.0f); /* -2.5 clipped; 0.5 kept */

    /* Against the naive dot product with bias, one column per sample. */
    int in = 300, out = 50, batch = 9;
    float *a = rnd("lw", (size_t)out * in), *x = rnd("lx", (size_t)in * batch), *b = rnd("lb", out);
    float *f = malloc((size_t)out * batch * sizeof *f);
    ep.bias = b;
    ep.relu = 0;
    gemm_packed(pool, out, batch, in, a, x, f, &ep);
    for (int o = 0; o < out; o++)
        for (int n = 0; n < batch; n++) {
            float s = 0.0f;
            for (int i = 0; i < in; i++) s = fmaf(a[(size_t)o * in + i], x[(size_t)i * batch + n], s);
            assert_true(f[(size_t)o * batch + n] == s + b[o]);
        }
    nn_pool_free(pool);
    free(a);
    free(x);
    free(b);
    free(f);
}

static void count_task(void *ctx, int tid, int nthreads)
{
    int *hits = ctx;
    if (tid < nthreads) hits[tid]++; /* each thread owns its slot */
}

static void test_pool_runs_every_thread(void **state)
{
    (void)state;
    nn_pool *pool = nn_pool_create(3);
    assert_non_null(pool);
    int n = nn_pool_size(pool);
    assert_true(n >= 1 && n <= 3);
    int hits[3] = {0, 0, 0};
    for (int rep = 0; rep < 200; rep++) nn_pool_run(pool, count_task, hits);
    for (int t = 0; t < n; t++) assert_int_equal(hits[t], 200);
    nn_pool_free(pool);
    nn_pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference),
        cmocka_unit_test(test_gemm_column_independent_of_width),
        cmocka_unit_test(test_conv_matches_naive),
        cmocka_unit_test(test_conv_by_hand),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_adaptive_avgpool),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_pool_runs_every_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
