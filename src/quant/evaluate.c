/* Per-image evaluation with an interval table (SPEC §2.2, the original's
 * --flag 1): base allocation from the table's column means, priority order,
 * top-up, R' online greedy steps, final quantization and output MSE. */
#include "quant/quant_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct prio_item {
    double p;
    int c;
} prio_item;

/* Descending P, ties by ascending channel: the same order as a stable sort. */
static int prio_cmp(const void *a, const void *b)
{
    const prio_item *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->c > y->c) - (x->c < y->c);
}

void cwba_priority(const float *x, int C, int HW, double alpha, double beta, double *P, int *order)
{
    if (C < 1) return;
    double *m = malloc((size_t)C * sizeof *m);
    double *s = malloc((size_t)C * sizeof *s);
    prio_item *it = malloc((size_t)C * sizeof *it);
    if (!m || !s || !it) {
        /* Without memory no ranking can be made: keep channel order and report
         * equal priority, which every caller handles as "no preference". */
        for (int c = 0; c < C; c++) {
            if (P) P[c] = 1.0 / C;
            if (order) order[c] = c;
        }
        free(m);
        free(s);
        free(it);
        return;
    }
    double msum = 0.0, ssum = 0.0;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * (size_t)HW; /* (HW) */
        double acc = 0.0;
        for (int i = 0; i < HW; i++) acc += xc[i];
        double mean = acc / HW;
        double sq = 0.0;
        for (int i = 0; i < HW; i++) {
            double d = xc[i] - mean;
            sq += d * d;
        }
        /* Unbiased std; a single value has no spread (torch would say NaN). */
        s[c] = HW > 1 ? sqrt(sq / (HW - 1)) : 0.0;
        m[c] = mean;
        msum += mean;
        ssum += s[c];
    }
    /* exp(-s_c/S) is normalised, so its scale only matters through S. */
    double wsum = 0.0;
    for (int c = 0; c < C; c++) {
        /* S == 0 (no channel varies): s_c/S := 0, every weight exp(0) = 1. */
        double w = ssum > 0.0 ? exp(-s[c] / ssum) : 1.0;
        s[c] = w;
        wsum += w;
    }
    for (int c = 0; c < C; c++) {
        /* Sum of means 0 (an all-zero feature): the mean term cannot rank the
         * channels, so it contributes the same 1/C to each. */
        double pm = msum != 0.0 ? m[c] / msum : 1.0 / C;
        double p = alpha * pm + beta * (s[c] / wsum);
        if (P) P[c] = p;
        it[c].p = p;
        it[c].c = c;
    }
    qsort(it, (size_t)C, sizeof *it, prio_cmp);
    if (order)
        for (int c = 0; c < C; c++) order[c] = it[c].c;
    free(m);
    free(s);
    free(it);
}

/* 1 if every weight is a whole number below 2^53 and their sum times T fits
 * in 64 bits: then floor(w_c / sum * T) = floor(w_c * T / sum) exactly. */
static int weights_exact(const double *w, int C, long T, uint64_t *total)
{
    uint64_t sum = 0;
    for (int c = 0; c < C; c++) {
        if (!(w[c] >= 0.0 && w[c] < 9007199254740992.0) || floor(w[c]) != w[c]) return 0;
        sum += (uint64_t)w[c];
        if (sum > (UINT64_MAX >> 1)) return 0;
    }
    if (sum == 0 || T <= 0 || sum > UINT64_MAX / (uint64_t)T) return 0;
    *total = sum;
    return 1;
}

