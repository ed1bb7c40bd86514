/* Probe errors, the greedy allocation step and the calibration of the
 * interval table (SPEC §2.2, §3).
 *
 * The probe error e_c of channel c quantizes only channel c (all others stay
 * exact), so it depends only on (c, n_c). A greedy step changes one n_c, so
 * only one new probe error is needed per step: the greedy is a merge of the
 * per-channel sequences e_c(1), e_c(2), ... The cache below stores every e_c(n)
 * computed for one image; every miss fills a whole back-end call with the
 * values most likely needed next (see probe_get), so the CNN back end runs in
 * full batches.
 * cwba_calibrate_image_naive keeps the original's method (all C probes at
 * every step) as the reference the fast path is tested against. */
#include "quant/quant_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A candidate value for batch filling (see probe_get). */
struct cand {
    float prio; /* how soon e_c(m) is likely needed (see probe_get) */
    int c;
    long m;     /* the value to compute: e_c(m) */
};
typedef struct cand cand;

struct cwba_probe_cache {
    cwba_backend be;
    cwba_qparams qp;
    int C, HW, K;
    size_t count;        /* C*HW */
    float *x;            /* (C, HW) private copy of the feature */
    float *y0;           /* (K) */
    int have_y0;
    int batch;           /* features per back-end call, <= be.max_batch */
    float *feat;         /* (batch, C, HW); every slot holds x between calls */
    float *logits;       /* (batch, K) */
    float *lut;          /* (HW) dequantization table scratch */
    /* open-addressing map (c, n) -> e_c(n); key 0 marks an empty slot */
    uint64_t *keys;
    float *vals;
    size_t cap, used;
    int *spec;           /* (C) window of each channel's next own refill */
    cand *heap;          /* (C) batch-filling candidates */
    long spec_out;       /* speculative values computed and not yet used */
    long spec_budget;    /* bound on spec_out: C * (CWBA_SPEC_MAX - 1) */
    int *work_c, *work_n;/* (batch) pending probes */
    float *work_e;       /* (batch) */
};

/* ------------------------------------------------------------- back end */

cwba_status cwba__backend_check(const cwba_backend *be, size_t *feat_count, cwba_error *err)
{
    if (!be || !be->run)
        return cwba_fail(err, CWBA_E_ARG, "back end: missing callback");
    if (be->C < 1 || be->H < 1 || be->W < 1 || be->K < 1 || be->max_batch < 1)
        return cwba_fail(err, CWBA_E_ARG,
                         "back end: invalid shape C=%d H=%d W=%d K=%d max_batch=%d", be->C, be->H,
                         be->W, be->K, be->max_batch);
    /* n_c can reach T_7 = 127*C, which must fit an int. */
    if (be->C > INT_MAX / 127)
        return cwba_fail(err, CWBA_E_ARG, "back end: %d channels is too many", be->C);
    size_t hw, count, bytes;
    if (!cwba_size_mul((size_t)be->H, (size_t)be->W, &hw) || hw > INT_MAX ||
        !cwba_size_mul(hw, (size_t)be->C, &count) ||
        !cwba_size_mul(count, sizeof(float), &bytes))
        return cwba_fail(err, CWBA_E_NOMEM, "back end: feature %dx%dx%d is too large", be->C,
                         be->H, be->W);
    *feat_count = count;
    return CWBA_OK;
}

cwba_status cwba__backend_run(const cwba_backend *be, const float *feat, int batch, float *logits,
                              cwba_alloc_stats *stats, cwba_error *err)
{
    cwba_status st = be->run(be->ctx, feat, batch, logits, err);
    if (st != CWBA_OK) return st;
    if (stats) stats->passes += (uint64_t)batch;
    size_t total = (size_t)batch * (size_t)be->K;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(logits[i]))
            return cwba_fail(err, CWBA_E_ARG,
                             "back end returned a non-finite logit (batch element %zu, logit %zu)",
                             i / (size_t)be->K, i % (size_t)be->K);
    return CWBA_OK;
}

float cwba__probe_error(const float *y, const float *y0, int K)
{
    double acc = 0.0;
    for (int k = 0; k < K; k++) {
        float d = y[k] - y0[k];
        acc += (double)d * (double)d;
    }
    return (float)(acc / (double)K);
}

/* ------------------------------------------------------------- the cache */

