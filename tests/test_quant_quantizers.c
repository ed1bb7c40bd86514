/* Quantizers of SPEC §2.1 on hand-computed values, and the per-feature fast
 * paths checked bit for bit against the scalar reference on every ISA this
 * CPU has (scalar, AVX2, AVX-512). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/quant.h"
#include "quant/quant_internal.h"

/* Runs body once per supported ISA (the current one restored after). */
#define FOR_EACH_ISA(isa_var)                                                                    \
    for (int isa_var = CWBA_ISA_SCALAR; isa_var <= CWBA_ISA_NEON; isa_var++)                    \
        if (cwba_isa_supported((cwba_isa)isa_var) && cwba_isa_set((cwba_isa)isa_var))
static cwba_isa g_best;

static uint32_t rng_state = 12345u;
static float frand(void) /* [0, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}

static void test_parse_and_budget(void **state)
{
    (void)state;
    cwba_quant q;
    cwba_error err;
    assert_int_equal(cwba_quant_parse("uniform", &q, &err), CWBA_OK);
    assert_int_equal(q, CWBA_QUANT_UNIFORM);
    assert_int_equal(cwba_quant_parse("interval", &q, &err), CWBA_OK);
    assert_int_equal(q, CWBA_QUANT_UNIFORM);
    assert_int_equal(cwba_quant_parse("log", &q, &err), CWBA_OK);
    assert_int_equal(q, CWBA_QUANT_LOG);
    assert_int_equal(cwba_quant_parse("dorefa", &q, &err), CWBA_OK);
    assert_int_equal(q, CWBA_QUANT_DOREFA);
    assert_int_equal(cwba_quant_parse("unniform", &q, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "unniform"));
    assert_string_equal(cwba_quant_name(CWBA_QUANT_LOG), "log");
    assert_int_equal(cwba_budget(2, 8), 24);
    assert_int_equal(cwba_budget(7, 256), 127 * 256);
    float x[] = {3.0f, -2.0f, 7.5f, 0.0f}, mn, mx;
    cwba_feature_range(x, 4, &mn, &mx);
    assert_true(mn == -2.0f && mx == 7.5f);
    float a[] = {1, 2, 3}, b[] = {1, 4, 0};
    assert_true(fabs(cwba_mse(a, b, 3) - (0 + 4 + 9) / 3.0) < 1e-15);
}

/* Uniform on [0, 4] with 4 intervals: every x.5 is an exact tie in float32. */
static void test_uniform_ties_to_even(void **state)
{
    (void)state;
    const cwba_quant U = CWBA_QUANT_UNIFORM;
    assert_int_equal(cwba_quant_code_ref(U, 0.0f, 0.0f, 4.0f, 4), 0);
    assert_int_equal(cwba_quant_code_ref(U, 4.0f, 0.0f, 4.0f, 4), 4);
    assert_int_equal(cwba_quant_code_ref(U, 0.5f, 0.0f, 4.0f, 4), 0); /* roundf would say 1 */
    assert_int_equal(cwba_quant_code_ref(U, 1.5f, 0.0f, 4.0f, 4), 2);
    assert_int_equal(cwba_quant_code_ref(U, 2.5f, 0.0f, 4.0f, 4), 2); /* roundf would say 3 */
    assert_int_equal(cwba_quant_code_ref(U, 3.5f, 0.0f, 4.0f, 4), 4);
    assert_int_equal(cwba_quant_code_ref(U, 2.6f, 0.0f, 4.0f, 4), 3);
    /* [-1, 1], 2 intervals: levels -1, 0, 1; -0.5 and 0.5 are ties. */
    assert_int_equal(cwba_quant_code_ref(U, -0.5f, -1.0f, 1.0f, 2), 0);
    assert_int_equal(cwba_quant_code_ref(U, 0.5f, -1.0f, 1.0f, 2), 2);
    assert_true(cwba_quant_dequant_ref(U, 0, -1.0f, 1.0f, 2) == -1.0f);
    assert_true(cwba_quant_dequant_ref(U, 1, -1.0f, 1.0f, 2) == 0.0f);
    assert_true(cwba_quant_dequant_ref(U, 2, -1.0f, 1.0f, 2) == 1.0f);
    assert_true(cwba_quant_dequant_ref(U, 3, 0.0f, 4.0f, 4) == 3.0f);
    /* n = 1: the midpoint ties to code 0. */
    assert_int_equal(cwba_quant_code_ref(U, 2.0f, 0.0f, 4.0f, 1), 0);
    assert_int_equal(cwba_quant_code_ref(U, 2.0001f, 0.0f, 4.0f, 1), 1);
    /* Out of range inputs are clamped to 0..n. */
    assert_int_equal(cwba_quant_code_ref(U, -3.0f, 0.0f, 4.0f, 4), 0);
    assert_int_equal(cwba_quant_code_ref(U, 9.0f, 0.0f, 4.0f, 4), 4);
    /* The SPEC's order: ((x - mn) / (mx - mn)) * n. With x = 0.1, range 0.3,
     * n = 3 the quotient rounds to 0.33333334f and the product to 1.0f. */
    float t = (0.1f - 0.0f) / 0.3f * 3.0f;
    assert_int_equal(cwba_quant_code_ref(U, 0.1f, 0.0f, 0.3f, 3), (uint32_t)rintf(t));
}