long cwba_base_allocation(const double *avg, int C, int bits, const int *order, int *n)
{
    const long T = cwba_budget(bits, C);
    uint64_t isum = 0;
    int exact = weights_exact(avg, C, T, &isum);
    double sum = 0.0;
    for (int c = 0; c < C; c++) sum += avg[c];
    long total = 0;
    for (int c = 0; c < C; c++) {
        /* The share avg_c / sum * T is often a whole number (a column whose
         * mean is 6 in a table whose means sum to 56 at T = 56), and its
         * floor must not depend on rounding: in float32, or in double with
         * another summation order, 6 can come out as 5.9999999 and floor to
         * 5 (the original's results say 6). So whole-number weights (the
         * table's column sums) are divided exactly in integers. */
        double v;
        if (exact)
            v = (double)((uint64_t)avg[c] * (uint64_t)T / isum);
        else
            v = sum > 0.0 ? floor(avg[c] / sum * (double)T) : 0.0;
        long k = v >= 1.0 ? (v < (double)T ? (long)v : T) : 1;
        n[c] = (int)k;
        total += k;
    }
    /* max(1, .) can overshoot T: take one interval at a time from the lowest
     * priority channel that has more than one, walking up the order and
     * wrapping round (the mirror image of the top-up). T >= 3C guarantees a
     * channel with n_c > 1 exists whenever total > T. */
    int idle = 0; /* visits without a decrement; C in a row means all are 1 */
    for (int i = C - 1; total > T && idle < C; i = i > 0 ? i - 1 : C - 1) {
        int c = order[i];
        if (n[c] > 1) {
            n[c]--;
            total--;
            idle = 0;
        } else {
            idle++;
        }
    }
    return T - total;
}

void cwba_topup(int *n, int C, const int *order, long count)
{
    if (C < 1 || count <= 0) return;
    /* Whole rounds first, so a huge count costs O(C). */
    long rounds = count / C, rest = count % C;
    for (int c = 0; c < C; c++) n[c] += (int)rounds;
    for (long i = 0; i < rest; i++) n[order[i]]++;
}

/* ------------------------------------------------- per-image context */

#define EVAL_TABLES 8 /* column sums kept for this many tables */

struct cwba_eval_ctx {
    cwba_backend be;
    cwba_qparams qp;
    int C, HW, K;
    size_t count;
    const float *x;      /* (C, HW) the caller's feature, alive as long as the context */
    const float *y0;     /* (K) or NULL */
    float *y0own;        /* (K) y0 computed here, when neither caller nor cache has it */
    double alpha, beta;
    int *order;          /* (C) priority order, computed once */
    int *n;              /* (C) work allocation */
    float *scratch;      /* (HW) */
    cwba_probe_cache *pc;/* created on first use, unless borrowed */
    int pc_borrowed;
    struct {
        const cwba_table *t;
        double *sum;     /* (C) column sums */
    } tab[EVAL_TABLES];
    int ntab;
};

static cwba_status params_check(const cwba_backend *be, cwba_quant q, double alpha, double beta,
                                cwba_error *err)
{
    if (q != CWBA_QUANT_UNIFORM && q != CWBA_QUANT_LOG)
        return cwba_fail(err, CWBA_E_ARG, "evaluate: quantizer %s has no channel allocation",
                         cwba_quant_name(q));
    if (!isfinite(alpha) || !isfinite(beta))
        return cwba_fail(err, CWBA_E_ARG, "evaluate: alpha and beta must be finite");
    (void)be;
    return CWBA_OK;
}

void cwba_eval_ctx_free(cwba_eval_ctx *ec)
{
    if (!ec) return;
    if (!ec->pc_borrowed) cwba_probe_cache_free(ec->pc);
    for (int i = 0; i < ec->ntab; i++) free(ec->tab[i].sum);
    free(ec->y0own);
    free(ec->order);
    free(ec->n);
    free(ec->scratch);
    free(ec);
}

cwba_status cwba_eval_ctx_create(const cwba_backend *be, cwba_quant q, const float *x,
                                 const float *y0, double alpha, double beta, cwba_eval_ctx **out,
                                 cwba_error *err)
{
    *out = NULL;
    size_t count;
    cwba_status st = cwba__backend_check(be, &count, err);
    if (st != CWBA_OK) return st;
    if (!x) return cwba_fail(err, CWBA_E_ARG, "evaluate: missing feature");
    if ((st = params_check(be, q, alpha, beta, err)) != CWBA_OK) return st;
    cwba_eval_ctx *ec = calloc(1, sizeof *ec);
    if (!ec) return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
    ec->be = *be;
    ec->C = be->C;
    ec->HW = be->H * be->W;
    ec->K = be->K;
    ec->count = count;
    ec->x = x;
    ec->y0 = y0;
    ec->alpha = alpha;
    ec->beta = beta;
    st = cwba__qparams_from_feature(q, x, count, &ec->qp, err);
    if (st != CWBA_OK) {
        cwba_eval_ctx_free(ec);
        return st;
    }
    ec->order = calloc((size_t)ec->C, sizeof *ec->order);
    ec->n = malloc((size_t)ec->C * sizeof *ec->n);
    ec->scratch = malloc((size_t)ec->HW * sizeof *ec->scratch);
    if (!ec->order || !ec->n || !ec->scratch) {
        cwba_eval_ctx_free(ec);
        return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
    }
    cwba_priority(x, ec->C, ec->HW, alpha, beta, NULL, ec->order);
    *out = ec;
    return CWBA_OK;
}

