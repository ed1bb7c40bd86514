/* The quantizers' own logf/expf (src/quant/qmath.c): special values, and on
 * a strided sweep of every float (every 4099th positive float for the
 * logarithm, every 1031st float of [-104, 89] for the exponential):
 * - every ISA's vector path gives the scalar path's bits;
 * - the fast path (double with a rounding check) equals the double-double
 *   path, an independent evaluation;
 * - the result is the float nearest the long double value (where long
 *   double has 64 bits and the value is not within 2^-60 of a midpoint).
 * The log quantizer's float logarithm (cwba__qlog_approx, the bracket of
 * its codes) is checked on the same kind of sweep of [1, FLT_MAX], plus
 * runs of consecutive floats where it is hardest (from 1, around sqrt 2
 * and 2): within 2^-20 relative of cwba__logf and of the C library's logf,
 * and every ISA's kernel gives the scalar function's bits.
 * The differences from the C library's logf/expf on the same inputs are
 * printed, not asserted (they depend on the libc); bench/qmath_exhaustive
 * runs every input. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_internal.h"

static float fbits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int same(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_special_values(void **state)
{
    (void)state;
    assert_true(same(cwba__logf(1.0f), 0.0f));
    assert_true(isinf(cwba__logf(0.0f)) && cwba__logf(0.0f) < 0);
    assert_true(isinf(cwba__logf(-0.0f)) && cwba__logf(-0.0f) < 0);
    assert_true(isnan(cwba__logf(-1.0f)));
    assert_true(isnan(cwba__logf(NAN)));
    assert_true(isinf(cwba__logf(INFINITY)) && cwba__logf(INFINITY) > 0);
    assert_true(same(cwba__logf(2.0f), 0x1.62e43p-1f)); /* ln 2 rounded */
    assert_true(same(cwba__logf(fbits(1)), -0x1.9d1da0p+6f)); /* ln 2^-149 = -103.279 */
    assert_true(same(cwba__logf(FLT_MAX), 0x1.62e430p+6f));
    assert_true(same(cwba__expf(0.0f), 1.0f));
    assert_true(same(cwba__expf(-0.0f), 1.0f));
    assert_true(same(cwba__expf(-INFINITY), 0.0f));
    assert_true(isinf(cwba__expf(INFINITY)));
    assert_true(isnan(cwba__expf(NAN)));
    assert_true(isinf(cwba__expf(88.8f)));
    assert_true(same(cwba__expf(88.72f), 0x1.fe8c9p+127f));
    assert_true(same(cwba__expf(-103.9f), fbits(1)));
    assert_true(same(cwba__expf(-110.0f), 0.0f));
    assert_true(same(cwba__expf(1.0f), 0x1.5bf0a8p+1f)); /* e rounded */
    /* the vector entry points on the same special values */
    float xs[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY, fbits(1), fbits(0x7fffff),
                  FLT_MAX, 1.0f, 88.8f, -103.9f, -110.0f, 1e-30f, 2.0f, 0.5f, 3.0f};
    enum { N = sizeof xs / sizeof *xs };
    for (int isa = CWBA_ISA_SCALAR; isa <= CWBA_ISA_NEON; isa++) {
        if (!cwba_isa_supported((cwba_isa)isa) || !cwba_isa_set((cwba_isa)isa)) continue;
        float y[N];
        cwba__logf_n(xs, y, N);
        for (int i = 0; i < N; i++) {
            float r = cwba__logf(xs[i]);
            assert_true(same(y[i], r) || (isnan(y[i]) && isnan(r)));
        }
        cwba__expf_n(xs, y, N);
        for (int i = 0; i < N; i++) {
            float r = cwba__expf(xs[i]);
            assert_true(same(y[i], r) || (isnan(y[i]) && isnan(r)));
        }
    }
}

/* 1 if f is the float nearest ref (long double), or the case is too close
 * to a midpoint for long double to tell. */