void cwba_probe_cache_free(cwba_probe_cache *pc)
{
    if (!pc) return;
    free(pc->x);
    free(pc->y0);
    free(pc->feat);
    free(pc->logits);
    free(pc->lut);
    free(pc->keys);
    free(pc->vals);
    free(pc->heap);
    free(pc->spec);
    free(pc->work_c);
    free(pc->work_n);
    free(pc->work_e);
    free(pc);
}

cwba_status cwba_probe_cache_create(const cwba_backend *be, cwba_quant q, const float *x,
                                    const float *y0, cwba_probe_cache **out, cwba_error *err)
{
    *out = NULL;
    size_t count;
    cwba_status st = cwba__backend_check(be, &count, err);
    if (st != CWBA_OK) return st;
    if (!x) return cwba_fail(err, CWBA_E_ARG, "probe cache: missing feature");
    cwba_probe_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return cwba_fail(err, CWBA_E_NOMEM, "probe cache: out of memory");
    pc->be = *be;
    pc->C = be->C;
    pc->HW = be->H * be->W;
    pc->K = be->K;
    pc->count = count;
    st = cwba__qparams_from_feature(q, x, count, &pc->qp, err);
    if (st != CWBA_OK) {
        cwba_probe_cache_free(pc);
        return st;
    }
    size_t per = count * sizeof(float) + (size_t)be->K * sizeof(float);
    size_t cap_batch = CWBA_BATCH_BYTES_MAX / per;
    pc->batch = be->max_batch;
    if ((size_t)pc->batch > cap_batch) pc->batch = cap_batch > 0 ? (int)cap_batch : 1;
    pc->cap = 1024;
    pc->x = malloc(count * sizeof(float));
    pc->y0 = malloc((size_t)be->K * sizeof(float));
    pc->feat = malloc((size_t)pc->batch * count * sizeof(float));
    pc->logits = malloc((size_t)pc->batch * (size_t)be->K * sizeof(float));
    pc->lut = malloc((size_t)pc->HW * sizeof(float));
    pc->keys = calloc(pc->cap, sizeof *pc->keys);
    pc->vals = malloc(pc->cap * sizeof *pc->vals);
    pc->heap = malloc((size_t)pc->C * sizeof *pc->heap);
    pc->spec = malloc((size_t)pc->C * sizeof *pc->spec);
    pc->work_c = malloc((size_t)pc->batch * sizeof *pc->work_c);
    pc->work_n = malloc((size_t)pc->batch * sizeof *pc->work_n);
    pc->work_e = malloc((size_t)pc->batch * sizeof *pc->work_e);
    if (!pc->x || !pc->y0 || !pc->feat || !pc->logits || !pc->lut || !pc->keys || !pc->vals ||
        !pc->heap || !pc->spec || !pc->work_c || !pc->work_n || !pc->work_e) {
        cwba_probe_cache_free(pc);
        return cwba_fail(err, CWBA_E_NOMEM, "probe cache: out of memory (C=%d, HW=%d, batch=%d)",
                         be->C, be->H * be->W, be->max_batch);
    }
    memcpy(pc->x, x, count * sizeof(float));
    pc->spec_budget = (long)pc->C * (CWBA_SPEC_MAX - 1);
    for (int c = 0; c < pc->C; c++) pc->spec[c] = 1;
    for (int b = 0; b < pc->batch; b++) memcpy(pc->feat + (size_t)b * count, x, count * sizeof(float));
    if (y0) {
        memcpy(pc->y0, y0, (size_t)be->K * sizeof(float));
        for (int k = 0; k < be->K; k++)
            if (!isfinite(y0[k])) {
                cwba_probe_cache_free(pc);
                return cwba_fail(err, CWBA_E_ARG, "reference logit %d is not finite", k);
            }
        pc->have_y0 = 1;
    }
    *out = pc;
    return CWBA_OK;
}

int cwba__probe_cache_matches(const cwba_probe_cache *pc, const cwba_backend *be, cwba_quant q,
                              const float *x)
{
    return pc->C == be->C && pc->HW == be->H * be->W && pc->K == be->K && pc->qp.q == q &&
           memcmp(pc->x, x, pc->count * sizeof(float)) == 0;
}

cwba_status cwba__probe_cache_y0(cwba_probe_cache *pc, const float **y0, cwba_alloc_stats *stats,
                                 cwba_error *err)
{
    if (!pc->have_y0) {
        /* Slot 0 holds the exact feature between calls. */
        cwba_status st = cwba__backend_run(&pc->be, pc->feat, 1, pc->logits, stats, err);
        if (st != CWBA_OK) return st;
        memcpy(pc->y0, pc->logits, (size_t)pc->K * sizeof(float));
        pc->have_y0 = 1;
    }
    *y0 = pc->y0;
    return CWBA_OK;
}

