/* Calibration and evaluation loops over a dataset (see engine.h). */
#include "engine.h"

#include "cwba/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ------------------------------------------------------------- calibration */

/* Rows already in a table file (0 if it does not exist). */
static int existing_rows(const char *path, int C, cwba_table *t, int *rows)
{
    FILE *f = fopen(path, "rb");
    *rows = 0;
    memset(t, 0, sizeof *t);
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    if (len == 0) return 0;
    cwba_error err;
    cwba_error_clear(&err);
    if (cwba_table_read(path, C, t, &err)) return cli_fail_status(&err);
    *rows = t->rows;
    return 0;
}

static int rewrite_rows(const char *path, const cwba_table *t, int keep)
{
    cwba_error err;
    cwba_error_clear(&err);
    if (remove(path) != 0) {
        cli_error("cannot truncate %s", path);
        return 1;
    }
    if (keep > 0 && cwba_table_append(path, t->data, keep, t->C, &err)) return cli_fail_status(&err);
    return 0;
}

int engine_calibrate(cwba_model *m, int split, const cli_data *cd, cwba_quant q,
                     char paths[6][4096], int overwrite, int quiet)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_backend be;
    cli_backend_ctx bctx;
    cli_backend_init(&be, &bctx, m, split);
    int C = be.C;
    size_t feat = (size_t)be.C * be.H * be.W;
    int S = cwba_model_input_size(m);
    int done = 0;
    if (overwrite) {
        for (int b = 0; b < 6; b++) remove(paths[b]);
    } else {
        int rows[6], mn = 1 << 30, mx = 0;
        cwba_table t[6];
        for (int b = 0; b < 6; b++) {
            if (existing_rows(paths[b], C, &t[b], &rows[b])) {
                for (int j = 0; j < b; j++) cwba_table_free(&t[j]);
                return 1;
            }
            if (rows[b] < mn) mn = rows[b];
            if (rows[b] > mx) mx = rows[b];
        }
        int rc = 0;
        if (mx != mn) /* an interrupted run appended to some files only */
            for (int b = 0; b < 6 && !rc; b++)
                if (rows[b] > mn) rc = rewrite_rows(paths[b], &t[b], mn);
        for (int b = 0; b < 6; b++) cwba_table_free(&t[b]);
        if (rc) return rc;
        done = mn;
        if (done > cd->count) {
            cli_error("%s already holds %d rows, more than the %d images selected; use --overwrite",
                      paths[0], done, cd->count);
            return 2;
        }
        if (done > 0 && !quiet)
            fprintf(stderr, "calibrate: resuming, %d of %d images already in the table\n", done,
                    cd->count);
    }
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S);
    float *x = malloc(sizeof(float) * feat);
    int *rows = malloc(sizeof(int) * 6 * (size_t)C);
    if (!in || !x || !rows) {
        free(in);
        free(x);
        free(rows);
        cli_error("out of memory");
        return 1;
    }
    int rc = 0;
    cli_progress pr;
    cli_progress_start(&pr, "calibrate");
    if (quiet) pr.enabled = 0;
    cwba_alloc_stats stats = {0, 0, 0};
    double t0 = cwba_now();
    for (int i = done; i < cd->count; i++) {
        int skipped = 0;
        if (cli_data_get(cd, i, in, NULL, &skipped, &err)) {
            rc = 1;
            break;
        }
        if (skipped) {
            /* keep one row per selected image so that resuming stays aligned */
            cli_error("calibrate: image %d is unreadable; calibration cannot skip images (%s)",
                      cli_data_index(cd, i), err.msg);
            rc = 1;
            break;
        }
        if (cwba_model_forward_front(m, split, in, 1, x, &err) ||
            cwba_calibrate_image(&be, q, x, NULL, rows, &stats, &err)) {
            rc = cli_fail_status(&err);
            break;
        }
        for (int b = 0; b < 6 && !rc; b++)
            if (cwba_table_append(paths[b], rows + (size_t)b * C, 1, C, &err))
                rc = cli_fail_status(&err);
        if (rc) break;
        cli_progress_update(&pr, i + 1 - done, cd->count - done);
    }
    cli_progress_end(&pr);
    int n = cd->count - done;
    if (!rc && !quiet && n > 0)
        fprintf(stderr,
                "calibrate: %d images, %.2f s/image, %.0f back-end passes/image "
                "(naive recomputation would need %.0f)\n",
                n, (cwba_now() - t0) / n, (double)stats.passes / n,
                (double)C * (126.0 * C + 1.0));
    free(in);
    free(x);
    free(rows);
    return rc;
}

/* ------------------------------------------------------------------ tables */