static int nearest(float f, long double ref)
{
#if LDBL_MANT_DIG >= 64
    if (!isfinite(f) || !isfinite((double)ref)) return 1;
    float lo = nextafterf(f, -INFINITY), hi = nextafterf(f, INFINITY);
    long double d = fabsl((long double)f - ref);
    long double mid_lo = ((long double)f + (long double)lo) / 2, mid_hi = ((long double)f + (long double)hi) / 2;
    long double tol = fabsl(ref) * 0x1p-60L;
    if (fabsl(ref - mid_lo) <= tol || fabsl(ref - mid_hi) <= tol) return 1;
    return d <= fabsl((long double)lo - ref) && d <= fabsl((long double)hi - ref);
#else
    (void)f;
    (void)ref;
    return 1;
#endif
}

/* Inputs whose fast path defers to the double-double one, at every lane
 * position of a vector call, in place: the lanes redone by the scalar
 * function must read their input, not the result stored over it. */
static void slow_lanes(int is_log, const float *hard, int nhard)
{
    enum { N = 64 };
    float x[N], y[N];
    for (int h = 0; h < nhard; h++)
        for (int pos = 0; pos < 16; pos++) {
            for (int i = 0; i < N; i++) x[i] = is_log ? 1.0f + (float)i : 0.01f * (float)i;
            x[pos] = x[pos + 16] = hard[h];
            float want = is_log ? cwba__logf(hard[h]) : cwba__expf(hard[h]);
            for (int isa = CWBA_ISA_SCALAR; isa <= CWBA_ISA_NEON; isa++) {
                if (!cwba_isa_supported((cwba_isa)isa) || !cwba_isa_set((cwba_isa)isa)) continue;
                memcpy(y, x, sizeof y);
                if (is_log)
                    cwba__logf_n(y, y, N);
                else
                    cwba__expf_n(y, y, N);
                if (!same(y[pos], want) || !same(y[pos + 16], want))
                    fail_msg("%s %s(%a) in place at lane %d: %a, want %a",
                             cwba_isa_name((cwba_isa)isa), is_log ? "logf" : "expf",
                             (double)hard[h], pos, (double)y[pos], (double)want);
            }
        }
}

static int sweep(int is_log, uint32_t lo, uint32_t hi, uint32_t stride, long *libc_diff)
{
    enum { NHARD = 8 };
    float hard[NHARD];
    int nhard = 0;
    enum { B = 1024 };
    float x[B], ref[B], y[B];
    for (uint64_t base = lo; base <= hi; base += (uint64_t)stride * B) {
        int n = 0;
        for (uint64_t u = base; u <= hi && n < B; u += stride) x[n++] = fbits((uint32_t)u);
        for (int i = 0; i < n; i++) {
            ref[i] = is_log ? cwba__logf(x[i]) : cwba__expf(x[i]);
            float slow = is_log ? cwba__logf_slow_for_test(x[i]) : cwba__expf_slow_for_test(x[i]);
            if (!same(ref[i], slow))
                fail_msg("%s(%a): fast %a, double-double %a", is_log ? "logf" : "expf",
                         (double)x[i], (double)ref[i], (double)slow);
            long double l = is_log ? logl((long double)x[i]) : expl((long double)x[i]);
            if (!nearest(ref[i], l))
                fail_msg("%s(%a) = %a is not the nearest float to %La", is_log ? "logf" : "expf",
                         (double)x[i], (double)ref[i], l);
            if (nhard < NHARD && cwba__qmath_slow_for_test(is_log, x[i])) hard[nhard++] = x[i];
            float lib = is_log ? logf(x[i]) : expf(x[i]);
            if (!same(lib, ref[i])) (*libc_diff)++;
        }
        for (int isa = CWBA_ISA_SCALAR; isa <= CWBA_ISA_NEON; isa++) {
            if (!cwba_isa_supported((cwba_isa)isa) || !cwba_isa_set((cwba_isa)isa)) continue;
            if (is_log)
                cwba__logf_n(x, y, (size_t)n);
            else
                cwba__expf_n(x, y, (size_t)n);
            for (int i = 0; i < n; i++)
                if (!same(y[i], ref[i]))
                    fail_msg("%s %s(%a): vector %a, scalar %a", cwba_isa_name((cwba_isa)isa),
                             is_log ? "logf" : "expf", (double)x[i], (double)y[i], (double)ref[i]);
        }
    }
    slow_lanes(is_log, hard, nhard);
    return nhard;
}

