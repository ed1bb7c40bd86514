/* The per-image evaluation context (cwba_eval_ctx): it gives what
 * cwba_evaluate_image gives, its codes decode (through a real bitstream) to
 * exactly its xhat on both payload modes (the check the evaluation loop no
 * longer makes per configuration), it reports the online steps actually
 * taken, and it makes no back-end pass when none is needed (no probe cache
 * without steps; none either when a table leaves no leftover intervals). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"
#include "cwba/quant.h"

enum { C = 8, H = 3, W = 3, K = 5, HW = H * W };

static uint32_t rng = 7u;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f;
}


static void test_ctx_matches_evaluate_image(void **state)
{
    (void)state;
    int dim[2] = {C * HW, K};
    cwba_backend be = {C, H, W, K, 4, tu_toy_backend, dim};
    int rows[3 * C];
    for (int i = 0; i < 3 * C; i++) rows[i] = 1 + (int)(frand() * 6.0f);
    cwba_table t = {C, 3, rows};
    for (int trial = 0; trial < 6; trial++) {
        float x[C * HW];
        for (int i = 0; i < C * HW; i++) {
            float v = frand() - 0.3f;
            x[i] = v > 0.0f ? v * (1.0f + (float)trial) : 0.0f;
        }
        for (int q = CWBA_QUANT_UNIFORM; q <= CWBA_QUANT_LOG; q++) {
            cwba_error err;
            cwba_eval_ctx *ec;
            assert_int_equal(cwba_eval_ctx_create(&be, (cwba_quant)q, x, NULL, 0.9, 0.1, &ec, &err),
                             CWBA_OK);
            cwba_alloc_stats shared = {0, 0, 0};
            for (int bits = 2; bits <= 4; bits++)
                for (int reserve = 0; reserve <= 5; reserve += 5) {
                    int n1[C], n2[C];
                    float xh1[C * HW], xh2[C * HW];
                    uint32_t codes[C * HW];
                    long steps = -1;
                    cwba_alloc_stats st = {0, 0, 0};
                    assert_int_equal(cwba_eval_ctx_run(ec, &t, bits, reserve, n1, xh1, codes,
                                                       &steps, &st, &err),
                                     CWBA_OK);
                    shared.passes += st.passes;
                    cwba_eval_params p = {(cwba_quant)q, bits, reserve, 0.9, 0.1};
                    assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &p, x, NULL, n2, xh2, NULL,
                                                         NULL, &err),
                                     CWBA_OK);
                    assert_memory_equal(n1, n2, sizeof n1);
                    assert_memory_equal(xh1, xh2, sizeof xh1);
                    long sum = 0;
                    for (int c = 0; c < C; c++) sum += n1[c];
                    assert_int_equal(sum, cwba_budget(bits, C));
                    assert_true(steps >= 0 && steps <= reserve);
                    if (reserve == 0) {
                        assert_int_equal(steps, 0);
                        assert_int_equal(st.passes, 0); /* no probe cache, no y0 */
                    }
                    tu_check_stream((cwba_quant)q, x, C, H, W, n1, codes, xh1);
                }
            /* Later configurations reuse the first one's probe errors. */
            assert_true(shared.passes > 0);
            cwba_eval_ctx_free(ec);
        }
    }
}

/* Shares that come out whole: column sums 3,3,3,3 at T_2 = 12 leave no
 * leftover, so a reserve takes no step and costs no pass. */
static void test_no_leftover_no_pass(void **state)
{
    (void)state;
    enum { C4 = 4 };
    int rows[C4] = {3, 3, 3, 3};
    cwba_table t = {C4, 1, rows};
    float x[C4 * 2] = {0.1f, 0.9f, 0.2f, 0.4f, 0.7f, 0.0f, 0.3f, 0.5f};
    int dim[2] = {C4 * 2, 2};
    cwba_error err;
    cwba_eval_ctx *ec;
    cwba_backend b1 = {C4, 1, 2, 2, 8, tu_toy_backend, dim};
    assert_int_equal(cwba_eval_ctx_create(&b1, CWBA_QUANT_UNIFORM, x, NULL, 0.9, 0.1, &ec, &err),
                     CWBA_OK);
    int n[C4];
    long steps = -1;
    cwba_alloc_stats st = {0, 0, 0};
    assert_int_equal(cwba_eval_ctx_run(ec, &t, 2, 10, n, NULL, NULL, &steps, &st, &err), CWBA_OK);
    assert_int_equal(steps, 0);
    assert_int_equal(st.passes, 0);
    for (int c = 0; c < C4; c++) assert_int_equal(n[c], 3);
    /* A table with a leftover takes min(reserve, leftover) steps. */
    int rows2[C4] = {3, 3, 3, 2};
    cwba_table t2 = {C4, 1, rows2};
    assert_int_equal(cwba_eval_ctx_run(ec, &t2, 2, 10, n, NULL, NULL, &steps, &st, &err), CWBA_OK);
    assert_true(steps > 0 && steps < 10);
    assert_true(st.passes > 0);
    /* bad arguments: one line */
    assert_int_equal(cwba_eval_ctx_run(ec, &t, 9, 0, n, NULL, NULL, &steps, &st, &err), CWBA_E_ARG);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(cwba_eval_ctx_run(ec, &t, 2, -1, n, NULL, NULL, &steps, &st, &err), CWBA_E_ARG);
    cwba_eval_ctx_free(ec);
    assert_int_equal(cwba_eval_ctx_create(&b1, CWBA_QUANT_DOREFA, x, NULL, 0.9, 0.1, &ec, &err),
                     CWBA_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_matches_evaluate_image),
        cmocka_unit_test(test_no_leftover_no_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
