/* Winograd F(2x2, 3x3) convolution (src/nn/winograd.c) against the direct
 * blocked convolution, which is bit-identical to im2col:
 * - within 2^-17 of the terms' magnitude, sum over taps of |w x| (times
 *   |alpha| with batch norm), plus a few roundings of the output, for every
 *   epilogue (none; bias + ReLU; batch norm; batch norm + residual + ReLU),
 *   planes from 4x4 to 24x30 (odd sides included), 16 to 512 input channels, 64 to 192 output
 *   channels, input borders 1 and 2, batches 1 and 3, 1 and 2 threads, and
 *   band sizes from one band to several per thread;
 * - every output written and the border left zero;
 * - the same bits at 1 and 2 threads and whatever the batch (each image
 *   alone or all together);
 * - nn_wino_applies refuses what the transform cannot do.
 * On every ISA of this CPU (AVX-512, AVX2+FMA, portable C). */
#include "testutil.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(const char *name, size_t n, int zeros)
{
    return tu_random_floats(name, 29, n, zeros ? 7 : 0);
}

typedef struct wconv {
    int cin, cout, nt;
    float *w, *tp, *up, *bias, *alpha, *beta;
    int *off;
    float **sc;
} wconv;

static wconv wconv_new(int cin, int cout, int nt)
{
    wconv c = {.cin = cin, .cout = cout, .nt = nt};
    const int kdim = cin * 9;
    c.w = rnd("w", (size_t)cout * kdim, 1);
    c.bias = rnd("bias", (size_t)cout, 0);
    c.alpha = rnd("alpha", (size_t)cout, 0);
    c.beta = rnd("beta", (size_t)cout, 1);
    c.tp = malloc(nn_gemm_packed_t_size(cout, kdim) * sizeof(float));
    c.up = malloc(nn_wino_packed_size(cout, cin) * sizeof(float));
    c.off = malloc((size_t)kdim * (size_t)nt * sizeof *c.off);
    assert_true(c.tp && c.up && c.off);
    nn_gemm_pack_t(cout, kdim, c.w, (size_t)kdim, c.tp);
    assert_true(nn_wino_pack(cout, cin, c.w, c.up));
    c.sc = tu_scratch_new(nt, nn_gemm_direct_t_scratch_size(0));
    return c;
}

static void wconv_free(wconv *c)
{
    tu_gemm_scratch_free(c->sc, c->nt);
    free(c->w);
    free(c->tp);
    free(c->up);
    free(c->bias);
    free(c->alpha);
    free(c->beta);
    free(c->off);
}

/* Runs the Winograd convolution of bin into a fresh output (border pbo). */
static nn_blk run_wino(nn_pool *pool, const wconv *c, const nn_conv_geom *g, const nn_blk *bin,
                       int pbo, const nn_epilogue *ep, const nn_blk *res)
{
    nn_blk out = tu_blk_new(c->cout, bin->n, g->oh, g->ow, pbo);
    float *tmp = malloc(nn_wino_tmp_floats(g, bin->n, nn_pool_size(pool)) * sizeof(float));
    assert_non_null(tmp);
    assert_true(nn_wino_applies(g, c->cout, bin));
    nn_wino_conv(pool, c->up, c->cout, g, bin, &out, ep, res, c->sc, tmp, c->off);
    free(tmp);
    return out;
}

/* The magnitude the rounding errors scale with at output (o, n, y, x):
 * sum over taps of |w x|, in double. */
static double l1_terms(const wconv *c, const float *in, int batch, int h, int w, int o, int n,
                       int y, int x)
{
    double s = 0;
    for (int ci = 0; ci < c->cin; ci++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                int yy = y - 1 + ki, xx = x - 1 + kj;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                s += fabs((double)c->w[((size_t)o * c->cin + ci) * 9 + ki * 3 + kj] *
                          in[(((size_t)ci * batch + n) * h + yy) * w + xx]);
            }
    return s;
}