cwba_status cwba_eval_ctx_use_probes(cwba_eval_ctx *ec, cwba_probe_cache *pc, cwba_error *err)
{
    if (pc && !cwba__probe_cache_matches(pc, &ec->be, ec->qp.q, ec->x))
        return cwba_fail(err, CWBA_E_ARG,
                         "evaluate: probe cache was made for another feature, shape or quantizer");
    if (!ec->pc_borrowed) cwba_probe_cache_free(ec->pc);
    ec->pc = pc;
    ec->pc_borrowed = pc != NULL;
    return CWBA_OK;
}

void cwba_eval_ctx_fresh_probes(cwba_eval_ctx *ec)
{
    if (!ec->pc_borrowed) cwba_probe_cache_free(ec->pc);
    ec->pc = NULL;
    ec->pc_borrowed = 0;
}

/* Column sums of t, computed once per table and context. Sums, not means:
 * the same shares (the scale cancels), and whole numbers, so
 * cwba_base_allocation floors them exactly. */
static const double *table_sums(cwba_eval_ctx *ec, const cwba_table *t, double *tmp)
{
    for (int i = 0; i < ec->ntab; i++)
        if (ec->tab[i].t == t) return ec->tab[i].sum;
    double *sum = ec->ntab < EVAL_TABLES ? malloc((size_t)ec->C * sizeof *sum) : NULL;
    if (!sum) sum = tmp; /* not kept: recomputed next time */
    for (int c = 0; c < ec->C; c++) {
        double sc = 0.0;
        for (int r = 0; r < t->rows; r++) sc += t->data[(size_t)r * (size_t)ec->C + (size_t)c];
        sum[c] = sc;
    }
    if (sum != tmp) {
        ec->tab[ec->ntab].t = t;
        ec->tab[ec->ntab].sum = sum;
        ec->ntab++;
    }
    return sum;
}

cwba_status cwba_eval_ctx_run(cwba_eval_ctx *ec, const cwba_table *table, int bits, int reserve,
                              int *n_out, float *xhat, uint32_t *codes, long *steps,
                              cwba_alloc_stats *stats, cwba_error *err)
{
    if (steps) *steps = 0;
    if (!ec || !table) return cwba_fail(err, CWBA_E_ARG, "evaluate: missing context or table");
    if (bits < CWBA_BITS_MIN || bits > CWBA_BITS_MAX)
        return cwba_fail(err, CWBA_E_ARG, "evaluate: bits %d outside %d..%d", bits, CWBA_BITS_MIN,
                         CWBA_BITS_MAX);
    if (reserve < 0) return cwba_fail(err, CWBA_E_ARG, "evaluate: negative reserve %d", reserve);
    const int C = ec->C, HW = ec->HW;
    if (table->C != C || table->rows < 1 || !table->data)
        return cwba_fail(err, CWBA_E_SHAPE,
                         "evaluate: interval table has %d columns and %d rows, need %d columns and "
                         ">= 1 row",
                         table->C, table->rows, C);
    double *tmp = malloc((size_t)C * sizeof *tmp);
    if (!tmp) return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
    int *n = ec->n;
    long L = cwba_base_allocation(table_sums(ec, table, tmp), C, bits, ec->order, n);
    free(tmp);
    long R = reserve < L ? reserve : L;
    cwba_topup(n, C, ec->order, L - R);
    cwba_status st = CWBA_OK;
    if (R > 0) {
        /* The probe cache (and y0 with it) is made only when a step needs it. */
        if (!ec->pc) {
            st = cwba_probe_cache_create(&ec->be, ec->qp.q, ec->x, ec->y0 ? ec->y0 : ec->y0own,
                                         &ec->pc, err);
            if (st != CWBA_OK) return st;
            ec->pc_borrowed = 0;
        }
        st = cwba__greedy_run(ec->pc, n, R, R, stats, err);
        if (st != CWBA_OK) return st;
        if (steps) *steps = R;
    }
    if (xhat || codes) {
        cwba__levels lv;
        if (!cwba__levels_make(&ec->qp, n, C, HW, &lv))
            return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
        float *tmpx = xhat ? NULL : malloc(ec->count * sizeof *tmpx);
        if (!xhat && !tmpx) {
            cwba__levels_free(&lv);
            return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
        }
        float *out = xhat ? xhat : tmpx; /* (C, HW) */
        for (int c = 0; c < C; c++) {
            size_t off = (size_t)c * (size_t)HW;
            cwba__quant_channel(&ec->qp, ec->x + off, HW, n[c], out + off,
                                codes ? codes + off : NULL, ec->scratch,
                                cwba__levels_get(&lv, n[c]));
        }
        cwba__levels_free(&lv);
        free(tmpx);
    }
    if (n_out) memcpy(n_out, n, (size_t)C * sizeof *n);
    return CWBA_OK;
}

