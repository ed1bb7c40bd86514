/* BD-rate (cwba_bd_rate): exact answers, values computed offline with NumPy
 * (tools/bdrate_reference.py), symmetry, and input validation. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "cwba/rd.h"

static double bd(const double *ra, const double *qa, int na, const double *rt, const double *qt,
                 int nt, cwba_bd_fit fit)
{
    double p = NAN;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_status st = cwba_bd_rate(ra, qa, na, rt, qt, nt, fit, &p, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    return p;
}

/* A curve whose rates are 0.8x the anchor's at the same qualities is -20 %
 * with either fit (ln 0.8 is a constant shift of ln R). */
static void test_scaled_curve(void **state)
{
    (void)state;
    const double qa[] = {30.0, 33.0, 35.5, 37.2}, ra[] = {100, 200, 400, 800};
    double rt[4];
    for (int i = 0; i < 4; i++) rt[i] = 0.8 * ra[i];
    assert_true(fabs(bd(ra, qa, 4, rt, qa, 4, CWBA_BD_CUBIC) + 20.0) < 1e-9);
    assert_true(fabs(bd(ra, qa, 4, rt, qa, 4, CWBA_BD_PCHIP) + 20.0) < 1e-9);
    /* and 1.25x the anchor: +25 % */
    for (int i = 0; i < 4; i++) rt[i] = 1.25 * ra[i];
    assert_true(fabs(bd(ra, qa, 4, rt, qa, 4, CWBA_BD_CUBIC) - 25.0) < 1e-9);
    /* five points on a straight line in (q, ln R): least squares is exact */
    const double q5[] = {20, 24, 27, 31, 40};
    double r5[5], t5[5];
    for (int i = 0; i < 5; i++) {
        r5[i] = exp(0.2 * q5[i]);
        t5[i] = 0.5 * r5[i];
    }
    assert_true(fabs(bd(r5, q5, 5, t5, q5, 5, CWBA_BD_CUBIC) + 50.0) < 1e-9);
}

/* Values from tools/bdrate_reference.py (numpy.polyfit/polyint for the
 * classic fit; pchip by Simpson quadrature of the Hermite interpolant). */
static void test_numpy_reference(void **state)
{
    (void)state;
    const double ra[] = {120, 260, 510, 1020, 1900}, qa[] = {28.1, 31.0, 33.6, 35.9, 37.4};
    const double rt[] = {90, 170, 380, 700, 1500}, qt[] = {27.5, 30.8, 34.1, 36.2, 38.0};
    assert_true(fabs(bd(ra, qa, 5, rt, qt, 5, CWBA_BD_CUBIC) - -32.809048409723) < 1e-8);
    assert_true(fabs(bd(ra, qa, 5, rt, qt, 5, CWBA_BD_PCHIP) - -32.815688405393) < 1e-6);
    const double ra2[] = {300, 520, 900, 1500, 2600, 4100};
    const double qa2[] = {0.52, 0.71, 0.83, 0.885, 0.905, 0.912};
    const double rt2[] = {210, 400, 610, 1100, 1800}, qt2[] = {0.60, 0.78, 0.86, 0.90, 0.911};
    assert_true(fabs(bd(ra2, qa2, 6, rt2, qt2, 5, CWBA_BD_CUBIC) - -35.207738474376) < 1e-8);
    assert_true(fabs(bd(ra2, qa2, 6, rt2, qt2, 5, CWBA_BD_PCHIP) - -43.495326611147) < 1e-6);
    /* point order does not matter */
    const double rp[] = {700, 90, 1500, 380, 170}, qp[] = {36.2, 27.5, 38.0, 34.1, 30.8};
    assert_true(bd(ra, qa, 5, rp, qp, 5, CWBA_BD_CUBIC) == bd(ra, qa, 5, rt, qt, 5, CWBA_BD_CUBIC));
    /* swapping anchor and test inverts the rate ratio: (1+a)(1+b) = 1 */
    for (int f = 0; f < 2; f++) {
        double a = bd(ra, qa, 5, rt, qt, 5, (cwba_bd_fit)f) / 100,
               b = bd(rt, qt, 5, ra, qa, 5, (cwba_bd_fit)f) / 100;
        assert_true(fabs((1 + a) * (1 + b) - 1) < 1e-12);
    }
}

static void expect_arg(const double *ra, const double *qa, int na, const double *rt,
                       const double *qt, int nt, const char *needle)
{
    cwba_error err;
    double p = 123;
    for (int f = 0; f < 2; f++) {
        cwba_error_clear(&err);
        assert_int_equal(cwba_bd_rate(ra, qa, na, rt, qt, nt, (cwba_bd_fit)f, &p, &err), CWBA_E_ARG);
        if (!strstr(err.msg, needle)) print_error("message '%s' lacks '%s'\n", err.msg, needle);
        assert_non_null(strstr(err.msg, needle));
        assert_null(strchr(err.msg, '\n'));
        assert_true(p == 123);
    }
}

static void test_validation(void **state)
{
    (void)state;
    const double r[] = {100, 200, 400, 800, 1600}, q[] = {30, 33, 35, 37, 38};
    expect_arg(r, q, 3, r, q, 5, "3 points, BD-rate needs 4");
    expect_arg(r, q, 5, r, q, 2, "test curve: 2 points");
    const double qbad[] = {30, 33, 32, 37, 38}; /* quality falls while rate rises */
    expect_arg(r, q, 5, r, qbad, 5, "test curve is not monotone");
    const double rdup[] = {100, 200, 200, 800, 1600};
    expect_arg(rdup, q, 5, r, q, 5, "anchor curve is not monotone");
    const double qfar[] = {40, 41, 42, 43, 44};
    expect_arg(r, q, 5, r, qfar, 5, "no overlap");
    const double rneg[] = {100, 0, 400, 800, 1600};
    expect_arg(r, q, 5, rneg, q, 5, "positive finite rate");
    const double qnan[] = {30, NAN, 35, 37, 38};
    expect_arg(r, qnan, 5, r, q, 5, "no finite quality");
    cwba_bd_fit f;
    cwba_error err;
    assert_int_equal(cwba_bd_fit_parse("pchip", &f, &err), CWBA_OK);
    assert_int_equal(f, CWBA_BD_PCHIP);
    assert_int_equal(cwba_bd_fit_parse("akima", &f, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "cubic, pchip"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scaled_curve),
        cmocka_unit_test(test_numpy_reference),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
