/* Conformance with the original release: tests/data/quant/toy_golden.json is
 * a toy problem run through the original's compiled modules (five 8x3x3
 * features, a linear back end with 5 logits, uniform quantization, alpha 0.9,
 * beta 0.1). Calibration of seeds 1-3 must give every table row; evaluation
 * of seeds 4-5 with those tables must give every mse to the printed 5
 * significant digits. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/quant.h"

enum { TC = 8, TH = 3, TW = 3, TK = 5, NSEEDS = 5 };

typedef struct golden {
    json_t *root;
    float feat[NSEEDS][TC * TH * TW]; /* (C, H, W) per seed 1..5 */
} golden;

/* The toy back end: y_i = sum of v[i::5], v = the feature flattened (C,H,W). */
static cwba_status toy_backend(void *ctx, const float *feat, int batch, float *logits,
                               cwba_error *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    for (int b = 0; b < batch; b++) {
        const float *v = feat + (size_t)b * TC * TH * TW;
        for (int i = 0; i < TK; i++) {
            float s = 0.0f;
            for (int j = i; j < TC * TH * TW; j += TK) s += v[j];
            logits[b * TK + i] = s;
        }
    }
    return CWBA_OK;
}

static void load_golden(golden *g)
{
    json_error_t jerr;
    g->root = json_load_file(tu_path("tests/data/quant/toy_golden.json"), 0, &jerr);
    if (!g->root) fail_msg("toy_golden.json: %s (line %d)", jerr.text, jerr.line);
    assert_string_equal(json_string_value(json_object_get(g->root, "quant")), "uniform");
    assert_true(fabs(json_number_value(json_object_get(g->root, "alpha")) - 0.9) < 1e-12);
    assert_true(fabs(json_number_value(json_object_get(g->root, "beta")) - 0.1) < 1e-12);
    json_t *feats = json_object_get(g->root, "feature");
    for (int s = 0; s < NSEEDS; s++) {
        char key[16];
        snprintf(key, sizeof key, "seed%d", s + 1);
        json_t *f = json_object_get(feats, key);
        assert_non_null(f);
        assert_int_equal(json_array_size(f), TC);
        for (int c = 0; c < TC; c++)
            for (int h = 0; h < TH; h++) {
                json_t *row = json_array_get(json_array_get(f, (size_t)c), (size_t)h);
                assert_int_equal(json_array_size(row), TW);
                for (int w = 0; w < TW; w++) {
                    json_t *v = json_array_get(row, (size_t)w);
                    assert_true(json_is_number(v));
                    g->feat[s][(c * TH + h) * TW + w] = (float)json_number_value(v);
                }
            }
    }
}

static void table_from_json(json_t *rows, cwba_table *t)
{
    t->C = TC;
    t->rows = (int)json_array_size(rows);
    t->data = malloc((size_t)t->rows * TC * sizeof(int));
    assert_non_null(t->data);
    for (int r = 0; r < t->rows; r++) {
        json_t *row = json_array_get(rows, (size_t)r);
        assert_int_equal(json_array_size(row), TC);
        for (int c = 0; c < TC; c++)
            t->data[r * TC + c] = (int)json_integer_value(json_array_get(row, (size_t)c));
    }
}

static cwba_backend make_backend(int *calls, int max_batch)
{
    cwba_backend be = {TC, TH, TW, TK, max_batch, toy_backend, calls};
    return be;
}

/* Calibration of seeds 1..3 (fast and naive) reproduces every table row, and
 * the rows written with cwba_table_append read back as the same tables. */
