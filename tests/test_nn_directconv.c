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
    return tu_random_floats(name, 11, n, zeros ? 7 : 0);
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
        /* from here on, channels on lanes (nn_gemm_direct_t_run) at batch 1
         * with AVX-512 (T_FIRST): */
        {128, 7, 7, 128, 3, 1, 1},  /* 7x7: two 64-channel blocks, split by blocks */
        {128, 14, 14, 192, 3, 1, 1}, /* three blocks: split by positions */
        {120, 13, 13, 128, 3, 1, 1}, /* AlexNet's 13x13; k = 1080, 2 k-blocks */
        {128, 14, 14, 128, 3, 2, 1}, /* stride 2 to 7x7 */
        {48, 23, 22, 64, 5, 1, 2},  /* 5x5, 506 positions: three chunks */
    };
    enum { T_FIRST = 15 };
    static const int batches[] = {1, 2, 5};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int cin = cases[i][0], h = cases[i][1], w = cases[i][2], cout = cases[i][3];
            int k = cases[i][4], st = cases[i][5], p = cases[i][6];
            nn_conv_geom g = tu_conv_geom(cin, h, w, k, st, p);
            assert_true(g.oh > 0 && g.ow > 0);
            /* Under an emulator (the ARM build in qemu) the large cases are
             * kept only where they run the channels-on-lanes path they are
             * there for; elsewhere they repeat the small ones' path. */
            if (i >= T_FIRST && tu_emulated() && !nn_directconv_t_pays(&g, 1, cout)) continue;
            int kdim = cin * k * k;
            float *wt = rnd("w", (size_t)cout * kdim, 1);
            float *bias = rnd("bias", (size_t)cout, 0), *alpha = rnd("alpha", (size_t)cout, 0);
            float *beta = rnd("beta", (size_t)cout, 1);
            float *ap = malloc(nn_gemm_packed_a_size(cout, kdim) * sizeof(float));
            int *off = malloc((size_t)kdim * sizeof *off);
            assert_true(ap && off);
            nn_gemm_pack_a(cout, kdim, wt, (size_t)kdim, ap);
            size_t need = nn_gemm_scratch_size(kdim), dneed = nn_gemm_direct_scratch_size(cout);
            if (dneed > need) need = dneed;
            float *tp = NULL;
            if (i >= T_FIRST) {
                /* these cases are there for that path: it must run */
                assert_true(nn_directconv_t_pays(&g, 1, cout) == nn_isa_avx512());
                tp = malloc(nn_gemm_packed_t_size(cout, kdim) * sizeof *tp);
                assert_non_null(tp);
                nn_gemm_pack_t(cout, kdim, wt, (size_t)kdim, tp);
                if (nn_directconv_t_scratch_size(&g) > need) need = nn_directconv_t_scratch_size(&g);
            }
            float **sc = tu_scratch_new(nt, need);
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                int batch = batches[bi];
                if (i >= T_FIRST && batch > 2) break; /* large: batch 1 and 2 suffice */
                assert_true(nn_directconv_applies(&g, batch));
                size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * g.oh * g.ow;
                float *in = rnd("in", nin, 1), *res = rnd("res", nout, 0);
                float *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
                size_t ntmp = nn_directconv_tmp_floats(&g, batch);
                float *tmp = malloc(ntmp * sizeof *tmp);
                assert_true(o1 && o2 && tmp);
                for (int e = 0; e < 4; e++) {
                    nn_epilogue ep;
                    tu_epilogue_case(&ep, e, bias, alpha, beta, res);
                    tu_conv_im2col(pool, ap, cout, &g, in, batch, o1, &ep, sc);
                    memset(o2, 0xff, nout * sizeof *o2); /* every element must be written */
                    memset(tmp, 0x7f, ntmp * sizeof *tmp); /* the path zeroes what it reads */
                    nn_directconv_run(pool, ap, tp, cout, &g, in, batch, o2, &ep, sc, tmp, off);
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
            free(tp);
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
    tu_for_each_isa(direct_cases);
}

static void test_direct_geometry(void **state)
{
    (void)state;
    /* 56x56, 3x3 pad 1, batch 1: 56 rows of 58 computed columns (3248 =
     * 203 panels). */
    nn_conv_geom g = tu_conv_geom(64, 56, 56, 3, 1, 1);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 58.0 / 56.0) < 1e-12);
    /* batch 2: the first image's padded plane (58 x 58) plus 56 x 58, 6612
     * columns rounded up to 414 panels. */
    assert_true(fabs(nn_directconv_overhead(&g, 2) - 6624.0 / (2.0 * 56 * 56)) < 1e-12);
    /* buffer: the padded planes plus k + 16 floats of read slack */
    assert_int_equal(nn_directconv_tmp_floats(&g, 2), (size_t)64 * 2 * 58 * 58 + 3 + 16);
    assert_true(nn_directconv_applies(&g, 1));
    /* stride 2: four 29 x 29 phases of the 58 x 58 padded plane, 28 rows of
     * 29 computed columns (812, rounded up to 816) */
    g = tu_conv_geom(64, 56, 56, 3, 2, 1);
    assert_true(nn_directconv_applies(&g, 1));
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 816.0 / 784.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), (size_t)64 * 4 * 29 * 29 + 3 + 16);
    /* 1x1 stride 2: only phase (0, 0) is kept */
    g = tu_conv_geom(64, 56, 56, 1, 2, 0);
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), (size_t)64 * 28 * 28 + 1 + 16);
    /* ResNet conv1 at 224: 230 / 2 = 115 columns for 112 outputs */
    g = tu_conv_geom(3, 224, 224, 7, 2, 3);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 115.0 / 112.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    /* 7x7 planes: 63 computed columns = 4 panels for 49; taken at batch 1
     * only */
    g = tu_conv_geom(512, 7, 7, 3, 1, 1);
    assert_true(fabs(nn_directconv_overhead(&g, 1) - 64.0 / 49.0) < 1e-12);
    assert_true(nn_directconv_pays(&g, 1));
    assert_false(nn_directconv_pays(&g, 2));
    /* where im2col is faster: a 1x1 downsample, K < 128, many dropped
     * columns at batch 64 */
    g = tu_conv_geom(256, 16, 16, 3, 1, 1);
    assert_false(nn_directconv_pays(&g, 64));
    g = tu_conv_geom(256, 14, 14, 1, 2, 0);
    assert_false(nn_directconv_pays(&g, 1));
    g = tu_conv_geom(3, 224, 224, 3, 1, 1);
    assert_false(nn_directconv_pays(&g, 1));
    /* strides beyond 4 are not this path's */
    g = tu_conv_geom(3, 40, 40, 5, 5, 0);
    assert_false(nn_directconv_applies(&g, 1));
    assert_true(nn_directconv_overhead(&g, 1) == 0.0);
    assert_int_equal(nn_directconv_tmp_floats(&g, 1), 0);
    /* a buffer beyond int offsets falls back to im2col */
    g = tu_conv_geom(4096, 1024, 1024, 3, 1, 1);
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