static void test_pass_through(void **state)
{
    (void)state;
    for (int q = CWBA_QUANT_UNIFORM; q <= CWBA_QUANT_LOG; q++) {
        assert_int_equal(cwba_quant_code_ref((cwba_quant)q, 2.5f, 2.5f, 2.5f, 7), 0);
        assert_true(cwba_quant_dequant_ref((cwba_quant)q, 0, 2.5f, 2.5f, 7) == 2.5f);
        float x[6] = {1.25f, 1.25f, 1.25f, 1.25f, 1.25f, 1.25f}, xh[6];
        uint32_t codes[6];
        int n[2] = {1, 3};
        cwba_error err;
        assert_int_equal(cwba_quantize_feature((cwba_quant)q, x, 2, 3, n, xh, codes, &err), CWBA_OK);
        assert_memory_equal(x, xh, sizeof x);
        for (int i = 0; i < 6; i++) assert_int_equal(codes[i], 0);
    }
}

static void test_log(void **state)
{
    (void)state;
    const cwba_quant L = CWBA_QUANT_LOG;
    /* Range e-1: M = ln(e) = 1, so q = round(ln(x+1) * n). */
    const float mx = expf(1.0f) - 1.0f;
    assert_int_equal(cwba_quant_code_ref(L, 0.0f, 0.0f, mx, 2), 0);
    assert_int_equal(cwba_quant_code_ref(L, mx, 0.0f, mx, 2), 2);
    assert_int_equal(cwba_quant_code_ref(L, expf(0.5f) - 1.0f, 0.0f, mx, 2), 1);
    assert_int_equal(cwba_quant_code_ref(L, expf(0.2f) - 1.0f, 0.0f, mx, 2), 0);
    assert_int_equal(cwba_quant_code_ref(L, expf(0.3f) - 1.0f, 0.0f, mx, 2), 1);
    assert_true(fabsf(cwba_quant_dequant_ref(L, 1, 0.0f, mx, 2) - (expf(0.5f) - 1.0f)) < 1e-6f);
    assert_true(fabsf(cwba_quant_dequant_ref(L, 2, 0.0f, mx, 2) - mx) < 1e-6f);
    /* Shifted range: codes depend on x - mn only. */
    assert_int_equal(cwba_quant_code_ref(L, -3.0f + expf(0.5f) - 1.0f, -3.0f, -3.0f + mx, 2), 1);
    /* The deliberate fix: with ln in the numerator the top code is n for any
     * range (log2 there, as in the original, would give round(1.44 n)). */
    for (int i = 0; i < 2000; i++) {
        float mn = (frand() - 0.5f) * 20.0f;
        float range = frand() * powf(10.0f, (float)(i % 7) - 3.0f) + 1e-3f;
        int n = 1 + (int)(frand() * 900.0f);
        float top = mn + range;
        assert_int_equal(cwba_quant_code_ref(L, top, mn, top, n), (uint32_t)n);
        assert_int_equal(cwba_quant_code_ref(L, mn, mn, top, n), 0);
        float x = mn + frand() * (top - mn);
        uint32_t c = cwba_quant_code_ref(L, x, mn, top, n);
        assert_true(c <= (uint32_t)n);
        /* The unclamped value stays within 0..n too. */
        float raw = rintf(cwba__qlogf(x - mn + 1.0f) / cwba__qlogf(top - mn + 1.0f) * (float)n);
        assert_true(raw >= 0.0f && raw <= (float)n);
        assert_true((uint32_t)raw == c);
    }
}