static size_t slot_of(uint64_t key, size_t cap)
{
    /* splitmix64 finalizer: spreads consecutive n of one channel. */
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return (size_t)key & (cap - 1);
}

static uint64_t key_of(int c, int n)
{
    return ((uint64_t)(uint32_t)(c + 1) << 32) | (uint32_t)n;
}

static int cache_lookup(const cwba_probe_cache *pc, int c, int n, float *e)
{
    uint64_t key = key_of(c, n);
    for (size_t i = slot_of(key, pc->cap);; i = (i + 1) & (pc->cap - 1)) {
        if (pc->keys[i] == key) {
            if (e) *e = pc->vals[i];
            return 1;
        }
        if (pc->keys[i] == 0) return 0;
    }
}

static cwba_status cache_insert(cwba_probe_cache *pc, int c, int n, float e, cwba_error *err)
{
    if (2 * (pc->used + 1) > pc->cap) {
        size_t ncap = pc->cap * 2;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        float *nv = malloc(ncap * sizeof *nv);
        if (!nk || !nv || ncap < pc->cap) {
            free(nk);
            free(nv);
            return cwba_fail(err, CWBA_E_NOMEM, "probe cache: out of memory (%zu entries)", pc->used);
        }
        for (size_t i = 0; i < pc->cap; i++) {
            if (!pc->keys[i]) continue;
            size_t j = slot_of(pc->keys[i], ncap);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = pc->keys[i];
            nv[j] = pc->vals[i];
        }
        free(pc->keys);
        free(pc->vals);
        pc->keys = nk;
        pc->vals = nv;
        pc->cap = ncap;
    }
    uint64_t key = key_of(c, n);
    size_t i = slot_of(key, pc->cap);
    while (pc->keys[i] && pc->keys[i] != key) i = (i + 1) & (pc->cap - 1);
    if (!pc->keys[i]) pc->used++;
    pc->keys[i] = key;
    pc->vals[i] = e;
    return CWBA_OK;
}

/* Computes e for the `count` (<= batch) pairs in work_c/work_n into work_e:
 * one back-end call. Each slot's channel is restored from x afterwards, so the
 * batch buffer never needs a full refill. */
static cwba_status probe_batch(cwba_probe_cache *pc, int count, cwba_alloc_stats *stats,
                               cwba_error *err)
{
    const float *y0;
    cwba_status st = cwba__probe_cache_y0(pc, &y0, stats, err);
    if (st != CWBA_OK) return st;
    const size_t hw = (size_t)pc->HW;
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)pc->work_c[i] * hw;
        float *slot = pc->feat + (size_t)i * pc->count + off;
        if (pc->work_n[i] == 0) /* a dropped channel (rate-distortion allocation) */
            cwba__drop_channel(&pc->qp, pc->x + off, pc->HW, slot, NULL);
        else
            cwba__quant_channel(&pc->qp, pc->x + off, pc->HW, pc->work_n[i], slot, NULL, pc->lut,
                                NULL);
    }
    st = cwba__backend_run(&pc->be, pc->feat, count, pc->logits, stats, err);
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)pc->work_c[i] * hw;
        memcpy(pc->feat + (size_t)i * pc->count + off, pc->x + off, hw * sizeof(float));
    }
    if (st != CWBA_OK) return st;
    for (int i = 0; i < count; i++)
        pc->work_e[i] = cwba__probe_error(pc->logits + (size_t)i * (size_t)pc->K, y0, pc->K);
    if (stats) stats->probes += (uint64_t)count;
    return CWBA_OK;
}

/* Computes and stores the queued pairs (work_c/work_n, `count` of them). */
static cwba_status flush_work(cwba_probe_cache *pc, int count, cwba_alloc_stats *stats,
                              cwba_error *err)
{
    if (count == 0) return CWBA_OK;
    cwba_status st = probe_batch(pc, count, stats, err);
    for (int i = 0; st == CWBA_OK && i < count; i++)
        st = cache_insert(pc, pc->work_c[i], pc->work_n[i], pc->work_e[i], err);
    return st;
}

void cwba__drop_channel(const cwba_qparams *qp, const float *x, int HW, float *out, uint32_t *codes)
{
    for (int i = 0; i < HW; i++) {
        if (out) out[i] = qp->range > 0.0f ? qp->mn : x[i];
        if (codes) codes[i] = 0;
    }
}