static void test_log_sweep(void **state)
{
    (void)state;
    long diff = 0;
    /* the sweep meets a few of the rare inputs the slow path decides */
    assert_true(sweep(1, 0x00000001u, 0x7f7fffffu, 4099, &diff) > 0);
    print_message("logf: %ld of %u strided inputs differ from the C library's\n", diff,
                  0x7f7fffffu / 4099);
}

static void test_exp_sweep(void **state)
{
    (void)state;
    long diff = 0;
    int hard = sweep(0, 0x00000000u, 0x42b20000u, 1031, &diff); /* [0, 89] */
    hard += sweep(0, 0x80000000u, 0xc2d00000u, 1031, &diff);    /* [-104, -0] */
    /* The strided sweep may miss them (about one input in 10^6): take the
     * first of consecutive floats from 0.5. */
    for (uint32_t u = 0x3f000000u; hard == 0 && u < 0x3f000000u + (1u << 24); u++)
        if (cwba__qmath_slow_for_test(0, fbits(u))) {
            float h = fbits(u);
            assert_true(same(cwba__expf(h), cwba__expf_slow_for_test(h)));
            slow_lanes(0, &h, 1);
            hard = 1;
        }
    assert_true(hard > 0);
    print_message("expf: %ld strided inputs differ from the C library's\n", diff);
}

/* |L - l| <= 2^-20 l (l = 0 only with L = 0). */
static int within(float L, float l)
{
    if (l == 0.0f) return L == 0.0f;
    return fabs((double)L - (double)l) <= 0x1p-20 * fabs((double)l);
}

static void bracket_block(const float *x, int n)
{
    float y[1024];
    assert_true(n <= 1024);
    for (int i = 0; i < n; i++) {
        float l = cwba__qlog_approx(x[i]);
        if (!within(cwba__logf(x[i]), l) || !within(logf(x[i]), l))
            fail_msg("qlog_approx(%a) = %a: cwba__logf %a, logf %a", (double)x[i], (double)l,
                     (double)cwba__logf(x[i]), (double)logf(x[i]));
    }
    for (int isa = CWBA_ISA_SCALAR; isa <= CWBA_ISA_NEON; isa++) {
        if (!cwba_isa_supported((cwba_isa)isa) || !cwba_isa_set((cwba_isa)isa)) continue;
        cwba__qlog_approx_n(x, y, (size_t)n);
        for (int i = 0; i < n; i++)
            if (!same(y[i], cwba__qlog_approx(x[i])))
                fail_msg("%s qlog_approx(%a): vector %a, scalar %a", cwba_isa_name((cwba_isa)isa),
                         (double)x[i], (double)y[i], (double)cwba__qlog_approx(x[i]));
    }
}

static void test_log_bracket(void **state)
{
    (void)state;
    cwba_isa best = cwba_isa_current();
    enum { B = 1000 };
    float x[B];
    long count = 0;
    for (uint64_t base = 0x3f800000u; base <= 0x7f7fffffu; base += 3001u * B) {
        int n = 0;
        for (uint64_t u = base; u <= 0x7f7fffffu && n < B; u += 3001u) x[n++] = fbits((uint32_t)u);
        bracket_block(x, n);
        count += n;
    }
    const uint32_t runs[] = {0x3f800000u, 0x3fb504f3u - 20000u, 0x40000000u - 20000u};
    for (int r = 0; r < 3; r++)
        for (uint32_t k = 0; k < 40000u; k += B) {
            for (int i = 0; i < B; i++) x[i] = fbits(runs[r] + k + (uint32_t)i);
            bracket_block(x, B);
            count += B;
        }
    cwba_isa_set(best);
    assert_true(count > 400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_log_sweep),
        cmocka_unit_test(test_exp_sweep),
        cmocka_unit_test(test_log_bracket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
