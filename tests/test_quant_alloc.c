/* The pieces of the evaluation (SPEC §2.2) on small hand-checked cases:
 * priority, base allocation with the max(1, .) repair, top-up order, greedy
 * steps, and the argument checks of cwba_evaluate_image. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/quant.h"

static void test_priority_formula(void **state)
{
    (void)state;
    /* (C=3, HW=2): means 1, 1, 3 (sum 5); unbiased stds 0, sqrt2, sqrt2
     * (S = 2 sqrt2, so s/S = 0, 1/2, 1/2). */
    const float x[] = {1, 1, 0, 2, 2, 4};
    double P[3];
    int order[3];
    cwba_priority(x, 3, 2, 0.9, 0.1, P, order);
    double w = 1.0 + 2.0 * exp(-0.5);
    assert_true(fabs(P[0] - (0.9 * 1 / 5 + 0.1 * 1.0 / w)) < 1e-12);
    assert_true(fabs(P[1] - (0.9 * 1 / 5 + 0.1 * exp(-0.5) / w)) < 1e-12);
    assert_true(fabs(P[2] - (0.9 * 3 / 5 + 0.1 * exp(-0.5) / w)) < 1e-12);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 0); /* same mean as channel 1, lower std wins */
    assert_int_equal(order[2], 1);
    /* beta only: the lowest std first. alpha only: the largest mean first. */
    cwba_priority(x, 3, 2, 0.0, 1.0, P, order);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1); /* tie with channel 2: stable */
    assert_int_equal(order[2], 2);
    cwba_priority(x, 3, 2, 1.0, 0.0, NULL, order);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 0);
    assert_int_equal(order[2], 1);
}

static void test_priority_degenerate(void **state)
{
    (void)state;
    /* All zero: sum of means 0 and S = 0 -> every P = (alpha + beta) / C,
     * order = channel order. */
    float z[4 * 3] = {0};
    double P[4];
    int order[4];
    cwba_priority(z, 4, 3, 0.9, 0.1, P, order);
    for (int c = 0; c < 4; c++) {
        assert_true(fabs(P[c] - 0.25) < 1e-15);
        assert_int_equal(order[c], c);
    }
    /* HW = 1: no spread, the std term is uniform and the means decide. */
    const float one[] = {0.5f, 2.0f, 1.0f};
    cwba_priority(one, 3, 1, 0.9, 0.1, P, order);
    assert_true(fabs(P[1] - (0.9 * 2.0 / 3.5 + 0.1 / 3)) < 1e-12);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0);
    /* Constant channels with different levels: S = 0, means decide. */
    const float flat[] = {1, 1, 3, 3};
    cwba_priority(flat, 2, 2, 0.9, 0.1, P, order);
    assert_true(fabs(P[0] - (0.9 * 0.25 + 0.05)) < 1e-12);
    assert_int_equal(order[0], 1);
}

static void test_base_allocation(void **state)
{
    (void)state;
    int n[8];
    const int order4[] = {2, 3, 0, 1};
    /* Flooring: T_2 = 12, shares 1.5, 1.5, 1.5, 7.5 -> 1, 1, 1, 7, leftover 2. */
    const double w1[] = {1, 1, 1, 5};
    assert_int_equal(cwba_base_allocation(w1, 4, 2, order4, n), 2);
    assert_int_equal(n[0], 1);
    assert_int_equal(n[1], 1);
    assert_int_equal(n[2], 1);
    assert_int_equal(n[3], 7);
    /* Means or sums give the same shares. */
    const double w1s[] = {3, 3, 3, 15};
    int m[4];
    assert_int_equal(cwba_base_allocation(w1s, 4, 2, order4, m), 2);
    assert_memory_equal(n, m, sizeof m);
    /* max(1, .) repair: shares 0, 0, 6, 6 -> 1, 1, 6, 6 (14 > 12). Two are
     * taken back one at a time from the lowest priority channels with
     * n > 1, walking up the order: channel 1 and 0 have 1, so 3 then 2. */
    const double w2[] = {0, 0, 5, 5};
    assert_int_equal(cwba_base_allocation(w2, 4, 2, order4, n), 0);
    assert_int_equal(n[0], 1);
    assert_int_equal(n[1], 1);
    assert_int_equal(n[2], 5);
    assert_int_equal(n[3], 5);
    /* Repair wraps round when one channel must give more than once. */
    const double w3[] = {0, 0, 0, 1};
    const int order_b[] = {3, 2, 1, 0};
    assert_int_equal(cwba_base_allocation(w3, 4, 2, order_b, n), 0);
    assert_int_equal(n[3], 9);
    assert_int_equal(n[0] + n[1] + n[2], 3);
    /* Whole-number weights are floored exactly: the original's bits-3 table
     * of the toy problem (column sums, T = 56) gives 6 and 8 exactly. */
    const double sums[] = {25, 22, 23, 18, 18, 13, 25, 24};
    const int id8[] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(cwba_base_allocation(sums, 8, 3, id8, n), 2);
    const int want[] = {8, 7, 7, 6, 6, 4, 8, 8};
    assert_memory_equal(n, want, sizeof want);
    /* Non-integer weights take the double path: 1/3 each of T_3 = 21 -> 7. */
    const double third[] = {0.1, 0.1, 0.1};
    assert_int_equal(cwba_base_allocation(third, 3, 3, id8, n), 0);
    assert_true(n[0] == 7 && n[1] == 7 && n[2] == 7);
}

