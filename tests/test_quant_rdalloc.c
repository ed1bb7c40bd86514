/* The rate-distortion allocation (cwba_rd_ctx): its D are the probe errors
 * (a channel alone quantized, or dropped, through the back end), the
 * allocation is the exact per-channel argmin of D + lambda R, the rate falls
 * and the distortion rises with lambda, a huge lambda drops every channel,
 * the codes decode (through a real bitstream, both payload modes) to exactly
 * its xhat, and the result is the same with a shared or a fresh cache and
 * any batch size. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"
#include "cwba/quant.h"

enum { C = 12, H = 3, W = 4, K = 5, HW = H * W, KMAX = 6 };

static uint32_t rng = 11u;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f;
}

static void make_feature(float *x)
{
    for (int c = 0; c < C; c++) {
        float scale = 0.2f + 3.0f * (float)c / C; /* channels of different energy */
        for (int i = 0; i < HW; i++) {
            float v = (frand() - 0.35f) * scale;
            x[c * HW + i] = v > 0.0f ? v : 0.0f; /* ReLU-like: mn = 0 */
        }
    }
}


/* Output MSE of the back end on xq against y0 (the probe error's measure). */
static double out_mse(const cwba_backend *be, const float *xq, const float *y0)
{
    float y[K];
    cwba_error err;
    assert_int_equal(be->run(be->ctx, xq, 1, y, &err), CWBA_OK);
    double s = 0.0;
    for (int k = 0; k < K; k++) s += ((double)y[k] - y0[k]) * ((double)y[k] - y0[k]);
    return (double)(float)(s / K);
}

static void test_rd_allocation(void **state)
{
    (void)state;
    int dim[2] = {C * HW, K};
    cwba_error err;
    for (int trial = 0; trial < 4; trial++) {
        cwba_backend be = {C, H, W, K, 1 + trial * 3, tu_toy_backend, dim};
        float x[C * HW], y0[K];
        make_feature(x);
        assert_int_equal(tu_toy_backend(dim, x, 1, y0, &err), CWBA_OK);
        cwba_probe_cache *pc;
        cwba_rd_ctx *rc;
        cwba_alloc_stats st = {0, 0, 0};
        assert_int_equal(cwba_probe_cache_create(&be, CWBA_QUANT_UNIFORM, x, y0, &pc, &err), CWBA_OK);
        assert_int_equal(cwba_rd_ctx_create(pc, &be, CWBA_QUANT_UNIFORM, x, KMAX, &rc, &st, &err),
                         CWBA_OK);
        /* every candidate probed once, nothing else */
        assert_int_equal(st.probes, C * (KMAX + 1));
        assert_true(st.passes <= (uint64_t)C * (KMAX + 1));

        double prev_bits = INFINITY, prev_mse = -1.0;
        for (double lambda = 0.0; lambda < 1e7; lambda = lambda == 0.0 ? 1e-6 : lambda * 4.0) {
            int n[C];
            float xh[C * HW];
            uint32_t codes[C * HW];
            double dm, bits;
            assert_int_equal(cwba_rd_ctx_alloc(rc, lambda, n, xh, codes, &dm, &bits, &err), CWBA_OK);
            /* a Lagrangian minimum: rate never rises, distortion never falls */
            assert_true(bits <= prev_bits);
            assert_true(dm >= prev_mse);
            prev_bits = bits;
            prev_mse = dm;
            tu_check_stream(CWBA_QUANT_UNIFORM, x, C, H, W, n, codes, xh);
            /* the model's D is the sum of the chosen channels' probe errors:
             * recompute each one through the back end */
            double dsum = 0.0;
            for (int c = 0; c < C; c++) {
                assert_true(n[c] == 0 || (n[c] & (n[c] + 1)) == 0); /* 2^k - 1 */
                assert_true(n[c] <= (1 << KMAX) - 1);
                float xq[C * HW];
                memcpy(xq, x, sizeof xq);
                memcpy(xq + c * HW, xh + c * HW, HW * sizeof(float));
                dsum += out_mse(&be, xq, y0);
                if (n[c] == 0)
                    for (int i = 0; i < HW; i++) assert_true(xh[c * HW + i] == 0.0f);
            }
            assert_true(fabs(dsum - dm) <= 1e-9 * (1.0 + dm));
            if (lambda > 1e6)
                for (int c = 0; c < C; c++) assert_int_equal(n[c], 0);
        }
        /* the same allocation from a fresh cache with another batch size */
        cwba_backend be2 = be;
        be2.max_batch = 64;
        cwba_probe_cache *pc2;
        cwba_rd_ctx *rc2;
        assert_int_equal(cwba_probe_cache_create(&be2, CWBA_QUANT_UNIFORM, x, y0, &pc2, &err), CWBA_OK);
        assert_int_equal(cwba_rd_ctx_create(pc2, &be2, CWBA_QUANT_UNIFORM, x, KMAX, &rc2, NULL, &err),
                         CWBA_OK);
        int n1[C], n2[C];
        assert_int_equal(cwba_rd_ctx_alloc(rc, 1e-3, n1, NULL, NULL, NULL, NULL, &err), CWBA_OK);
        assert_int_equal(cwba_rd_ctx_alloc(rc2, 1e-3, n2, NULL, NULL, NULL, NULL, &err), CWBA_OK);
        assert_memory_equal(n1, n2, sizeof n1);
        /* a second context on the shared cache probes nothing new */
        cwba_rd_ctx *rc3;
        cwba_alloc_stats st3 = {0, 0, 0};
        assert_int_equal(cwba_rd_ctx_create(pc, &be, CWBA_QUANT_UNIFORM, x, KMAX, &rc3, &st3, &err),
                         CWBA_OK);
        assert_int_equal(st3.passes, 0);
        /* argument checks */
        assert_int_equal(cwba_rd_ctx_alloc(rc, -1.0, n1, NULL, NULL, NULL, NULL, &err), CWBA_E_ARG);
        assert_int_equal(cwba_rd_ctx_alloc(rc, NAN, n1, NULL, NULL, NULL, NULL, &err), CWBA_E_ARG);
        cwba_rd_ctx *bad;
        assert_int_equal(cwba_rd_ctx_create(pc, &be, CWBA_QUANT_UNIFORM, x, CWBA_RD_KMAX + 1, &bad,
                                            NULL, &err),
                         CWBA_E_ARG);
        assert_int_equal(cwba_rd_ctx_create(pc, &be, CWBA_QUANT_LOG, x, KMAX, &bad, NULL, &err),
                         CWBA_E_ARG);
        cwba_rd_ctx_free(rc3);
        cwba_rd_ctx_free(rc2);
        cwba_rd_ctx_free(rc);
        cwba_probe_cache_free(pc2);
        cwba_probe_cache_free(pc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rd_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
