/* The packing-free convolution (src/nn/directconv.c) against the
 * im2col GEMM path: bit-identical outputs on random data with negative
 * values and signed zeros, every epilogue step (bias, batch norm, residual,
 * ReLU), batches of 1-5, one and two threads (column and row splits) and
 * every kernel family of this CPU; shapes with odd channel counts (partial
 * row panels), k beyond one 256 k-block, several column chunks, windows of
 * 1x1 to 11x11 with and without padding, strides 1 to 4. Also the bookkeeping (overhead,
 * buffer size, when the path applies). */
#include "testutil.h"
#include "cwba/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(const char *name, size_t n, int zeros)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    cwba_synthetic_fill(name, 11, x, n); /* uniform in [-1, 1) */
    if (zeros)
        for (size_t i = 0; i < n; i += 7) x[i] = (i / 7) % 2 ? 0.0f : -0.0f;
    return x;
}

/* Per-thread scratch for both paths. */
static float **direct_scratch_new(int threads, int m, int k)
{
    size_t n = nn_gemm_scratch_size(k), d = nn_gemm_direct_scratch_size(m);
    float **s = calloc((size_t)threads, sizeof *s);
    assert_non_null(s);
    for (int t = 0; t < threads; t++) {
        s[t] = malloc((n > d ? n : d) * sizeof(float));
        assert_non_null(s[t]);
    }
    return s;
}

static nn_conv_geom geom(int cin, int h, int w, int k, int s, int p)
{
    nn_conv_geom g = {.cin = cin, .h = h, .w = w, .k = k, .stride = s, .pad = p};
    g.oh = nn_out_side(h, k, s, p);
    g.ow = nn_out_side(w, k, s, p);
    return g;
}

static void direct_cases(void)
{
    /* cin, h, w, cout, k, stride, pad */
    static const int cases[][7] = {
        {5, 9, 7, 13, 3, 1, 1},   /* odd cout: partial row panel */
        {40, 6, 5, 16, 3, 1, 1},  /* k = 360: two k-blocks */
        {3, 20, 37, 24, 3, 1, 1}, /* wide rows: several panels per row, chunks */
        {4, 7, 7, 30, 5, 1, 2},   /* 5x5 "same" */
        {2, 12, 11, 8, 3, 1, 0},  /* no padding */
        {3, 14, 14, 9, 7, 1, 3},  /* 7x7 */
        {6, 5, 8, 11, 1, 1, 0},   /* 1x1 */
        {2, 1, 1, 3, 3, 1, 1},    /* one pixel */
        {8, 28, 28, 64, 3, 1, 1}, /* enough column panels for a column split */
        {3, 16, 16, 17, 7, 2, 3}, /* ResNet conv1: stride 2, 7x7, pad 3 */
        {5, 9, 7, 13, 3, 2, 1},   /* stride 2 on odd sides */
        {8, 6, 6, 12, 1, 2, 0},   /* 1x1 stride-2 downsample */
        {3, 23, 23, 13, 11, 4, 2}, /* AlexNet conv1: 11x11, stride 4 */
        {2, 10, 13, 7, 3, 3, 0},  /* stride 3, sides not multiples of it */
        {6, 33, 30, 16, 3, 2, 1}, /* stride 2, several column chunks */
    };
    static const int batches[] = {1, 2, 5};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int cin = cases[i][0], h = cases[i][1], w = cases[i][2], cout = cases[i][3];
            int k = cases[i][4], st = cases[i][5], p = cases[i][6];
            nn_conv_geom g = geom(cin, h, w, k, st, p);
            assert_true(g.oh > 0 && g.ow > 0);
            int kdim = cin * k * k;
            float *wt = rnd("w", (size_t)cout * kdim, 1);
            float *bias = rnd("bias", (size_t)cout, 0), *alpha = rnd("alpha", (size_t)cout, 0);
            float *beta = rnd("beta", (size_t)cout, 1);
            float *ap = malloc(nn_gemm_packed_a_size(cout, kdim) * sizeof(float));
            int *off = malloc((size_t)kdim * sizeof *off);
            assert_true(ap && off);
            nn_gemm_pack_a(cout, kdim, wt, (size_t)kdim, ap);
            float **sc = direct_scratch_new(nt, cout, kdim);
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                int batch = batches[bi];
                assert_true(nn_directconv_applies(&g, batch));
                size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * g.oh * g.ow;
                float *in = rnd("in", nin, 1), *res = rnd("res", nout, 0);
                float *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
                size_t ntmp = nn_directconv_tmp_floats(&g, batch);
                float *tmp = malloc(ntmp * sizeof *tmp);
                assert_true(o1 && o2 && tmp);
                for (int e = 0; e < 4; e++) {
                    nn_epilogue ep = {0};
                    if (e == 1) ep.bias = bias, ep.relu = 1;
                    if (e == 2) ep.alpha = alpha, ep.beta = beta;
                    if (e == 3) ep.alpha = alpha, ep.beta = beta, ep.res = res, ep.relu = 1;
                    nn_im2col_ctx ic = {.in = in, .batch = batch, .g = g};
                    nn_gemm gm = {.m = cout, .n = batch * g.oh * g.ow, .k = kdim, .apack = ap,
                                  .pack_b = nn_pack_b_im2col, .pack_ctx = &ic, .c = o1, .ep = ep};
                    gm.ldc = (size_t)gm.n;
                    nn_gemm_run(pool, &gm, sc);
                    memset(o2, 0xff, nout * sizeof *o2); /* every element must be written */
                    memset(tmp, 0x7f, ntmp * sizeof *tmp); /* the path zeroes what it reads */
                    nn_directconv_run(pool, ap, cout, &g, in, batch, o2, &ep, sc, tmp, off);
                    if (memcmp(o1, o2, nout * sizeof *o1) != 0)
                        fail_msg("case %zu batch %d epilogue %d threads %d isa %s: direct path "
                                 "differs",
                                 i, batch, e, threads, nn_gemm_isa());
                }
                free(in);
                free(res);
                free(o1);
                free(o2);
                free(tmp);
            }
            tu_gemm_scratch_free(sc, nt);
            free(ap);
            free(off);
            free(wt);
            free(bias);
            free(alpha);
            free(beta);
        }
        nn_pool_free(pool);
    }
}