static void test_topup(void **state)
{
    (void)state;
    const int order[] = {2, 0, 1};
    int n[3] = {1, 1, 1};
    cwba_topup(n, 3, order, 2);
    assert_true(n[0] == 2 && n[1] == 1 && n[2] == 2);
    int m[3] = {1, 1, 1};
    cwba_topup(m, 3, order, 4); /* one full round, then the top channel */
    assert_true(m[0] == 2 && m[1] == 2 && m[2] == 3);
    int k[3] = {5, 5, 5};
    cwba_topup(k, 3, order, 0);
    assert_true(k[0] == 5 && k[1] == 5 && k[2] == 5);
}

/* A back end that sums the feature (K = 1): e_c(n) = (xhat_c - x_c)^2 for
 * HW = 1. Channels 0 and 1 hold the range ends 0 and 1 (exact at any n);
 * channel 2 holds 0.4 and channel 3 holds 0.25. */
static cwba_status sum_backend(void *ctx, const float *feat, int batch, float *logits,
                               cwba_error *err)
{
    (void)err;
    int *C = ctx;
    for (int b = 0; b < batch; b++) {
        float s = 0.0f;
        for (int c = 0; c < *C; c++) s += feat[b * *C + c];
        logits[b] = s;
    }
    return CWBA_OK;
}

static void test_greedy_hand(void **state)
{
    (void)state;
    int C = 4;
    cwba_backend be = {4, 1, 1, 1, 3, sum_backend, &C};
    const float x[] = {0.0f, 1.0f, 0.4f, 0.25f};
    /* n:  channel 2 (0.4): 1->0 (.16), 2->.5 (.01), 3->1/3 (.0044), 4->.5 (.01), 5 exact.
     *     channel 3 (.25): 1->0 (.0625), 2->0 (tie to even, .0625), 3->1/3 (.0069), 4 exact.
     * Steps: 2, 3, 3, 2, 3, 2, 2, then all errors are 0 and the tie goes
     * to channel 0. */
    const int picks[] = {2, 3, 3, 2, 3, 2, 2, 0};
    cwba_probe_cache *pc;
    cwba_error err;
    assert_int_equal(cwba_probe_cache_create(&be, CWBA_QUANT_UNIFORM, x, NULL, &pc, &err), CWBA_OK);
    int n[4] = {1, 1, 1, 1};
    cwba_alloc_stats st = {0};
    for (int s = 0; s < 8; s++) {
        int before[4];
        memcpy(before, n, sizeof n);
        assert_int_equal(cwba_greedy_steps(pc, n, 1, &st, &err), CWBA_OK);
        for (int c = 0; c < 4; c++) assert_int_equal(n[c], before[c] + (c == picks[s]));
    }
    assert_int_equal(st.steps, 8);
    /* Probes computed once per (c, n): 4 initial + one per new n reached
     * (steps one at a time never speculate). */
    assert_int_equal(st.probes, 4 + 7);
    assert_int_equal(st.passes, 1 + 4 + 7);
    /* Same result in one call, and again from the cache without passes. */
    int m[4] = {1, 1, 1, 1};
    cwba_alloc_stats st2 = {0};
    assert_int_equal(cwba_greedy_steps(pc, m, 8, &st2, &err), CWBA_OK);
    assert_memory_equal(n, m, sizeof n);
    assert_int_equal(st2.passes, 0);
    assert_int_equal(st2.steps, 8);
    /* Zero steps is a no-op; invalid n is rejected. */
    assert_int_equal(cwba_greedy_steps(pc, m, 0, &st2, &err), CWBA_OK);
    int bad[4] = {1, 0, 1, 1};
    assert_int_equal(cwba_greedy_steps(pc, bad, 1, &st2, &err), CWBA_E_ARG);
    assert_int_equal(cwba_greedy_steps(pc, m, -1, &st2, &err), CWBA_E_ARG);
    cwba_probe_cache_free(pc);
}

static cwba_status failing_backend(void *ctx, const float *feat, int batch, float *logits,
                                   cwba_error *err)
{
    (void)ctx;
    (void)feat;
    (void)batch;
    (void)logits;
    return cwba_fail(err, CWBA_E_IO, "back end exploded");
}

static cwba_status nan_backend(void *ctx, const float *feat, int batch, float *logits,
                               cwba_error *err)
{
    (void)ctx;
    (void)feat;
    (void)err;
    for (int b = 0; b < batch; b++) logits[b] = NAN;
    return CWBA_OK;
}