cwba_status cwba__probe_cache_errors(cwba_probe_cache *pc, int count, const int *c, const int *n,
                                     float *e, cwba_alloc_stats *stats, cwba_error *err)
{
    int queued = 0;
    cwba_status st = CWBA_OK;
    for (int i = 0; i < count && st == CWBA_OK; i++) {
        if (c[i] < 0 || c[i] >= pc->C || n[i] < 0)
            return cwba_fail(err, CWBA_E_ARG, "probe errors: (channel %d, n %d) out of range", c[i],
                             n[i]);
        if (cache_lookup(pc, c[i], n[i], NULL)) continue;
        int dup = 0; /* the same pair twice in one call */
        for (int j = 0; j < queued && !dup; j++) dup = pc->work_c[j] == c[i] && pc->work_n[j] == n[i];
        if (dup) continue;
        pc->work_c[queued] = c[i];
        pc->work_n[queued] = n[i];
        if (++queued == pc->batch) {
            st = flush_work(pc, queued, stats, err);
            queued = 0;
        }
    }
    if (st == CWBA_OK) st = flush_work(pc, queued, stats, err);
    for (int i = 0; i < count && st == CWBA_OK; i++)
        if (!cache_lookup(pc, c[i], n[i], &e[i]))
            st = cwba_fail(err, CWBA_E_INTERNAL, "probe errors: value missing after computing it");
    return st;
}

/* Batch filling. A miss of e_c(n) costs a back-end call anyway, so the call
 * is filled (up to the batch size) with values the greedy is likely to ask
 * for soon:
 *  - channel c's own next values e_c(n+1), ...: a window that doubles on
 *    each refill of c, up to CWBA_SPEC_MAX (a channel picked once tends to
 *    be picked again, and the further ahead the less surely);
 *  - then the next unknown value of other channels. The greedy asks for
 *    e_k(m) right after picking k at level m-1, and to get there it must have
 *    picked k at every level n_k .. m-1, so the candidate (k, m) gets the
 *    priority min(e_k(n_k), ..., e_k(m-1)) over the known values (errors are
 *    not monotone in n: a channel held back by a low current error must not
 *    be computed ahead on a high later one). Only candidates whose whole
 *    chain is known are taken; the highest priorities win.
 * Predicting deeper values from a model (MSE ~ 1/n^2) was tried and left
 * out: errors through a CNN back end plateau and drop with n, and the
 * predicted values were mostly never used.
 *
 * Bounds that keep the speculation honest (the values themselves never
 * depend on it: e_k(m) is a function of (k, m) only, and the back end is
 * batch-invariant):
 *  - at most C * (CWBA_SPEC_MAX - 1) speculative values are outstanding
 *    (computed, not yet asked for) at any time, so at most that many are
 *    ever left unused per calibration image;
 *  - a call holds at most `limit` values, the number the remaining greedy
 *    steps can still use in total. */

/* Priority order: larger error first, ties to the lower channel. */
static int cand_before(const cand *x, const cand *y)
{
    return x->prio > y->prio || (x->prio == y->prio && x->c < y->c);
}

static void heap_down(cand *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, b = i;
        if (l < n && cand_before(&h[l], &h[b])) b = l;
        if (r < n && cand_before(&h[r], &h[b])) b = r;
        if (b == i) return;
        cand t = h[i];
        h[i] = h[b];
        h[b] = t;
        i = b;
    }
}

/* The first unknown value e_k(m), m > n_k, of channel k and its priority
 * (the minimum of the known e_k(n_k .. m-1)); 0 if m would pass `cap`. */
static int cand_of(const cwba_probe_cache *pc, int k, int nk, float cur, long cap, cand *cd)
{
    float v;
    cd->c = k;
    cd->prio = cur;
    cd->m = (long)nk + 1;
    while (cd->m <= cap && cache_lookup(pc, k, (int)cd->m, &v)) {
        if (v < cd->prio) cd->prio = v;
        cd->m++;
    }
    return cd->m <= cap;
}

/* e_c(n[c]) after the greedy raised n[c] (cur of the other channels holds
 * their current errors), computing it on a miss in one back-end call filled
 * with up to min(batch, limit) - 1 likely next values. `limit` >= 1 is how
 * many values the remaining greedy steps could use. */