cwba_status cwba_eval_ctx_y0(cwba_eval_ctx *ec, const float **y0, cwba_alloc_stats *stats,
                             cwba_error *err)
{
    if (ec->y0) {
        *y0 = ec->y0;
        return CWBA_OK;
    }
    if (ec->pc) return cwba__probe_cache_y0(ec->pc, y0, stats, err);
    if (!ec->y0own) {
        float *y = malloc((size_t)ec->K * sizeof *y);
        if (!y) return cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
        cwba_status st = cwba__backend_run(&ec->be, ec->x, 1, y, stats, err);
        if (st != CWBA_OK) {
            free(y);
            return st;
        }
        ec->y0own = y;
    }
    *y0 = ec->y0own;
    return CWBA_OK;
}

cwba_status cwba_evaluate_image(const cwba_backend *be, cwba_probe_cache *pc,
                                const cwba_table *table, const cwba_eval_params *p, const float *x,
                                const float *y0, int *n_out, float *xhat, double *mse,
                                cwba_alloc_stats *stats, cwba_error *err)
{
    size_t count;
    cwba_status st = cwba__backend_check(be, &count, err);
    if (st != CWBA_OK) return st;
    if (!table || !p || !x)
        return cwba_fail(err, CWBA_E_ARG, "evaluate: missing table, parameters or feature");
    /* The context and its run check the rest (quantizer, weights, probe
     * cache, bits, reserve, table shape). */
    cwba_eval_ctx *ec;
    st = cwba_eval_ctx_create(be, p->quant, x, y0, p->alpha, p->beta, &ec, err);
    if (st != CWBA_OK) return st;
    if (pc && (st = cwba_eval_ctx_use_probes(ec, pc, err)) != CWBA_OK) {
        cwba_eval_ctx_free(ec);
        return st;
    }
    float *xq = xhat || !mse ? NULL : malloc(count * sizeof *xq);
    float *y = mse ? malloc((size_t)be->K * sizeof *y) : NULL;
    if ((mse && !xhat && !xq) || (mse && !y)) {
        st = cwba_fail(err, CWBA_E_NOMEM, "evaluate: out of memory");
        goto done;
    }
    float *out = xhat ? xhat : xq;
    st = cwba_eval_ctx_run(ec, table, p->bits, p->reserve, n_out, out, NULL, NULL, stats, err);
    /* The output error needs y0 and one pass on the quantized feature; a
     * caller that only wants the allocation (mse == NULL) pays for neither. */
    if (st == CWBA_OK && mse) {
        const float *yr;
        st = cwba_eval_ctx_y0(ec, &yr, stats, err);
        if (st == CWBA_OK) st = cwba__backend_run(be, out, 1, y, stats, err);
        if (st == CWBA_OK) *mse = cwba_mse(y, yr, (size_t)be->K);
    }
done:
    free(xq);
    free(y);
    cwba_eval_ctx_free(ec);
    return st;
}
