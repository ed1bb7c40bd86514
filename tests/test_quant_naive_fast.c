/* The fast allocation (probe cache, speculation, batches) against the
 * original's method (all C probes at every step) on random small problems
 * with a nonlinear back end: identical allocations, and pass counts within
 * the documented bounds. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/quant.h"
#include "quant/quant_internal.h"

/* A 2-layer ReLU MLP: logits = W2 relu(W1 v + b1) + b2, v = feature (C,H,W). */
typedef struct mlp {
    int D, Hd, K;
    float *w1; /* (Hd, D) */
    float *b1; /* (Hd) */
    float *w2; /* (K, Hd) */
    float *b2; /* (K) */
    long calls;
} mlp;

static uint32_t rng;
static float urand(void) /* [-1, 1) */
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

static cwba_status mlp_run(void *ctx, const float *feat, int batch, float *logits, cwba_error *err)
{
    mlp *m = ctx;
    m->calls++;
    float h[64];
    if (m->Hd > 64) return cwba_fail(err, CWBA_E_INTERNAL, "mlp too wide");
    for (int b = 0; b < batch; b++) {
        const float *v = feat + (size_t)b * m->D;
        for (int j = 0; j < m->Hd; j++) {
            float s = m->b1[j];
            for (int i = 0; i < m->D; i++) s += m->w1[j * m->D + i] * v[i];
            h[j] = s > 0.0f ? s : 0.0f;
        }
        for (int k = 0; k < m->K; k++) {
            float s = m->b2[k];
            for (int j = 0; j < m->Hd; j++) s += m->w2[k * m->Hd + j] * h[j];
            logits[b * m->K + k] = s;
        }
    }
    return CWBA_OK;
}

static void mlp_init(mlp *m, int D, int K)
{
    m->D = D;
    m->Hd = 12;
    m->K = K;
    m->calls = 0;
    m->w1 = malloc((size_t)m->Hd * D * sizeof(float));
    m->b1 = malloc((size_t)m->Hd * sizeof(float));
    m->w2 = malloc((size_t)K * m->Hd * sizeof(float));
    m->b2 = malloc((size_t)K * sizeof(float));
    assert_true(m->w1 && m->b1 && m->w2 && m->b2);
    float s1 = 1.0f / sqrtf((float)D);
    for (int i = 0; i < m->Hd * D; i++) m->w1[i] = urand() * s1;
    for (int i = 0; i < m->Hd; i++) m->b1[i] = urand() * 0.1f;
    for (int i = 0; i < K * m->Hd; i++) m->w2[i] = urand() * 0.5f;
    for (int i = 0; i < K; i++) m->b2[i] = urand();
}

static void mlp_free(mlp *m)
{
    free(m->w1);
    free(m->b1);
    free(m->w2);
    free(m->b2);
}

static void random_feature(float *x, int count, int with_negative)
{
    for (int i = 0; i < count; i++) {
        float v = urand() * 2.0f + urand();
        x[i] = (!with_negative && v < 0.0f) ? 0.0f : v; /* ReLU-like or signed */
    }
}

/* The evaluation's online steps done the original's way: every step
 * quantizes each channel alone at its n and runs the back end on it. */
static void naive_steps(const cwba_backend *be, cwba_quant q, const float *x, const float *y0,
                        int *n, long steps)
{
    const int C = be->C, HW = be->H * be->W, D = C * HW;
    float *xq = malloc((size_t)D * sizeof *xq), *xp = malloc((size_t)D * sizeof *xp);
    float *y = malloc((size_t)be->K * sizeof *y), *e = malloc((size_t)C * sizeof *e);
    assert_true(xq && xp && y && e);
    cwba_error err;
    for (long s = 0; s < steps; s++) {
        assert_int_equal(cwba_quantize_feature(q, x, C, HW, n, xq, NULL, &err), CWBA_OK);
        for (int c = 0; c < C; c++) {
            memcpy(xp, x, (size_t)D * sizeof *xp);
            memcpy(xp + c * HW, xq + c * HW, (size_t)HW * sizeof *xp);
            assert_int_equal(be->run(be->ctx, xp, 1, y, &err), CWBA_OK);
            e[c] = cwba__probe_error(y, y0, be->K);
        }
        int best = 0;
        for (int c = 1; c < C; c++)
            if (e[c] > e[best]) best = c;
        n[best]++;
    }
    free(xq);
    free(xp);
    free(y);
    free(e);
}

typedef struct config {
    int C, H, W, K, max_batch;
    cwba_quant q;
    uint32_t seed;
} config;

