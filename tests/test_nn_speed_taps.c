/* The padding-skipping convolution (src/nn/tapconv.c) against the im2col
 * GEMM path: bit-identical outputs on random data with negative values and
 * exact zeros, with every epilogue step (bias, batch norm, residual, ReLU),
 * several batch sizes, one and two threads and every kernel family of this
 * CPU. Also the geometry bookkeeping (padded share, groups). */
#include "testutil.h"
#include "cwba/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(const char *name, size_t n, int zeros)
{
    return tu_random_floats(name, 7, n, zeros ? 5 : 0);
}

static void tap_cases(void)
{
    /* cin, h, w, cout, k, stride, pad: ResNet18 layer4 at 64 px (4x4 s2 ->
     * 2x2, 2x2 -> 2x2), AlexNet's 3x3 planes, 1x1 planes, VGG16's 4x4, a
     * rectangular plane, a 5x5 pad-2 window, k beyond one 256 k-block. */
    static const int cases[][7] = {{6, 4, 4, 13, 3, 2, 1}, {5, 2, 2, 17, 3, 1, 1},
                                   {7, 3, 3, 30, 3, 1, 1}, {9, 1, 1, 12, 3, 1, 1},
                                   {4, 4, 4, 25, 3, 1, 1}, {3, 5, 2, 14, 3, 1, 1},
                                   {2, 3, 4, 11, 5, 1, 2}, {40, 2, 2, 24, 3, 1, 1}};
    static const int batches[] = {1, 3, 40};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int cin = cases[i][0], h = cases[i][1], w = cases[i][2], cout = cases[i][3];
            int k = cases[i][4], s = cases[i][5], p = cases[i][6];
            nn_conv_geom g = tu_conv_geom(cin, h, w, k, s, p);
            assert_true(g.oh > 0 && g.ow > 0);
            int kdim = cin * k * k;
            float *wt = rnd("w", (size_t)cout * kdim, 1);
            float *bias = rnd("bias", (size_t)cout, 0), *alpha = rnd("alpha", (size_t)cout, 0);
            float *beta = rnd("beta", (size_t)cout, 1);
            nn_tapconv tc;
            assert_true(nn_tapconv_init(&tc, &g, cout, wt));
            float *ap = malloc(nn_gemm_packed_a_size(cout, kdim) * sizeof(float));
            assert_non_null(ap);
            nn_gemm_pack_a(cout, kdim, wt, (size_t)kdim, ap);
            float **sc = tu_gemm_scratch_new(nt, kdim);
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                int batch = batches[bi];
                size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * g.oh * g.ow;
                float *in = rnd("in", nin, 1), *res = rnd("res", nout, 0);
                float *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
                float *tmp = malloc(nn_tapconv_tmp_floats(&tc, batch) * sizeof *tmp);
                assert_true(o1 && o2 && tmp);
                for (int e = 0; e < 4; e++) {
                    nn_epilogue ep;
                    tu_epilogue_case(&ep, e, bias, alpha, beta, res);
                    tu_conv_im2col(pool, ap, cout, &g, in, batch, o1, &ep, sc);
                    memset(o2, 0xff, nout * sizeof *o2);
                    nn_tapconv_run(pool, &tc, in, batch, o2, &ep, sc, tmp);
                    if (memcmp(o1, o2, nout * sizeof *o1) != 0)
                        fail_msg("case %zu batch %d epilogue %d threads %d isa %s: tap path differs",
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
            nn_tapconv_free(&tc);
            free(wt);
            free(bias);
            free(alpha);
            free(beta);
        }
        nn_pool_free(pool);
    }
}

static void test_taps_match_im2col(void **state)
{
    (void)state;
    tu_for_each_isa(tap_cases);
}

static void test_tap_geometry(void **state)
{
    (void)state;
    /* 3x3 pad 1 on 2x2: 4 valid taps of 9 at each of the 4 positions. */
    nn_conv_geom g = tu_conv_geom(1, 2, 2, 3, 1, 1);
    assert_true(fabs(nn_tapconv_padded_fraction(&g) - 5.0 / 9.0) < 1e-12);
    /* on 4x4 -> 2x2 with stride 2: rows/cols windows of 2 and 3 taps. */
    g = tu_conv_geom(1, 4, 4, 3, 2, 1);
    assert_true(fabs(nn_tapconv_padded_fraction(&g) - (1.0 - 25.0 / 36.0)) < 1e-12);
    /* no padding, nothing to skip */
    g = tu_conv_geom(1, 6, 6, 3, 1, 0);
    assert_true(nn_tapconv_padded_fraction(&g) == 0.0);
    /* 3x3 on 3x3: windows {1,2}, {0,3}, {0,2} per axis -> 9 groups of one
     * position; 4x4: three windows per axis, 9 groups of 1, 2 or 4. */
    float w[2 * 3 * 3] = {0};
    nn_tapconv t;
    g = tu_conv_geom(1, 3, 3, 3, 1, 1);
    assert_true(nn_tapconv_init(&t, &g, 2, w));
    assert_int_equal(t.ngroups, 9);
    assert_int_equal(t.min_npos, 1);
    assert_int_equal(t.max_npos, 1);
    int taps = 0;
    for (int i = 0; i < t.ngroups; i++)
        taps += t.groups[i].npos * (t.groups[i].ky1 - t.groups[i].ky0) * (t.groups[i].kx1 - t.groups[i].kx0);
    assert_int_equal(taps, 49);
    nn_tapconv_free(&t);
    g = tu_conv_geom(1, 4, 4, 3, 1, 1);
    assert_true(nn_tapconv_init(&t, &g, 2, w));
    assert_int_equal(t.ngroups, 9);
    assert_int_equal(t.min_npos, 1);
    assert_int_equal(t.max_npos, 4);
    nn_tapconv_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taps_match_im2col),
        cmocka_unit_test(test_tap_geometry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