static cwba_status probe_get(cwba_probe_cache *pc, const int *n, const float *cur, int c,
                             long limit, float *e, cwba_alloc_stats *stats, cwba_error *err)
{
    if (cache_lookup(pc, c, n[c], e)) {
        if (pc->spec_out > 0) pc->spec_out--;
        return CWBA_OK;
    }
    long budget = limit < pc->batch ? limit : pc->batch;
    if (budget > 1 + pc->spec_budget - pc->spec_out) budget = 1 + pc->spec_budget - pc->spec_out;
    /* Values already computed ahead compete for the same remaining steps. */
    if (budget > limit - pc->spec_out) budget = limit - pc->spec_out > 1 ? limit - pc->spec_out : 1;
    /* Channel c's own window. */
    long k = pc->spec[c] < budget ? pc->spec[c] : budget;
    if (pc->spec[c] < CWBA_SPEC_MAX) pc->spec[c] *= 2;
    int count = 0;
    for (long j = 0; j < k && (long)n[c] + j <= INT_MAX; j++) {
        int nj = n[c] + (int)j;
        if (j > 0 && cache_lookup(pc, c, nj, NULL)) continue;
        pc->work_c[count] = c;
        pc->work_n[count] = nj;
        count++;
    }
    if (count < budget) {
        /* The other channels' next unknown values, best priorities first. */
        cand *h = pc->heap;
        int hn = 0;
        long cap = limit - 1 < (long)INT_MAX ? limit - 1 : INT_MAX;
        for (int q = 0; q < pc->C; q++) {
            long capq = cap < (long)INT_MAX - n[q] ? (long)n[q] + cap : INT_MAX;
            if (q != c && cand_of(pc, q, n[q], cur[q], capq, &h[hn])) hn++;
        }
        for (int i = hn / 2 - 1; i >= 0; i--) heap_down(h, hn, i);
        while (count < budget && hn > 0) {
            pc->work_c[count] = h[0].c;
            pc->work_n[count] = (int)h[0].m;
            count++;
            h[0] = h[--hn];
            heap_down(h, hn, 0);
        }
    }
    pc->spec_out += count - 1;
    cwba_status st = flush_work(pc, count, stats, err);
    if (st != CWBA_OK) return st;
    if (!cache_lookup(pc, c, n[c], e))
        return cwba_fail(err, CWBA_E_INTERNAL, "probe cache lost e_%d(%d)", c, n[c]);
    return CWBA_OK;
}

/* First maximum: ties go to the lowest channel index (SPEC §2.2). */
static int argmax_first(const float *e, int C)
{
    int best = 0;
    for (int c = 1; c < C; c++)
        if (e[c] > e[best]) best = c;
    return best;
}

cwba_status cwba__greedy_run(cwba_probe_cache *pc, int *n, long steps, long horizon,
                             cwba_alloc_stats *stats, cwba_error *err)
{
    if (steps < 0) return cwba_fail(err, CWBA_E_ARG, "greedy: negative step count %ld", steps);
    if (steps == 0) return CWBA_OK;
    if (horizon < steps) horizon = steps;
    const int C = pc->C;
    for (int c = 0; c < C; c++)
        if (n[c] < 1 || (long)n[c] > (long)INT_MAX - steps)
            return cwba_fail(err, CWBA_E_ARG, "greedy: channel %d has %d intervals (need 1..%ld)",
                             c, n[c], (long)INT_MAX - steps);
    float *cur = malloc((size_t)C * sizeof *cur);
    if (!cur) return cwba_fail(err, CWBA_E_NOMEM, "greedy: out of memory");
    cwba_status st = CWBA_OK;
    /* Current errors of every channel: the missing ones in full batches. */
    int count = 0;
    for (int c = 0; c < C && st == CWBA_OK; c++) {
        if (cache_lookup(pc, c, n[c], NULL)) continue;
        pc->work_c[count] = c;
        pc->work_n[count] = n[c];
        if (++count == pc->batch) {
            st = flush_work(pc, count, stats, err);
            count = 0;
        }
    }
    if (st == CWBA_OK) st = flush_work(pc, count, stats, err);
    for (int c = 0; c < C && st == CWBA_OK; c++)
        if (!cache_lookup(pc, c, n[c], &cur[c]))
            st = cwba_fail(err, CWBA_E_INTERNAL, "probe cache lost e_%d(%d)", c, n[c]);
    for (long s = 0; s < steps && st == CWBA_OK; s++) {
        int best = argmax_first(cur, C);
        n[best]++;
        if (stats) stats->steps++;
        /* The new error is needed only if another step follows here; the
         * channel can use at most (horizon - s - 1) further values. */
        if (s + 1 < steps) st = probe_get(pc, n, cur, best, horizon - s - 1, &cur[best], stats, err);
    }
    free(cur);
    return st;
}