static void test_dorefa(void **state)
{
    (void)state;
    float x[] = {-1.0f, 0.0f, 0.5f, 0.1f, 0.9f, 5.0f, 0.3f};
    float xh[7];
    /* 2 bits: 3 levels above 0; clamp to [0, 0.9] then round(v * 3) / 3. */
    cwba_dorefa(x, 7, 2, 0.9f, xh);
    assert_true(xh[0] == 0.0f);                 /* clamped below */
    assert_true(xh[1] == 0.0f);
    assert_true(xh[2] == 2.0f / 3.0f);          /* 1.5 ties to 2 */
    assert_true(xh[3] == 0.0f);                 /* 0.3 -> 0 */
    assert_true(xh[4] == 1.0f);                 /* 2.7 -> 3 */
    assert_true(xh[5] == 1.0f);                 /* clamped to 0.9 above */
    assert_true(xh[6] == 1.0f / 3.0f);          /* 0.9 -> 1 */
    /* 1 bit, clip 1: 0.5 ties to 0. */
    cwba_dorefa(x, 7, 1, 1.0f, xh);
    assert_true(xh[2] == 0.0f);
    assert_true(xh[5] == 1.0f);
    /* The fast loop equals the scalar reference. */
    for (int bits = 1; bits <= 8; bits++) {
        float clip = 0.25f + 0.1f * (float)bits;
        int n = (1 << bits) - 1;
        for (int i = 0; i < 500; i++) {
            float v = (frand() - 0.2f) * 2.0f, o;
            cwba_dorefa(&v, 1, bits, clip, &o);
            uint32_t code = cwba_quant_code_ref(CWBA_QUANT_DOREFA, v, 0.0f, clip, n);
            assert_true(o == cwba_quant_dequant_ref(CWBA_QUANT_DOREFA, code, 0.0f, clip, n));
        }
    }
}

/* cwba_quantize_feature (hoisted constants, level tables) equals the scalar
 * reference bit for bit, for both table and direct paths. */
static void test_fast_matches_ref(void **state)
{
    (void)state;
    const int shapes[][2] = {{5, 7}, {3, 64}, {16, 1}, {2, 200}};
    for (int s = 0; s < 4; s++) {
        int C = shapes[s][0], HW = shapes[s][1];
        float *x = malloc((size_t)C * HW * sizeof *x), *xh = malloc((size_t)C * HW * sizeof *xh);
        uint32_t *codes = malloc((size_t)C * HW * sizeof *codes);
        int *n = malloc((size_t)C * sizeof *n);
        assert_true(x && xh && codes && n);
        for (int trial = 0; trial < 30; trial++) {
            float scale = powf(10.0f, (float)(trial % 5) - 2.0f);
            for (int i = 0; i < C * HW; i++) {
                float v = (frand() - 0.3f) * scale;
                x[i] = (trial % 2 && v < 0.0f) ? 0.0f : v; /* ReLU-like half the time */
            }
            for (int c = 0; c < C; c++) n[c] = 1 + (int)(frand() * (trial % 3 ? 20.0f : 500.0f));
            float mn, mx;
            cwba_feature_range(x, (size_t)C * HW, &mn, &mx);
            FOR_EACH_ISA(isa)
            for (int q = CWBA_QUANT_UNIFORM; q <= CWBA_QUANT_LOG; q++) {
                cwba_error err;
                assert_int_equal(cwba_quantize_feature((cwba_quant)q, x, C, HW, n, xh, codes, &err),
                                 CWBA_OK);
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < HW; i++) {
                        int k = c * HW + i;
                        uint32_t rc = cwba_quant_code_ref((cwba_quant)q, x[k], mn, mx, n[c]);
                        float rv = cwba_quant_dequant_ref((cwba_quant)q, rc, mn, mx, n[c]);
                        if (codes[k] != rc || memcmp(&xh[k], &rv, sizeof rv) != 0)
                            fail_msg("%s %s C=%d HW=%d c=%d i=%d n=%d: fast %u/%.9g, ref %u/%.9g",
                                     cwba_isa_name((cwba_isa)isa),
                                     cwba_quant_name((cwba_quant)q), C, HW, c, i, n[c], codes[k],
                                     (double)xh[k], rc, (double)rv);
                        assert_true(rc <= (uint32_t)n[c]);
                    }
                /* codes may be NULL */
                assert_int_equal(cwba_quantize_feature((cwba_quant)q, x, C, HW, n, xh, NULL, &err),
                                 CWBA_OK);
            }
        }
        free(x);
        free(xh);
        free(codes);
        free(n);
    }
}

/* Values aimed at every decision boundary of the log quantizer (and a few
 * ulps either side), over ranges from 1e-5 to 1e7 and n from 1 to 65535,
 * must give the reference's codes on every ISA. */