static void matches_direct_cases(void)
{
    /* cin, h, w, cout, input border */
    static const int cases[][5] = {
        {16, 4, 4, 64, 1},    /* the smallest plane */
        {32, 6, 8, 64, 2},    /* h != w, wider border */
        {64, 14, 14, 128, 1}, /* ResNet18 layer3-like tiles */
        {144, 10, 6, 64, 1},  /* 9 channel blocks */
        {16, 24, 30, 192, 1}, /* 180 tiles per image: several bands per thread */
        {16, 24, 30, 128, 1}, /* output blocks shared by 2 threads, several bands each */
        {512, 4, 4, 64, 1},   /* 512 channels: the smallest bands */
        {32, 9, 13, 64, 1},   /* odd sides: the last tiles overhang the border */
        {16, 10, 9, 128, 2},  /* one odd side, a wider border */
    };
    static const int batches[] = {1, 3};
    double worst = 0;
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const int cin = cases[i][0], h = cases[i][1], w = cases[i][2], cout = cases[i][3];
            nn_conv_geom g = tu_conv_geom(cin, h, w, 3, 1, 1);
            wconv c = wconv_new(cin, cout, nt);
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                const int batch = batches[bi];
                size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * h * w;
                float *in = rnd("in", nin, 1), *res = rnd("res", nout, 0);
                float *od = malloc(nout * sizeof *od), *ow = malloc(nout * sizeof *ow);
                assert_true(od && ow);
                nn_blk bin = tu_blk_new(cin, batch, h, w, cases[i][4]);
                nn_blk bres = tu_blk_new(cout, batch, h, w, 0);
                nn_blk_from_cnhw(pool, in, &bin);
                nn_blk_from_cnhw(pool, res, &bres);
                for (int e = 0; e < 4; e++) {
                    nn_epilogue ep;
                    tu_epilogue_case(&ep, e, c.bias, c.alpha, c.beta, res);
                    nn_epilogue bep = ep;
                    bep.res = NULL;
                    const nn_blk *r = ep.res ? &bres : NULL;
                    nn_blk bd = tu_blk_new(cout, batch, h, w, 1);
                    nn_blk_conv(pool, c.tp, cout, &g, &bin, &bd, &bep, r, c.sc, c.off);
                    nn_blk_to_cnhw(pool, &bd, od);
                    nn_blk bw = run_wino(pool, &c, &g, &bin, 1, &bep, r);
                    tu_blk_assert_border_zero(&bw);
                    nn_blk_to_cnhw(pool, &bw, ow);
                    for (int o = 0; o < cout; o++)
                        for (int n = 0; n < batch; n++)
                            for (int y = 0; y < h; y++)
                                for (int x = 0; x < w; x++) {
                                    size_t k = (((size_t)o * batch + n) * h + y) * w + x;
                                    double a = ep.alpha ? fabs((double)ep.alpha[o]) : 1.0;
                                    double mag = a * l1_terms(&c, in, batch, h, w, o, n, y, x);
                                    double d = fabs((double)od[k] - ow[k]);
                                    double tol = 0x1p-17 * mag + 0x1p-21 * fabs((double)od[k]);
                                    if (!(d <= tol))
                                        fail_msg("case %zu batch %d epilogue %d threads %d: "
                                                 "(%d, %d, %d, %d) winograd %.9g direct %.9g "
                                                 "(terms %.3g)",
                                                 i, batch, e, nt, o, n, y, x, ow[k], od[k], mag);
                                    if (mag > 0 && d / mag > worst) worst = d / mag;
                                }
                    free(bd.d);
                    free(bw.d);
                }
                free(in);
                free(res);
                free(od);
                free(ow);
                free(bin.d);
                free(bres.d);
            }
            wconv_free(&c);
        }
        nn_pool_free(pool);
    }
    print_message("largest difference / terms: %.3g (bound 2^-17 = %.3g)\n", worst, 0x1p-17);
}

static void test_matches_direct(void **state)
{
    (void)state;
    tu_for_each_isa(matches_direct_cases);
}

