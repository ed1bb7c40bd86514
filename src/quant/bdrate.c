/* Bjøntegaard delta rate (see cwba/rd.h): the classic least-squares cubic
 * and the piecewise-cubic (pchip) fits of ln(rate) as a function of
 * quality, each integrated exactly over the overlapping quality interval. */
#include "cwba/rd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *cwba_bd_fit_name(cwba_bd_fit f) { return f == CWBA_BD_PCHIP ? "pchip" : "cubic"; }

cwba_status cwba_bd_fit_parse(const char *name, cwba_bd_fit *out, cwba_error *err)
{
    if (name && !strcmp(name, "cubic")) {
        *out = CWBA_BD_CUBIC;
        return CWBA_OK;
    }
    if (name && !strcmp(name, "pchip")) {
        *out = CWBA_BD_PCHIP;
        return CWBA_OK;
    }
    return cwba_fail(err, CWBA_E_ARG, "unknown BD-rate fit '%s' (cubic, pchip)",
                     name ? name : "(null)");
}

/* One curve as (quality, ln rate), sorted by quality ascending. */
typedef struct curve {
    int n;
    double q[CWBA_BD_MAX_POINTS], y[CWBA_BD_MAX_POINTS];
} curve;

static cwba_status load(curve *c, const char *which, const double *rate, const double *qual,
                        int n, cwba_error *err)
{
    if (n < CWBA_BD_MIN_POINTS || n > CWBA_BD_MAX_POINTS)
        return cwba_fail(err, CWBA_E_ARG, "%s curve: %d points, BD-rate needs %d..%d", which, n,
                         CWBA_BD_MIN_POINTS, CWBA_BD_MAX_POINTS);
    int idx[CWBA_BD_MAX_POINTS];
    for (int i = 0; i < n; i++) {
        if (!isfinite(rate[i]) || !(rate[i] > 0) || !isfinite(qual[i]))
            return cwba_fail(err, CWBA_E_ARG, "%s curve: point %d (rate %g, quality %g) %s", which,
                             i + 1, rate[i], qual[i],
                             isfinite(qual[i]) ? "needs a positive finite rate" : "has no finite quality");
        idx[i] = i;
    }
    /* sort by rate (insertion sort: at most a few hundred points) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && rate[idx[j]] < rate[idx[j - 1]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (int i = 1; i < n; i++)
        if (!(rate[idx[i]] > rate[idx[i - 1]]) || !(qual[idx[i]] > qual[idx[i - 1]]))
            return cwba_fail(err, CWBA_E_ARG,
                             "%s curve is not monotone: point %d (rate %g, quality %g) and point "
                             "%d (rate %g, quality %g): quality must rise strictly with rate",
                             which, idx[i - 1] + 1, rate[idx[i - 1]], qual[idx[i - 1]], idx[i] + 1,
                             rate[idx[i]], qual[idx[i]]);
    c->n = n;
    for (int i = 0; i < n; i++) {
        c->q[i] = qual[idx[i]];
        c->y[i] = log(rate[idx[i]]);
    }
    return CWBA_OK;
}

/* ----------------------------------------------------------- classic cubic */

/* Least-squares cubic y ~ p(t), t = (q - mid) / half (so that t is in
 * [-1, 1] and the system is well conditioned), by Householder QR of the
 * n x 4 Vandermonde matrix. p[k] is the coefficient of t^k. */
static int fit_cubic(const curve *c, double mid, double half, double p[4])
{
    int n = c->n;
    double A[CWBA_BD_MAX_POINTS][4], b[CWBA_BD_MAX_POINTS];
    for (int i = 0; i < n; i++) {
        double t = (c->q[i] - mid) / half;
        A[i][0] = 1;
        A[i][1] = t;
        A[i][2] = t * t;
        A[i][3] = t * t * t;
        b[i] = c->y[i];
    }
    for (int k = 0; k < 4; k++) {
        double norm = 0;
        for (int i = k; i < n; i++) norm += A[i][k] * A[i][k];
        norm = sqrt(norm);
        if (norm == 0) return 0;
        double alpha = A[k][k] > 0 ? -norm : norm;
        double v[CWBA_BD_MAX_POINTS];
        for (int i = k; i < n; i++) v[i] = A[i][k];
        v[k] -= alpha;
        double vv = 0;
        for (int i = k; i < n; i++) vv += v[i] * v[i];
        if (vv == 0) continue;
        for (int j = k; j < 4; j++) {
            double s = 0;
            for (int i = k; i < n; i++) s += v[i] * A[i][j];
            s = 2 * s / vv;
            for (int i = k; i < n; i++) A[i][j] -= s * v[i];
        }
        double s = 0;
        for (int i = k; i < n; i++) s += v[i] * b[i];
        s = 2 * s / vv;
        for (int i = k; i < n; i++) b[i] -= s * v[i];
    }
    for (int k = 3; k >= 0; k--) {
        double s = b[k];
        for (int j = k + 1; j < 4; j++) s -= A[k][j] * p[j];
        if (fabs(A[k][k]) < 1e-12) return 0; /* fewer than 4 distinct qualities */
        p[k] = s / A[k][k];
    }
    return 1;
}

static double poly_integral(const double p[4], double t0, double t1)
{
    double F1 = t1 * (p[0] + t1 * (p[1] / 2 + t1 * (p[2] / 3 + t1 * p[3] / 4)));
    double F0 = t0 * (p[0] + t0 * (p[1] / 2 + t0 * (p[2] / 3 + t0 * p[3] / 4)));
    return F1 - F0;
}

static int integral_cubic(const curve *c, double lo, double hi, double *out)
{
    double mid = 0.5 * (c->q[0] + c->q[c->n - 1]), half = 0.5 * (c->q[c->n - 1] - c->q[0]);
    double p[4];
    if (!fit_cubic(c, mid, half, p)) return 0;
    *out = half * poly_integral(p, (lo - mid) / half, (hi - mid) / half);
    return 1;
}

/* ------------------------------------------------------------------ pchip */

static double sgn(double v) { return (v > 0) - (v < 0); }

/* End slope (the three-point formula, kept shape-preserving). */
static double pchip_end(double h0, double h1, double d0, double d1)
{
    double d = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
    if (sgn(d) != sgn(d0)) return 0;
    if (sgn(d0) != sgn(d1) && fabs(d) > 3 * fabs(d0)) return 3 * d0;
    return d;
}

static double integral_pchip(const curve *c, double lo, double hi)
{
    int n = c->n;
    double h[CWBA_BD_MAX_POINTS], del[CWBA_BD_MAX_POINTS], d[CWBA_BD_MAX_POINTS];
    for (int k = 0; k < n - 1; k++) {
        h[k] = c->q[k + 1] - c->q[k];
        del[k] = (c->y[k + 1] - c->y[k]) / h[k];
    }
    for (int k = 1; k < n - 1; k++) {
        if (sgn(del[k - 1]) * sgn(del[k]) <= 0) {
            d[k] = 0;
        } else {
            double w1 = 2 * h[k] + h[k - 1], w2 = h[k] + 2 * h[k - 1];
            d[k] = (w1 + w2) / (w1 / del[k - 1] + w2 / del[k]);
        }
    }
    d[0] = pchip_end(h[0], h[1], del[0], del[1]);
    d[n - 1] = pchip_end(h[n - 2], h[n - 3], del[n - 2], del[n - 3]);
    double total = 0;
    for (int k = 0; k < n - 1; k++) {
        double a = c->q[k] > lo ? c->q[k] : lo, b = c->q[k + 1] < hi ? c->q[k + 1] : hi;
        if (!(b > a)) continue;
        /* y = y_k + d_k s + c2 s^2 + c3 s^3 with s = q - q_k */
        double c2 = (3 * del[k] - 2 * d[k] - d[k + 1]) / h[k];
        double c3 = (d[k] + d[k + 1] - 2 * del[k]) / (h[k] * h[k]);
        double s0 = a - c->q[k], s1 = b - c->q[k];
#define PCHIP_F(s) ((s) * (c->y[k] + (s) * (d[k] / 2 + (s) * (c2 / 3 + (s) * c3 / 4))))
        total += PCHIP_F(s1) - PCHIP_F(s0);
#undef PCHIP_F
    }
    return total;
}

cwba_status cwba_bd_rate(const double *rate_a, const double *qual_a, int na,
                         const double *rate_t, const double *qual_t, int nt, cwba_bd_fit fit,
                         double *percent, cwba_error *err)
{
    curve *ca = malloc(sizeof *ca), *ct = malloc(sizeof *ct);
    cwba_status st = CWBA_OK;
    if (!ca || !ct) {
        st = cwba_fail(err, CWBA_E_NOMEM, "BD-rate: out of memory");
        goto done;
    }
    if ((st = load(ca, "anchor", rate_a, qual_a, na, err)) ||
        (st = load(ct, "test", rate_t, qual_t, nt, err)))
        goto done;
    double lo = fmax(ca->q[0], ct->q[0]), hi = fmin(ca->q[ca->n - 1], ct->q[ct->n - 1]);
    if (!(hi > lo)) {
        st = cwba_fail(err, CWBA_E_ARG,
                       "BD-rate: no overlap between the quality ranges [%g, %g] (anchor) and "
                       "[%g, %g] (test)",
                       ca->q[0], ca->q[ca->n - 1], ct->q[0], ct->q[ct->n - 1]);
        goto done;
    }
    double ia, it;
    if (fit == CWBA_BD_PCHIP) {
        ia = integral_pchip(ca, lo, hi);
        it = integral_pchip(ct, lo, hi);
    } else if (!integral_cubic(ca, lo, hi, &ia) || !integral_cubic(ct, lo, hi, &it)) {
        st = cwba_fail(err, CWBA_E_INTERNAL, "BD-rate: the cubic fit is singular");
        goto done;
    }
    *percent = (exp((it - ia) / (hi - lo)) - 1) * 100;
done:
    free(ca);
    free(ct);
    return st;
}