static void test_log_boundaries(void **state)
{
    (void)state;
    const float ranges[] = {1e-5f, 3e-3f, 0.3f, 1.0f, 7.5f, 100.0f, 1e4f, 1e7f};
    const int ns[] = {1, 2, 3, 7, 15, 31, 127, 1000, 4095, 65535};
    const float mn = 0.25f;
    enum { W = 9, HWMAX = 2 + 200 * W };
    float *x = malloc(HWMAX * sizeof *x), *xh = malloc(HWMAX * sizeof *xh);
    uint32_t *codes = malloc(HWMAX * sizeof *codes);
    assert_true(x && xh && codes);
    long checked = 0;
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        float mx = mn + ranges[r];
        float m = cwba__qlogf(mx - mn + 1.0f);
        for (size_t q = 0; q < sizeof ns / sizeof *ns; q++) {
            int n = ns[q], HW = 2;
            x[0] = mn;
            x[1] = mx;
            int kstep = n / 200 + 1;
            for (int k = 0; k < n && HW + W <= HWMAX; k += kstep) {
                /* x with ln(x - mn + 1) / M * n = k + 0.5 */
                float c = cwba__qexpf(((float)k + 0.5f) * m / (float)n) - 1.0f + mn;
                float v = c;
                for (int u = 0; u < 4; u++) v = nextafterf(v, -INFINITY);
                for (int u = 0; u < W; u++, v = nextafterf(v, INFINITY))
                    x[HW++] = v < mn ? mn : (v > mx ? mx : v);
            }
            cwba_error err;
            int nn = n;
            FOR_EACH_ISA(isa) {
            assert_int_equal(cwba_quantize_feature(CWBA_QUANT_LOG, x, 1, HW, &nn, xh, codes, &err),
                             CWBA_OK);
            for (int i = 0; i < HW; i++) {
                uint32_t rc = cwba_quant_code_ref(CWBA_QUANT_LOG, x[i], mn, mx, n);
                float rv = cwba_quant_dequant_ref(CWBA_QUANT_LOG, rc, mn, mx, n);
                if (codes[i] != rc || memcmp(&xh[i], &rv, sizeof rv) != 0)
                    fail_msg("%s range %g n=%d x=%.9g: fast %u, ref %u",
                             cwba_isa_name((cwba_isa)isa), (double)ranges[r], n, (double)x[i],
                             codes[i], rc);
                checked++;
            }
            }
        }
    }
    cwba_isa_set(g_best);
    assert_true(checked > 50000);
    free(x);
    free(xh);
    free(codes);
}

/* cwba_feature_range runs in lanes; it must equal the sequential scan
 * (first of equal extremes: the sign of a zero; NaN skipped unless first). */
static void test_range_matches_sequential(void **state)
{
    (void)state;
    const float pool[] = {-1.5f, -0.0f, 0.0f, 0.75f, 2.0f, NAN};
    float x[70];
    for (int trial = 0; trial < 4000; trial++) {
        int n = 1 + (int)(frand() * 69.0f);
        int k = trial % 3 == 0 ? 6 : 5; /* NaN in a third of the trials */
        int lo_i = trial % 4 == 1 ? 1 : 0; /* some arrays without negatives */
        for (int i = 0; i < n; i++) x[i] = pool[lo_i + (int)(frand() * (float)(k - lo_i))];
        float slo = x[0], shi = x[0];
        for (int i = 1; i < n; i++) {
            if (x[i] < slo) slo = x[i];
            if (x[i] > shi) shi = x[i];
        }
        FOR_EACH_ISA(isa) {
            float lo, hi;
            cwba_feature_range(x, (size_t)n, &lo, &hi);
            if (memcmp(&lo, &slo, sizeof lo) != 0 || memcmp(&hi, &shi, sizeof hi) != 0)
                fail_msg("%s trial %d n=%d: lanes [%g, %g], sequential [%g, %g]",
                         cwba_isa_name((cwba_isa)isa), trial, n, (double)lo, (double)hi,
                         (double)slo, (double)shi);
        }
        cwba_isa_set(g_best);
    }
}

static void test_feature_errors(void **state)
{
    (void)state;
    float x[4] = {0, 1, 2, 3}, xh[4];
    int n[2] = {2, 0};
    cwba_error err;
    assert_int_equal(cwba_quantize_feature(CWBA_QUANT_UNIFORM, x, 2, 2, n, xh, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "channel 1"));
    n[1] = 3;
    assert_int_equal(cwba_quantize_feature(CWBA_QUANT_DOREFA, x, 2, 2, n, xh, NULL, &err), CWBA_E_ARG);
    x[2] = NAN;
    assert_int_equal(cwba_quantize_feature(CWBA_QUANT_UNIFORM, x, 2, 2, n, xh, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "not finite"));
    x[2] = 3e38f;
    x[0] = -3e38f;
    assert_int_equal(cwba_quantize_feature(CWBA_QUANT_UNIFORM, x, 2, 2, n, xh, NULL, &err), CWBA_E_ARG);
    assert_int_equal(cwba_quantize_feature(CWBA_QUANT_UNIFORM, x, 0, 2, n, xh, NULL, &err), CWBA_E_ARG);
}

int main(void)
{
    g_best = cwba_isa_current();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_budget),
        cmocka_unit_test(test_uniform_ties_to_even),
        cmocka_unit_test(test_pass_through),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_dorefa),
        cmocka_unit_test(test_fast_matches_ref),
        cmocka_unit_test(test_log_boundaries),
        cmocka_unit_test(test_range_matches_sequential),
        cmocka_unit_test(test_feature_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