static void test_direct_matches_im2col(void **state)
{
    (void)state;
    static const char *const isas[] = {"avx512", "avx2", "scalar"};
    const char *best = nn_gemm_isa();
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        if (!nn_gemm_set_isa(isas[i])) continue;
        direct_cases();
        ran++;
    }
    assert_true(ran >= 1);
    assert_true(nn_gemm_set_isa(best));
}

static void test_direct_geometry(void **state)
{
    (void)state;
    /* 56x56, 3x3 pad 1, batch 1: 56 rows of 58 computed columns (3248 =
     * 203 panels). */
    nn_conv_geom g = geom(64, 56, 56, 3, 1, 1);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 58.0 / 56.0) < 1e-12);
    /* batch 2: the first image's padded plane (58 x 58) plus 56 x 58, 6612
     * columns rounded up to 414 panels. */
    assert_true(fabs(nn_directconv_overhead(&g, 2) - 6624.0 / (2.0 * 56 * 56)) < 1e-12);
    /* buffer: the padded planes plus k + 16 floats of read slack */
    assert_int_equal(nn_directconv_tmp_floats(&g, 2), (size_t)64 * 2 * 58 * 58 + 3 + 16);
    assert_true(nn_directconv_applies(&g, 1));
    /* stride 2: four 29 x 29 phases of the 58 x 58 padded plane, 28 rows of
     * 29 computed columns (812, rounded up to 816) */
    g = geom(64, 56, 56, 3, 2, 1);
    assert_true(nn_directconv_applies(&g, 1));
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 816.0 / 784.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), (size_t)64 * 4 * 29 * 29 + 3 + 16);
    /* 1x1 stride 2: only phase (0, 0) is kept */
    g = geom(64, 56, 56, 1, 2, 0);
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), (size_t)64 * 28 * 28 + 1 + 16);
    /* ResNet conv1 at 224: 230 / 2 = 115 columns for 112 outputs */
    g = geom(3, 224, 224, 7, 2, 3);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 115.0 / 112.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    /* 7x7 planes: 63 computed columns = 4 panels for 49; taken at batch 1
     * only */
    g = geom(512, 7, 7, 3, 1, 1);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 64.0 / 49.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    assert_false(nn_directconv_pays(&g, 2));
    /* where im2col is faster: a 1x1 downsample, K < 128, many dropped
     * columns at batch 64 */
    g = geom(256, 16, 16, 3, 1, 1);
    assert_false(nn_directconv_pays(&g, 64));
    g = geom(256, 14, 14, 1, 2, 0);
    assert_false(nn_directconv_pays(&g, 1));
    g = geom(3, 224, 224, 3, 1, 1);
    assert_false(nn_directconv_pays(&g, 1));
    /* strides beyond 4 are not this path's */
    g = geom(3, 40, 40, 5, 5, 0);
    assert_false(nn_directconv_applies(&g, 1));
    assert_true(nn_directconv_overhead(&g, 1) == 0.0);
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), 0);
    /* a buffer beyond int offsets falls back to im2col */
    g = geom(4096, 1024, 1024, 3, 1, 1);
    assert_false(nn_directconv_applies(&g, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct_matches_im2col),
        cmocka_unit_test(test_direct_geometry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