int engine_load_tables(char paths[6][4096], const long *bits, int nbits, int C,
                       cwba_table tables[6])
{
    cwba_error err;
    cwba_error_clear(&err);
    memset(tables, 0, 6 * sizeof tables[0]);
    for (int i = 0; i < nbits; i++) {
        int b = (int)bits[i] - 2;
        if (cwba_table_read(paths[b], C, &tables[b], &err)) {
            engine_free_tables(tables);
            return cli_fail_status(&err);
        }
    }
    return 0;
}

void engine_free_tables(cwba_table tables[6])
{
    for (int b = 0; b < 6; b++) cwba_table_free(&tables[b]);
}

/* -------------------------------------------------------------- evaluation */

int engine_evaluate(cwba_model *m, int split, const cli_data *cd, const engine_method *methods,
                    int nmethods, const long *bits, int nbits, cwba_table tables[6],
                    double alpha, double beta, double dorefa_clip, int fresh_probes,
                    engine_result *res, engine_summary *sum)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_backend be;
    cli_backend_ctx bctx;
    cli_backend_init(&be, &bctx, m, split);
    int C = be.C, HW = be.H * be.W, K = be.K, S = cwba_model_input_size(m);
    size_t feat = (size_t)C * HW;
    int nslots = nmethods * nbits;
    memset(sum, 0, sizeof *sum);
    sum->C = C;
    sum->conv = cwba_model_conv_algo(m);
    sum->H = be.H;
    sum->W = be.W;
    for (int i = 0; i < nmethods; i++)
        for (int j = 0; j < nbits; j++) {
            engine_result *r = &res[i * nbits + j];
            memset(r, 0, sizeof *r);
            r->method = methods[i];
            r->bits = (int)bits[j];
        }
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S);
    float *x = malloc(sizeof(float) * feat);
    float *y0 = malloc(sizeof(float) * (size_t)K);
    float *xhat = malloc(sizeof(float) * feat * (size_t)nslots);
    float *logits = malloc(sizeof(float) * (size_t)K * (size_t)nslots);
    int *n = malloc(sizeof(int) * (size_t)C);
    double *slot_time = malloc(sizeof(double) * (size_t)nslots);
    /* Every configuration's feature is also coded as a real bitstream (both
     * payload modes) so that the reported rate is the bytes that would travel. */
    cwba_stream_info si;
    memset(&si, 0, sizeof si);
    snprintf(si.model, sizeof si.model, "%s", cwba_arch_name(cwba_model_arch(m)));
    snprintf(si.split, sizeof si.split, "%s", cwba_model_split_name(m, split));
    si.C = C;
    si.H = be.H;
    si.W = be.W;
    size_t stream_cap = feat * 48 + 65536;
    uint8_t *stream = malloc(stream_cap);
    float *xdec = malloc(sizeof(float) * feat);
    if (!in || !x || !y0 || !xhat || !logits || !n || !slot_time || !stream || !xdec) {
        cli_error("out of memory");
        free(in), free(x), free(y0), free(xhat), free(logits), free(n), free(slot_time);
        free(stream), free(xdec);
        return 1;
    }
    int rc = 0;
    cli_progress pr;
    cli_progress_start(&pr, "evaluate");
    double t_all = cwba_now();
    for (int i = 0; i < cd->count && !rc; i++) {
        int label = -1;
        double t_y0 = cwba_now();
        int skipped = 0;
        if (cli_data_get(cd, i, in, &label, &skipped, &err)) {
            rc = 1;
            break;
        }
        if (skipped) continue;
        if (cwba_model_forward_front(m, split, in, 1, x, &err)) {
            rc = cli_fail_status(&err);
            break;
        }
        t_y0 = cwba_now();
        if (cwba_model_forward_back(m, split, x, 1, y0, &err)) {
            rc = cli_fail_status(&err);
            break;
        }
        t_y0 = cwba_now() - t_y0;
        int top0 = argmax(y0, K);
        sum->images++;
        if (label >= 0) {
            sum->labelled++;
            if (top0 == label) sum->float_correct++;
        }
        cwba_probe_cache *pc[2] = {NULL, NULL}; /* uniform, log: shared within the image */
        for (int mi = 0; mi < nmethods && !rc; mi++) {
            const engine_method *me = &methods[mi];
            for (int bi = 0; bi < nbits && !rc; bi++) {
                int slot = mi * nbits + bi, b = (int)bits[bi];
                engine_result *r = &res[slot];
                float *xh = xhat + feat * (size_t)slot;
                double t0 = cwba_now();
                double code_bits = 0.0;
                if (me->quant == CWBA_QUANT_DOREFA) {
                    cwba_dorefa(x, feat, b, (float)dorefa_clip, xh);
                    code_bits = b;
                } else {
                    if (me->alloc == ALLOC_NONE) {
                        for (int c = 0; c < C; c++) n[c] = (1 << b) - 1;
                        if (cwba_quantize_feature(me->quant, x, C, HW, n, xh, NULL, &err)) {
                            rc = cli_fail_status(&err);
                            break;
                        }
                    } else {
                        cwba_eval_params p = {me->quant, b, me->reserve, alpha, beta};
                        int qi = me->quant == CWBA_QUANT_LOG;
                        cwba_probe_cache *cache = NULL;
                        cwba_alloc_stats st = {0, 0, 0};
                        if (me->reserve > 0) {
                            if (fresh_probes || !pc[qi]) {
                                if (cwba_probe_cache_create(&be, me->quant, x, y0, &cache, &err)) {
                                    rc = cli_fail_status(&err);
                                    break;
                                }
                                if (!fresh_probes) pc[qi] = cache;
                            } else {
                                cache = pc[qi];
                            }
                        }
                        rc = cwba_evaluate_image(&be, cache, &tables[b - 2], &p, x, y0, n, xh, NULL,
                                                 &st, &err)
                                 ? cli_fail_status(&err)
                                 : 0;
                        if (fresh_probes) cwba_probe_cache_free(cache);
                        if (rc) break;
                        r->passes += st.passes;
                        if (me->reserve > 0) { /* online steps need the reference output */
                            r->passes += 1;
                            r->seconds += t_y0;
                        }
                    }
                    for (int c = 0; c < C; c++) code_bits += log2((double)n[c] + 1.0);
                    code_bits /= C;
                }
                slot_time[slot] = cwba_now() - t0;
                r->code_bits_sum += code_bits;
                si.quant = me->quant;
                si.bits = b;
                si.clip = (float)dorefa_clip;
                for (int mode = 0; mode < 2 && !rc; mode++) {
                    si.mode = mode == 0 ? CWBA_STREAM_FIXED : CWBA_STREAM_ADAPTIVE;
                    size_t len = 0;
                    cwba_status st = cwba_stream_encode_feature(
                        &si, x, me->quant == CWBA_QUANT_DOREFA ? NULL : n, stream, stream_cap,
                        &len, xdec, NULL, &err);
                    if (st == CWBA_E_UNSUPPORTED) {
                        if (mode == 0) r->stream_failures++;
                        continue;
                    }
                    if (st) {
                        rc = cli_fail_status(&err);
                        break;
                    }
                    /* what the cloud decodes must be exactly what we evaluate */
                    if (mode == 0 && memcmp(xdec, xh, sizeof(float) * feat) != 0) {
                        cli_error("internal: bitstream reconstruction differs from the quantizer's "
                                  "output (%s, %d bits)", cwba_quant_name(me->quant), b);
                        rc = 1;
                        break;
                    }
                    r->stream_bytes_sum[mode] += (double)len;
                }
            }
        }
        cwba_probe_cache_free(pc[0]);
        cwba_probe_cache_free(pc[1]);
        if (rc) break;
        /* One batched back-end pass for every configuration's final feature. */
        double t0 = cwba_now();
        for (int s0 = 0; s0 < nslots && !rc; s0 += be.max_batch) {
            int nb = nslots - s0 < be.max_batch ? nslots - s0 : be.max_batch;
            if (cwba_model_forward_back(m, split, xhat + feat * (size_t)s0, nb,
                                        logits + (size_t)K * s0, &err))
                rc = cli_fail_status(&err);
        }
        if (rc) break;
        double t_final = (cwba_now() - t0) / nslots;
        for (int s = 0; s < nslots; s++) {
            engine_result *r = &res[s];
            const float *lg = logits + (size_t)K * s;
            r->images++;
            r->mse_sum += cwba_mse(lg, y0, (size_t)K);
            r->feature_mse_sum += cwba_mse(xhat + feat * (size_t)s, x, feat);
            int t = argmax(lg, K);
            if (label >= 0 && t == label) r->correct++;
            if (t == top0) r->agree++;
            r->seconds += slot_time[s] + t_final;
            r->passes += 1;
        }
        cli_progress_update(&pr, i + 1, cd->count);
    }
    cli_progress_end(&pr);
    cli_data_report_skipped(cd);
    sum->seconds_total = cwba_now() - t_all;
    free(in), free(x), free(y0), free(xhat), free(logits), free(n), free(slot_time);
    free(stream), free(xdec);
    return rc;
}

