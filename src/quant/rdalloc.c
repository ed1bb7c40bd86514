/* Rate-distortion allocation (docs/algorithm.md, "Rate-distortion
 * allocation"): per image, each channel c takes n_c = 2^k_c - 1 intervals,
 * k_c in 0..kmax (k_c = 0 drops the channel), chosen to minimise
 *     sum_c D_c(k_c) + lambda * sum_c R_c(k_c) / (C*HW),
 * D_c(k) the probe error of channel c at n = 2^k - 1 (output MSE with only
 * that channel quantized; the greedy's own measure) and R_c(k) the bits its
 * codes cost under a context model shaped like the bitstream's adaptive
 * payload coder. The objective separates over channels, so the minimum is
 * exact: one argmin per channel. Only powers of two minus one are offered
 * because the bitstream codes such an n_c as its exponent (n coding 3). */
#include "quant/quant_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NB_T 26 /* neighbourhood classes, as the payload coder's */

struct cwba_rd_ctx {
    int C, HW, H, W, kmax;
    cwba_qparams qp;
    const float *x;
    double *D;     /* (C, kmax + 1) probe errors */
    double *R;     /* (C, kmax + 1) model bits */
    float *xq;     /* (kmax, C, HW) quantized feature at n = 2^k - 1 (k = 1..kmax) */
    uint32_t *q;   /* (kmax, C, HW) its codes */
};

static int bitlen(uint32_t v)
{
    int b = 0;
    while (v) b++, v >>= 1;
    return b;
}

/* The payload coder's neighbourhood class of element (y, x) of one channel. */
static int nb_class(const uint32_t *q, int W, int y, int x)
{
    if (y == 0 && x == 0) return 0;
    uint32_t m = y == 0 ? q[x - 1] : x == 0 ? q[(y - 1) * W] : (q[y * W + x - 1] + q[(y - 1) * W + x] + 1) >> 1;
    return 1 + bitlen(m);
}

void cwba_rd_ctx_free(cwba_rd_ctx *rc)
{
    if (!rc) return;
    free(rc->D);
    free(rc->R);
    free(rc->xq);
    free(rc->q);
    free(rc);
}

/* R_c(k) for every channel at one k: the codes' cost under the
 * image's own conditional code frequencies p(q | class), counted over all
 * channels at this k (the payload coder shares its contexts among channels of
 * the same n and adapts to them), with add-half smoothing. */
static int rate_model(cwba_rd_ctx *rc, int k, const uint32_t *codes)
{
    const int C = rc->C, H = rc->H, W = rc->W;
    const uint32_t M = 1u << k; /* alphabet 0..2^k - 1 */
    double *h = calloc((size_t)NB_T * M, sizeof *h), *tot = calloc(NB_T, sizeof *tot);
    if (!h || !tot) {
        free(h);
        free(tot);
        return 0;
    }
    for (int c = 0; c < C; c++) {
        const uint32_t *q = codes + (size_t)c * rc->HW;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int t = nb_class(q, W, y, x);
                h[(size_t)t * M + q[y * W + x]] += 1.0;
                tot[t] += 1.0;
            }
    }
    for (int c = 0; c < C; c++) {
        const uint32_t *q = codes + (size_t)c * rc->HW;
        double bits = 0.0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int t = nb_class(q, W, y, x);
                bits -= log2((h[(size_t)t * M + q[y * W + x]] + 0.5) / (tot[t] + 0.5 * M));
            }
        rc->R[(size_t)c * (rc->kmax + 1) + k] = bits;
    }
    free(h);
    free(tot);
    return 1;
}