static void test_evaluate_checks(void **state)
{
    (void)state;
    int C = 4;
    cwba_backend be = {4, 1, 1, 1, 8, sum_backend, &C};
    const float x[] = {0.0f, 1.0f, 0.4f, 0.25f};
    int data[] = {3, 3, 3, 3, 2, 2, 4, 4};
    cwba_table t = {4, 2, data};
    cwba_eval_params p = {CWBA_QUANT_UNIFORM, 2, 5, 0.9, 0.1};
    int n[4];
    float xh[4];
    double mse = -1;
    cwba_alloc_stats st = {0};
    cwba_error err;
    /* Column sums 5,5,7,7 of T=12: 2,2,3,3 -> leftover 2, R' = min(5, 2). */
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_OK);
    assert_int_equal(n[0] + n[1] + n[2] + n[3], 12);
    assert_int_equal(st.steps, 2);
    assert_true(mse >= 0.0);
    assert_true(fabs(mse - pow((double)(xh[2] + xh[3]) - 0.65, 2)) < 1e-6);
    /* Bad arguments. */
    cwba_eval_params bad = p;
    bad.bits = 8;
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &bad, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    bad = p;
    bad.reserve = -1;
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &bad, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    bad = p;
    bad.quant = CWBA_QUANT_DOREFA;
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &bad, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    bad = p;
    bad.alpha = NAN;
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &bad, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    cwba_table t3 = {3, 2, data};
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t3, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_E_SHAPE);
    /* A cache made for another feature or quantizer is refused. */
    const float other[] = {0.0f, 1.0f, 0.5f, 0.25f};
    cwba_probe_cache *pc;
    assert_int_equal(cwba_probe_cache_create(&be, CWBA_QUANT_UNIFORM, other, NULL, &pc, &err), CWBA_OK);
    assert_int_equal(cwba_evaluate_image(&be, pc, &t, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    cwba_probe_cache_free(pc);
    assert_int_equal(cwba_probe_cache_create(&be, CWBA_QUANT_LOG, x, NULL, &pc, &err), CWBA_OK);
    assert_int_equal(cwba_evaluate_image(&be, pc, &t, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    cwba_probe_cache_free(pc);
    /* Back-end failures and non-finite logits surface as statuses. */
    cwba_backend fb = be;
    fb.run = failing_backend;
    assert_int_equal(cwba_evaluate_image(&fb, NULL, &t, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "exploded"));
    fb.run = nan_backend;
    assert_int_equal(cwba_evaluate_image(&fb, NULL, &t, &p, x, NULL, n, xh, &mse, &st, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "non-finite"));
    int rows[6 * 4];
    assert_int_equal(cwba_calibrate_image(&fb, CWBA_QUANT_UNIFORM, x, NULL, rows, NULL, &err), CWBA_E_ARG);
    cwba_backend zb = be;
    zb.max_batch = 0;
    assert_int_equal(cwba_calibrate_image(&zb, CWBA_QUANT_UNIFORM, x, NULL, rows, NULL, &err), CWBA_E_ARG);
    assert_int_equal(cwba_calibrate_image(&be, CWBA_QUANT_DOREFA, x, NULL, rows, NULL, &err), CWBA_E_ARG);
}

/* An all-zero feature: pass-through quantization, uniform priority, mse 0. */
static void test_evaluate_zero_feature(void **state)
{
    (void)state;
    int C = 4;
    cwba_backend be = {4, 1, 1, 1, 2, sum_backend, &C};
    const float x[4] = {0};
    int data[] = {1, 1, 1, 9};
    cwba_table t = {4, 1, data};
    cwba_eval_params p = {CWBA_QUANT_LOG, 2, 3, 0.9, 0.1};
    int n[4];
    double mse = -1;
    cwba_error err;
    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &p, x, NULL, n, NULL, &mse, NULL, &err), CWBA_OK);
    assert_true(mse == 0.0);
    /* T = 12, shares 1, 1, 1, 9: no leftover, all-zero probes change nothing. */
    assert_true(n[0] == 1 && n[1] == 1 && n[2] == 1 && n[3] == 9);
    int rows[6 * 4];
    cwba_alloc_stats st = {0};
    assert_int_equal(cwba_calibrate_image(&be, CWBA_QUANT_UNIFORM, x, NULL, rows, &st, &err), CWBA_OK);
    /* Every probe error is 0: ties go to channel 0 every time. */
    assert_int_equal(rows[0], 1 + 2 * 4);
    assert_int_equal(rows[5 * 4], 1 + 126 * 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_formula),
        cmocka_unit_test(test_priority_degenerate),
        cmocka_unit_test(test_base_allocation),
        cmocka_unit_test(test_topup),
        cmocka_unit_test(test_greedy_hand),
        cmocka_unit_test(test_evaluate_checks),
        cmocka_unit_test(test_evaluate_zero_feature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