static void run_config(const config *cf)
{
    rng = cf->seed;
    const int C = cf->C, HW = cf->H * cf->W, D = C * HW;
    mlp m;
    mlp_init(&m, D, cf->K);
    cwba_backend be = {C, cf->H, cf->W, cf->K, cf->max_batch, mlp_run, &m};
    const int nimg = 3;
    float *x = malloc((size_t)(nimg + 1) * D * sizeof *x);
    int *rows = malloc((size_t)6 * C * sizeof *rows), *rows_n = malloc((size_t)6 * C * sizeof *rows_n);
    int *tab[6];
    for (int b = 0; b < 6; b++) tab[b] = malloc((size_t)nimg * C * sizeof(int));
    assert_true(x && rows && rows_n);
    for (int i = 0; i <= nimg; i++) random_feature(x + (size_t)i * D, D, cf->q == CWBA_QUANT_LOG);
    cwba_error err;
    uint64_t waste_max = 0;
    for (int i = 0; i < nimg; i++) {
        cwba_alloc_stats sf = {0}, sn = {0};
        long calls0 = m.calls;
        assert_int_equal(cwba_calibrate_image(&be, cf->q, x + (size_t)i * D, NULL, rows, &sf, &err),
                         CWBA_OK);
        long fast_calls = m.calls - calls0;
        assert_int_equal(cwba_calibrate_image_naive(&be, cf->q, x + (size_t)i * D, NULL, rows_n,
                                                    &sn, &err),
                         CWBA_OK);
        if (memcmp(rows, rows_n, (size_t)6 * C * sizeof *rows) != 0)
            fail_msg("C=%d HW=%d K=%d batch=%d %s seed %u image %d: fast and naive rows differ",
                     C, HW, cf->K, cf->max_batch, cwba_quant_name(cf->q), cf->seed, i);
        const uint64_t steps = 126u * (uint64_t)C;
        assert_int_equal(sf.steps, steps);
        assert_int_equal(sn.steps, steps);
        /* Naive: C probes at every step, plus the pass for y0. */
        assert_int_equal(sn.probes, (uint64_t)C * steps);
        assert_int_equal(sn.passes, (uint64_t)C * steps + 1);
        /* Fast: every value used is computed once (C initial + one per step
         * but the last), plus at most CWBA_SPEC_MAX-1 unused per channel. */
        const uint64_t used = (uint64_t)C + steps - 1;
        assert_true(sf.probes >= used);
        assert_true(sf.probes <= used + (uint64_t)C * (CWBA_SPEC_MAX - 1));
        assert_int_equal(sf.passes, sf.probes + 1);
        if (sf.probes - used > waste_max) waste_max = sf.probes - used;
        /* Batch-friendly: far fewer calls than probes when batches allow. */
        if (cf->max_batch >= CWBA_SPEC_MAX) assert_true((uint64_t)fast_calls * 4 < sf.probes);
        for (int b = 0; b < 6; b++) memcpy(tab[b] + (size_t)i * C, rows + (size_t)b * C, (size_t)C * sizeof(int));
    }
    /* Evaluation of a fourth image: shared cache, no cache, and the naive
     * online steps all give the same allocation and mse. */
    const float *xe = x + (size_t)nimg * D;
    float *y0 = malloc((size_t)cf->K * sizeof *y0);
    assert_int_equal(be.run(be.ctx, xe, 1, y0, &err), CWBA_OK);
    cwba_probe_cache *pc;
    assert_int_equal(cwba_probe_cache_create(&be, cf->q, xe, y0, &pc, &err), CWBA_OK);
    int *n1 = malloc((size_t)C * sizeof(int)), *n2 = malloc((size_t)C * sizeof(int));
    int *n3 = malloc((size_t)C * sizeof(int)), *order = malloc((size_t)C * sizeof(int));
    double *w = malloc((size_t)C * sizeof(double));
    const int reserves[] = {0, 1, 3, 10, 1000};
    for (int bits = 2; bits <= 4; bits++) {
        cwba_table t = {C, nimg, tab[bits - 2]};
        for (int ri = 0; ri < 5; ri++) {
            cwba_eval_params p = {cf->q, bits, reserves[ri], 0.9, 0.1};
            double mse1, mse2;
            cwba_alloc_stats s1 = {0};
            assert_int_equal(cwba_evaluate_image(&be, pc, &t, &p, xe, y0, n1, NULL, &mse1, &s1, &err),
                             CWBA_OK);
            assert_int_equal(cwba_evaluate_image(&be, NULL, &t, &p, xe, NULL, n2, NULL, &mse2, NULL, &err),
                             CWBA_OK);
            /* The reference: the public pieces and the naive online steps. */
            cwba_priority(xe, C, HW, 0.9, 0.1, NULL, order);
            for (int c = 0; c < C; c++) {
                w[c] = 0;
                for (int r = 0; r < nimg; r++) w[c] += t.data[r * C + c];
            }
            long L = cwba_base_allocation(w, C, bits, order, n3);
            long R = reserves[ri] < L ? reserves[ri] : L;
            cwba_topup(n3, C, order, L - R);
            naive_steps(&be, cf->q, xe, y0, n3, R);
            assert_memory_equal(n1, n2, (size_t)C * sizeof(int));
            assert_memory_equal(n1, n3, (size_t)C * sizeof(int));
            assert_true(mse1 == mse2);
            assert_int_equal(s1.steps, (uint64_t)R);
            long sum = 0;
            for (int c = 0; c < C; c++) sum += n1[c];
            assert_int_equal(sum, cwba_budget(bits, C));
        }
    }
    print_message("C=%2d HW=%d K=%d batch=%2d %-7s: identical, worst speculation waste %llu passes\n",
                  C, HW, cf->K, cf->max_batch, cwba_quant_name(cf->q), (unsigned long long)waste_max);
    cwba_probe_cache_free(pc);
    free(n1);
    free(n2);
    free(n3);
    free(order);
    free(w);
    free(y0);
    for (int b = 0; b < 6; b++) free(tab[b]);
    free(x);
    free(rows);
    free(rows_n);
    mlp_free(&m);
}

static void test_naive_vs_fast(void **state)
{
    (void)state;
    const config cfgs[] = {
        {6, 2, 2, 3, 1, CWBA_QUANT_UNIFORM, 1},   {6, 3, 3, 5, 4, CWBA_QUANT_LOG, 2},
        {8, 3, 3, 7, 64, CWBA_QUANT_UNIFORM, 3},  {10, 2, 3, 4, 16, CWBA_QUANT_LOG, 4},
        {12, 3, 3, 3, 7, CWBA_QUANT_UNIFORM, 5},  {16, 2, 2, 6, 32, CWBA_QUANT_UNIFORM, 6},
        {16, 3, 3, 5, 64, CWBA_QUANT_LOG, 7},     {9, 1, 4, 7, 2, CWBA_QUANT_LOG, 8},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) run_config(&cfgs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_naive_vs_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