static void threads_and_batches_identical_cases(void)
{
    const int cin = 48, h = 12, w = 10, cout = 128, batch = 3;
    nn_conv_geom g = tu_conv_geom(cin, h, w, 3, 1, 1);
    size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * h * w;
    size_t per_out = (size_t)h * w;
    float *in = rnd("in-inv", nin, 1);
    float *ref = malloc(nout * sizeof *ref), *got = malloc(nout * sizeof *got);
    assert_true(ref && got);
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        wconv c = wconv_new(cin, cout, nn_pool_size(pool));
        nn_epilogue ep;
        tu_epilogue_case(&ep, 1, c.bias, c.alpha, c.beta, NULL);
        /* all three images at once */
        nn_blk bin = tu_blk_new(cin, batch, h, w, 1);
        nn_blk_from_cnhw(pool, in, &bin);
        nn_blk out = run_wino(pool, &c, &g, &bin, 1, &ep, NULL);
        nn_blk_to_cnhw(pool, &out, threads == 1 ? ref : got);
        if (threads == 2 && memcmp(ref, got, nout * sizeof *ref) != 0)
            fail_msg("1 and 2 threads differ");
        free(out.d);
        free(bin.d);
        /* each image alone: (C, 1, H, W) slices of the (C, N, H, W) input */
        for (int n = 0; n < batch; n++) {
            float *x1 = malloc((size_t)cin * per_out * sizeof *x1), *y1 = malloc((size_t)cout * per_out * sizeof *y1);
            assert_true(x1 && y1);
            for (int ci = 0; ci < cin; ci++)
                memcpy(x1 + (size_t)ci * per_out, in + ((size_t)ci * batch + n) * per_out,
                       per_out * sizeof *x1);
            nn_blk b1 = tu_blk_new(cin, 1, h, w, 1);
            nn_blk_from_cnhw(pool, x1, &b1);
            nn_blk o1 = run_wino(pool, &c, &g, &b1, 1, &ep, NULL);
            nn_blk_to_cnhw(pool, &o1, y1);
            for (int o = 0; o < cout; o++)
                if (memcmp(y1 + (size_t)o * per_out, ref + ((size_t)o * batch + n) * per_out,
                           per_out * sizeof *y1) != 0)
                    fail_msg("image %d alone differs from the batch (%d threads)", n, threads);
            free(x1);
            free(y1);
            free(b1.d);
            free(o1.d);
        }
        wconv_free(&c);
        nn_pool_free(pool);
    }
    free(in);
    free(ref);
    free(got);
}

static void test_threads_and_batches_identical(void **state)
{
    (void)state;
    tu_for_each_isa(threads_and_batches_identical_cases);
}

static void test_applies(void **state)
{
    (void)state;
    nn_blk in = {.c = 64, .n = 1, .h = 8, .w = 8, .pb = 1};
    nn_conv_geom g = tu_conv_geom(64, 8, 8, 3, 1, 1);
    assert_true(nn_wino_applies(&g, 64, &in));
    assert_false(nn_wino_applies(&g, 96, &in)); /* cout not a multiple of 64 */
    nn_blk in0 = in;
    in0.pb = 0; /* no border to read the padding from */
    assert_false(nn_wino_applies(&g, 64, &in0));
    nn_conv_geom s2 = tu_conv_geom(64, 8, 8, 3, 2, 1), k5 = tu_conv_geom(64, 8, 8, 5, 1, 2),
                 p0 = tu_conv_geom(64, 8, 8, 3, 1, 0);
    assert_false(nn_wino_applies(&s2, 64, &in));
    assert_false(nn_wino_applies(&k5, 64, &in));
    assert_false(nn_wino_applies(&p0, 64, &in));
    nn_blk odd = {.c = 64, .n = 1, .h = 7, .w = 7, .pb = 1}, two = {.c = 64, .n = 1, .h = 2, .w = 2, .pb = 1};
    nn_conv_geom g7 = tu_conv_geom(64, 7, 7, 3, 1, 1), g2 = tu_conv_geom(64, 2, 2, 3, 1, 1);
    assert_false(nn_wino_applies(&g7, 64, &odd)); /* 7x7: odd and small (see winograd.c) */
    nn_blk odd9 = {.c = 64, .n = 1, .h = 9, .w = 13, .pb = 1};
    nn_conv_geom g9 = tu_conv_geom(64, 9, 13, 3, 1, 1);
    assert_true(nn_wino_applies(&g9, 64, &odd9));
    assert_false(nn_wino_applies(&g2, 64, &two)); /* 2x2: all padding but one tap row */
    nn_blk c24 = {.c = 24, .n = 1, .h = 8, .w = 8, .pb = 1};
    nn_conv_geom g24 = tu_conv_geom(24, 8, 8, 3, 1, 1);
    assert_false(nn_wino_applies(&g24, 64, &c24)); /* channels not blocked by 16 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_direct),
        cmocka_unit_test(test_threads_and_batches_identical),
        cmocka_unit_test(test_applies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