/* ------------------------------------------------------------------ output */

static const char *alloc_name(engine_alloc a) { return a == ALLOC_CHANNEL ? "channel" : "none"; }

void engine_print_json(FILE *f, const char *model, const char *split, const engine_result *r,
                       const engine_summary *s)
{
    double N = r->images > 0 ? (double)r->images : 1.0;
    fprintf(f,
            "{\"model\":\"%s\",\"split\":\"%s\",\"quant\":\"%s\",\"alloc\":\"%s\",\"bits\":%d,"
            "\"reserve\":%d,\"images\":%ld,\"mse\":%.9g,\"feature_mse\":%.9g,",
            model, split, cwba_quant_name(r->method.quant), alloc_name(r->method.alloc), r->bits,
            r->method.alloc == ALLOC_CHANNEL ? r->method.reserve : 0, r->images, r->mse_sum / N,
            r->feature_mse_sum / N);
    if (s->labelled > 0)
        fprintf(f, "\"top1\":%.6f,\"float_top1\":%.6f,", (double)r->correct / N,
                (double)s->float_correct / (double)s->labelled);
    else
        fprintf(f, "\"top1\":null,\"float_top1\":null,");
    fprintf(f, "\"agree\":%.6f,\"nominal_bits\":%d,\"bits_per_element\":%.6f,",
            (double)r->agree / N, r->bits, r->code_bits_sum / N);
    double elems = (double)s->C * s->H * s->W;
    if (r->stream_failures == 0 && elems > 0)
        fprintf(f,
                "\"stream_bytes\":%.2f,\"stream_bits_per_element\":%.6f,"
                "\"stream_bytes_adaptive\":%.2f,\"stream_bits_per_element_adaptive\":%.6f,",
                r->stream_bytes_sum[0] / N, r->stream_bytes_sum[0] * 8 / N / elems,
                r->stream_bytes_sum[1] / N, r->stream_bytes_sum[1] * 8 / N / elems);
    else
        fprintf(f, "\"stream_bytes\":null,\"stream_bits_per_element\":null,"
                   "\"stream_bytes_adaptive\":null,\"stream_bits_per_element_adaptive\":null,");
    fprintf(f, "\"passes_per_image\":%.3f,\"seconds_per_image\":%.6g,\"conv\":\"%s\",\"threads\":%d}\n",
            (double)r->passes / N, r->seconds / N, cwba_conv_algo_name(s->conv), cwba_get_threads());
}