cwba_status cwba_rd_ctx_create(cwba_probe_cache *pc, const cwba_backend *be, cwba_quant q,
                               const float *x, int kmax, cwba_rd_ctx **out,
                               cwba_alloc_stats *stats, cwba_error *err)
{
    if (!out) return cwba_fail(err, CWBA_E_ARG, "rd allocation: out is NULL");
    *out = NULL;
    if (!pc || !be || !x) return cwba_fail(err, CWBA_E_ARG, "rd allocation: missing argument");
    if (kmax < 1 || kmax > CWBA_RD_KMAX)
        return cwba_fail(err, CWBA_E_ARG, "rd allocation: kmax %d out of range 1..%d", kmax,
                         CWBA_RD_KMAX);
    if (!cwba__probe_cache_matches(pc, be, q, x))
        return cwba_fail(err, CWBA_E_ARG, "rd allocation: the probe cache is for another feature");
    cwba_rd_ctx *rc = calloc(1, sizeof *rc);
    if (!rc) return cwba_fail(err, CWBA_E_NOMEM, "rd allocation: out of memory");
    rc->C = be->C;
    rc->H = be->H;
    rc->W = be->W;
    rc->HW = be->H * be->W;
    rc->kmax = kmax;
    rc->x = x;
    const size_t feat = (size_t)rc->C * rc->HW, K1 = (size_t)kmax + 1;
    cwba_status st = cwba__qparams_from_feature(q, x, feat, &rc->qp, err);
    if (st) {
        cwba_rd_ctx_free(rc);
        return st;
    }
    rc->D = malloc((size_t)rc->C * K1 * sizeof *rc->D);
    rc->R = calloc((size_t)rc->C * K1, sizeof *rc->R);
    rc->xq = malloc(feat * (size_t)kmax * sizeof *rc->xq);
    rc->q = malloc(feat * (size_t)kmax * sizeof *rc->q);
    int *pcs = malloc((size_t)rc->C * K1 * sizeof *pcs), *pns = malloc((size_t)rc->C * K1 * sizeof *pns);
    float *pe = malloc((size_t)rc->C * K1 * sizeof *pe), *scratch = malloc((size_t)rc->HW * sizeof *scratch);
    if (!rc->D || !rc->R || !rc->xq || !rc->q || !pcs || !pns || !pe || !scratch) {
        st = cwba_fail(err, CWBA_E_NOMEM, "rd allocation: out of memory");
        goto out;
    }
    for (int k = 1; k <= kmax && !st; k++) {
        float *xk = rc->xq + feat * (size_t)(k - 1);
        uint32_t *qk = rc->q + feat * (size_t)(k - 1);
        for (int c = 0; c < rc->C; c++) {
            size_t off = (size_t)c * rc->HW;
            cwba__quant_channel(&rc->qp, x + off, rc->HW, (1 << k) - 1, xk + off, qk + off, scratch,
                                NULL);
        }
        if (!rate_model(rc, k, qk)) st = cwba_fail(err, CWBA_E_NOMEM, "rd allocation: out of memory");
    }
    if (st) goto out;
    for (int c = 0; c < rc->C; c++)
        for (int k = 0; k <= kmax; k++) {
            pcs[(size_t)c * K1 + k] = c;
            pns[(size_t)c * K1 + k] = k == 0 ? 0 : (1 << k) - 1;
        }
    st = cwba__probe_cache_errors(pc, (int)((size_t)rc->C * K1), pcs, pns, pe, stats, err);
    if (st) goto out;
    for (size_t i = 0; i < (size_t)rc->C * K1; i++) rc->D[i] = pe[i];
out:
    free(pcs);
    free(pns);
    free(pe);
    free(scratch);
    if (st) {
        cwba_rd_ctx_free(rc);
        return st;
    }
    *out = rc;
    return CWBA_OK;
}

cwba_status cwba_rd_ctx_alloc(const cwba_rd_ctx *rc, double lambda, int *n_out, float *xhat,
                              uint32_t *codes, double *model_mse, double *model_bits,
                              cwba_error *err)
{
    if (!rc) return cwba_fail(err, CWBA_E_ARG, "rd allocation: context is NULL");
    if (!(lambda >= 0.0) || !isfinite(lambda))
        return cwba_fail(err, CWBA_E_ARG, "rd allocation: lambda %g must be finite and >= 0", lambda);
    const size_t K1 = (size_t)rc->kmax + 1, feat = (size_t)rc->C * rc->HW;
    const double w = lambda / (double)feat; /* lambda is MSE per bit per element */
    double dsum = 0.0, rsum = 0.0;
    for (int c = 0; c < rc->C; c++) {
        const double *D = rc->D + (size_t)c * K1, *R = rc->R + (size_t)c * K1;
        int best = 0;
        double bj = D[0] + w * R[0];
        for (int k = 1; k <= rc->kmax; k++) {
            double j = D[k] + w * R[k];
            if (j < bj) bj = j, best = k; /* ties keep the fewer intervals */
        }
        dsum += D[best];
        rsum += R[best];
        size_t off = (size_t)c * rc->HW;
        if (n_out) n_out[c] = best == 0 ? 0 : (1 << best) - 1;
        if (best == 0) {
            if (xhat || codes)
                cwba__drop_channel(&rc->qp, rc->x + off, rc->HW, xhat ? xhat + off : NULL,
                                   codes ? codes + off : NULL);
        } else {
            size_t src = feat * (size_t)(best - 1) + off;
            if (xhat) memcpy(xhat + off, rc->xq + src, (size_t)rc->HW * sizeof *xhat);
            if (codes) memcpy(codes + off, rc->q + src, (size_t)rc->HW * sizeof *codes);
        }
    }
    if (model_mse) *model_mse = dsum;
    if (model_bits) *model_bits = rsum;
    return CWBA_OK;
}