cwba_status cwba_greedy_steps(cwba_probe_cache *pc, int *n, long steps, cwba_alloc_stats *stats,
                              cwba_error *err)
{
    if (!pc || !n) return cwba_fail(err, CWBA_E_ARG, "greedy: missing cache or allocation");
    return cwba__greedy_run(pc, n, steps, steps, stats, err);
}

/* ------------------------------------------------------------- calibration */

static cwba_status calib_args(const cwba_backend *be, cwba_quant q, const float *x, int *rows,
                              cwba_error *err)
{
    size_t count;
    cwba_status st = cwba__backend_check(be, &count, err);
    if (st != CWBA_OK) return st;
    if (!x || !rows) return cwba_fail(err, CWBA_E_ARG, "calibrate: missing feature or output rows");
    if (q != CWBA_QUANT_UNIFORM && q != CWBA_QUANT_LOG)
        return cwba_fail(err, CWBA_E_ARG, "calibrate: quantizer %s has no interval table",
                         cwba_quant_name(q));
    return CWBA_OK;
}

cwba_status cwba_calibrate_image(const cwba_backend *be, cwba_quant q, const float *x,
                                 const float *y0, int *rows, cwba_alloc_stats *stats,
                                 cwba_error *err)
{
    cwba_status st = calib_args(be, q, x, rows, err);
    if (st != CWBA_OK) return st;
    cwba_probe_cache *pc;
    st = cwba_probe_cache_create(be, q, x, y0, &pc, err);
    if (st != CWBA_OK) return st;
    const int C = be->C;
    int *n = malloc((size_t)C * sizeof *n);
    if (!n) {
        cwba_probe_cache_free(pc);
        return cwba_fail(err, CWBA_E_NOMEM, "calibrate: out of memory");
    }
    for (int c = 0; c < C; c++) n[c] = 1;
    long sum = C;
    const long total = cwba_budget(CWBA_BITS_MAX, C);
    for (int b = CWBA_BITS_MIN; b <= CWBA_BITS_MAX && st == CWBA_OK; b++) {
        long steps = cwba_budget(b, C) - sum;
        st = cwba__greedy_run(pc, n, steps, total - sum, stats, err);
        sum += steps;
        memcpy(rows + (size_t)(b - CWBA_BITS_MIN) * (size_t)C, n, (size_t)C * sizeof *n);
    }
    free(n);
    cwba_probe_cache_free(pc);
    return st;
}

cwba_status cwba_calibrate_image_naive(const cwba_backend *be, cwba_quant q, const float *x,
                                       const float *y0, int *rows, cwba_alloc_stats *stats,
                                       cwba_error *err)
{
    cwba_status st = calib_args(be, q, x, rows, err);
    if (st != CWBA_OK) return st;
    /* The cache serves only as the batch workspace here: nothing is reused. */
    cwba_probe_cache *pc;
    st = cwba_probe_cache_create(be, q, x, y0, &pc, err);
    if (st != CWBA_OK) return st;
    const int C = be->C;
    int *n = malloc((size_t)C * sizeof *n);
    float *e = malloc((size_t)C * sizeof *e);
    if (!n || !e) {
        free(n);
        free(e);
        cwba_probe_cache_free(pc);
        return cwba_fail(err, CWBA_E_NOMEM, "calibrate: out of memory");
    }
    for (int c = 0; c < C; c++) n[c] = 1;
    long sum = C;
    for (int b = CWBA_BITS_MIN; b <= CWBA_BITS_MAX && st == CWBA_OK; b++) {
        for (; sum < cwba_budget(b, C) && st == CWBA_OK; sum++) {
            for (int c0 = 0; c0 < C && st == CWBA_OK; c0 += pc->batch) {
                int count = C - c0 < pc->batch ? C - c0 : pc->batch;
                for (int i = 0; i < count; i++) {
                    pc->work_c[i] = c0 + i;
                    pc->work_n[i] = n[c0 + i];
                }
                st = probe_batch(pc, count, stats, err);
                if (st == CWBA_OK) memcpy(e + c0, pc->work_e, (size_t)count * sizeof *e);
            }
            if (st != CWBA_OK) break;
            n[argmax_first(e, C)]++;
            if (stats) stats->steps++;
        }
        memcpy(rows + (size_t)(b - CWBA_BITS_MIN) * (size_t)C, n, (size_t)C * sizeof *n);
    }
    free(n);
    free(e);
    cwba_probe_cache_free(pc);
    return st;
}