static void test_calibration(void **state)
{
    (void)state;
    golden g;
    load_golden(&g);
    json_t *tables = json_object_get(g.root, "flag0_tables_from_seeds_1_2_3");
    assert_non_null(tables);
    char *dir = tu_tmpdir();
    assert_non_null(dir);
    int batches[] = {1, 7, 64};
    for (int bi = 0; bi < 3; bi++) {
        int calls = 0;
        cwba_backend be = make_backend(&calls, batches[bi]);
        for (int s = 0; s < 3; s++) {
            int rows[6 * TC], rows_naive[6 * TC];
            cwba_alloc_stats st = {0}, stn = {0};
            cwba_error err;
            assert_int_equal(cwba_calibrate_image(&be, CWBA_QUANT_UNIFORM, g.feat[s], NULL, rows,
                                                  &st, &err),
                             CWBA_OK);
            assert_int_equal(cwba_calibrate_image_naive(&be, CWBA_QUANT_UNIFORM, g.feat[s], NULL,
                                                        rows_naive, &stn, &err),
                             CWBA_OK);
            assert_memory_equal(rows, rows_naive, sizeof rows);
            for (int b = 2; b <= 7; b++) {
                char key[4];
                snprintf(key, sizeof key, "%d", b);
                json_t *grow = json_array_get(json_object_get(tables, key), (size_t)s);
                for (int c = 0; c < TC; c++) {
                    int want = (int)json_integer_value(json_array_get(grow, (size_t)c));
                    if (rows[(b - 2) * TC + c] != want)
                        fail_msg("seed %d bits %d channel %d: got %d, original %d", s + 1, b, c,
                                 rows[(b - 2) * TC + c], want);
                }
                if (bi == 0) {
                    char path[4200];
                    snprintf(path, sizeof path, "%s/%d.csv", dir, b);
                    assert_int_equal(cwba_table_append(path, rows + (b - 2) * TC, 1, TC, &err),
                                     CWBA_OK);
                }
            }
            /* 126*C steps; naive: C probes per step + the y0 pass. */
            assert_int_equal(st.steps, 126 * TC);
            assert_int_equal(stn.steps, 126 * TC);
            assert_int_equal(stn.passes, 126 * TC * TC + 1);
            assert_int_equal(stn.probes, 126 * TC * TC);
            assert_true(st.passes <= 1 + TC + 126 * TC + TC * 15);
            print_message("seed %d batch %d: fast %llu passes, naive %llu\n", s + 1, batches[bi],
                          (unsigned long long)st.passes, (unsigned long long)stn.passes);
        }
    }
    for (int b = 2; b <= 7; b++) {
        char path[4200], key[4];
        snprintf(path, sizeof path, "%s/%d.csv", dir, b);
        snprintf(key, sizeof key, "%d", b);
        cwba_table t, want;
        cwba_error err;
        assert_int_equal(cwba_table_read(path, TC, &t, &err), CWBA_OK);
        table_from_json(json_object_get(tables, key), &want);
        assert_int_equal(t.rows, 3);
        assert_memory_equal(t.data, want.data, 3 * TC * sizeof(int));
        cwba_table_free(&t);
        cwba_table_free(&want);
    }
    tu_rmtree(dir);
    free(dir);
    json_decref(g.root);
}

/* Evaluation of seeds 4 and 5 at every (bits, reserve) of the file, with one
 * probe cache per image shared by all of them (and once without a cache). */
static void test_evaluation(void **state)
{
    (void)state;
    golden g;
    load_golden(&g);
    json_t *tables = json_object_get(g.root, "flag0_tables_from_seeds_1_2_3");
    json_t *cases = json_object_get(g.root, "flag1");
    assert_true(json_array_size(cases) == 30);
    int calls = 0;
    cwba_backend be = make_backend(&calls, 16);
    cwba_probe_cache *pc[2];
    cwba_error err;
    for (int i = 0; i < 2; i++)
        assert_int_equal(cwba_probe_cache_create(&be, CWBA_QUANT_UNIFORM, g.feat[3 + i], NULL,
                                                 &pc[i], &err),
                         CWBA_OK);
    for (int use_cache = 1; use_cache >= 0; use_cache--) {
        size_t idx;
        json_t *cs;
        json_array_foreach(cases, idx, cs) {
            int seed = (int)json_integer_value(json_object_get(cs, "seed"));
            int bits = (int)json_integer_value(json_object_get(cs, "bits"));
            int reserve = (int)json_integer_value(json_object_get(cs, "reserve"));
            double want = json_number_value(json_object_get(cs, "mse"));
            json_t *nfin = json_object_get(cs, "n_final_by_reimplementation");
            assert_true(seed == 4 || seed == 5);
            char key[4];
            snprintf(key, sizeof key, "%d", bits);
            cwba_table t;
            table_from_json(json_object_get(tables, key), &t);
            cwba_eval_params p = {CWBA_QUANT_UNIFORM, bits, reserve, 0.9, 0.1};
            int n[TC];
            float xhat[TC * TH * TW];
            double mse = -1.0;
            cwba_alloc_stats st = {0};
            assert_int_equal(cwba_evaluate_image(&be, use_cache ? pc[seed - 4] : NULL, &t, &p,
                                                 g.feat[seed - 1], NULL, n, xhat, &mse, &st, &err),
                             CWBA_OK);
            cwba_table_free(&t);
            long sum = 0;
            for (int c = 0; c < TC; c++) {
                sum += n[c];
                int w = (int)json_integer_value(json_array_get(nfin, (size_t)c));
                if (n[c] != w)
                    fail_msg("seed %d bits %d reserve %d channel %d: n %d, expected %d", seed,
                             bits, reserve, c, n[c], w);
            }
            char buf[64];
            snprintf(buf, sizeof buf, "%.5g", mse);
            if (strtod(buf, NULL) != want)
                fail_msg("seed %d bits %d reserve %d: mse %s, original %.5g", seed, bits, reserve,
                         buf, want);
            assert_int_equal(sum, cwba_budget(bits, TC));
            assert_true(st.steps <= (uint64_t)reserve);
            if (reserve == 0 && !use_cache) assert_int_equal(st.passes, 2); /* y0 + final */
        }
    }
    cwba_probe_cache_free(pc[0]);
    cwba_probe_cache_free(pc[1]);
    json_decref(g.root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_evaluation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