void engine_print_table(FILE *f, const char *model, const char *split, int C, int H, int W,
                        const engine_result *res, int nmethods, const long *bits, int nbits,
                        const engine_summary *s)
{
    fprintf(f, "%s %s (%dx%dx%d), %ld images", model, split, C, H, W, s->images);
    if (s->conv != CWBA_CONV_DIRECT) fprintf(f, ", %s convolutions", cwba_conv_algo_name(s->conv));
    if (s->labelled > 0)
        fprintf(f, ", float model top-1 %.4f", (double)s->float_correct / (double)s->labelled);
    fprintf(f, "\n\n");
    const char *titles[4] = {"output MSE (the original's metric)",
                             "top-1 accuracy (agreement with the float model)",
                             "exact code bits per element",
                             "bitstream bits per element, all side information included: "
                             "fixed / adaptive payload"};
    for (int t = 0; t < 4; t++) {
        fprintf(f, "%-24s", titles[t]);
        fprintf(f, "\n%-24s", "method \\ bits");
        for (int j = 0; j < nbits; j++) fprintf(f, t == 1 || t == 3 ? " %15ld" : " %10ld", bits[j]);
        if (t == 0) fprintf(f, " %10s %10s", "s/image", "passes/img");
        fprintf(f, "\n");
        for (int i = 0; i < nmethods; i++) {
            fprintf(f, "%-24s", res[i * nbits].method.label);
            double secs = 0, passes = 0;
            long imgs = 0;
            for (int j = 0; j < nbits; j++) {
                const engine_result *r = &res[i * nbits + j];
                double N = r->images > 0 ? (double)r->images : 1.0;
                if (t == 0)
                    fprintf(f, " %10.5g", r->mse_sum / N);
                else if (t == 1) {
                    char cell[32];
                    if (s->labelled > 0)
                        snprintf(cell, sizeof cell, "%.4f (%.3f)", (double)r->correct / N,
                                 (double)r->agree / N);
                    else
                        snprintf(cell, sizeof cell, "- (%.3f)", (double)r->agree / N);
                    fprintf(f, " %15s", cell);
                } else if (t == 2) {
                    fprintf(f, " %10.4f", r->code_bits_sum / N);
                } else {
                    double el = (double)s->C * s->H * s->W;
                    char cell[40];
                    if (r->stream_failures == 0 && el > 0)
                        snprintf(cell, sizeof cell, "%.3f / %.3f", r->stream_bytes_sum[0] * 8 / N / el,
                                 r->stream_bytes_sum[1] * 8 / N / el);
                    else
                        snprintf(cell, sizeof cell, "n/a");
                    fprintf(f, " %15s", cell);
                }
                secs += r->seconds;
                passes += (double)r->passes;
                imgs += r->images;
            }
            if (t == 0 && imgs > 0)
                fprintf(f, " %10.4g %10.1f", secs / (double)imgs, passes / (double)imgs);
            fprintf(f, "\n");
        }
        fprintf(f, "\n");
    }
}
