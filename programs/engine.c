/* Calibration and evaluation loops over a dataset (see engine.h). */
#include "engine.h"

#include "cwba/codec.h"
#include "dist.h"

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

/* Rank 0's part of engine_calibrate's start: the rows already done (resume),
 * or -1 after an error (printed), -2 after a usage error. */
static int calibrate_resume(const char paths[6][4096], int C, const cli_data *cd, int overwrite,
                            int quiet)
{
    if (overwrite) {
        for (int b = 0; b < 6; b++) remove(paths[b]);
        return 0;
    }
    int rows[6], mn = 1 << 30, mx = 0;
    cwba_table t[6];
    for (int b = 0; b < 6; b++) {
        if (existing_rows(paths[b], C, &t[b], &rows[b])) {
            for (int j = 0; j < b; j++) cwba_table_free(&t[j]);
            return -1;
        }
        if (rows[b] < mn) mn = rows[b];
        if (rows[b] > mx) mx = rows[b];
    }
    int rc = 0;
    if (mx != mn) /* an interrupted run appended to some files only */
        for (int b = 0; b < 6 && !rc; b++)
            if (rows[b] > mn) rc = rewrite_rows(paths[b], &t[b], mn);
    for (int b = 0; b < 6; b++) cwba_table_free(&t[b]);
    if (rc) return -1;
    if (mn > cd->count) {
        cli_error("%s already holds %d rows, more than the %d images selected; use --overwrite",
                  paths[0], mn, cd->count);
        return -2;
    }
    if (mn > 0 && !quiet)
        fprintf(stderr, "calibrate: resuming, %d of %d images already in the table\n", mn,
                cd->count);
    return mn;
}

/* Under MPI the images left are taken in rounds of one image per rank;
 * rank 0 gathers a round's rows and appends them in image order (the same
 * bytes as one process), so a job that dies keeps every finished round and
 * a rerun resumes after it. */
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
    const int rank = dist_rank(), P = dist_size();
    int done = rank == 0 ? calibrate_resume((const char(*)[4096])paths, C, cd, overwrite, quiet) : 0;
    if (dist_bcast_int(&done, "broadcast of the resume point")) return 1;
    if (done < 0) return done == -2 ? 2 : 1;
    const size_t per = 6 * (size_t)C; /* one image's rows, bits 2..7 */
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S);
    float *x = malloc(sizeof(float) * feat);
    int *rows = malloc(sizeof(int) * per);
    int *all = rank == 0 ? malloc(sizeof(int) * per * (size_t)P) : NULL;
    int *one = rank == 0 ? malloc(sizeof(int) * (size_t)C * (size_t)P) : NULL;
    int ok = in && x && rows && (rank != 0 || (all && one));
    if (!ok) cli_error("out of memory");
    if (dist_min_int(&ok, "agreement on the buffers") || !ok) {
        free(in), free(x), free(rows), free(all), free(one);
        return 1;
    }
    int rc = 0;
    cli_progress pr;
    cli_progress_start(&pr, "calibrate");
    if (quiet || rank != 0) pr.enabled = 0;
    cwba_alloc_stats stats = {0, 0, 0};
    double t0 = cwba_now();
    for (int base = done; base < cd->count && !rc; base += P) {
        int i = base + rank;
        ok = 1;
        memset(rows, 0, sizeof(int) * per);
        if (i < cd->count) {
            int skipped = 0;
            if (cli_data_get(cd, i, in, NULL, &skipped, &err)) {
                ok = 0;
            } else if (skipped) {
                /* keep one row per selected image so that resuming stays aligned */
                cli_error("calibrate: image %d is unreadable; calibration cannot skip images (%s)",
                          cli_data_index(cd, i), err.msg);
                ok = 0;
            } else if (cwba_model_forward_front(m, split, in, 1, x, &err) ||
                       cwba_calibrate_image(&be, q, x, NULL, rows, &stats, &err)) {
                cli_fail_status(&err);
                ok = 0;
            }
        }
        /* A failed image stops every rank before anything of its round is written. */
        if (dist_min_int(&ok, "agreement on a calibration round") || !ok) {
            rc = 1;
            break;
        }
        if (dist_gather(rows, sizeof(int) * per, all, "gather of calibration rows")) {
            rc = 1;
            break;
        }
        if (rank == 0) {
            int nr = cd->count - base < P ? cd->count - base : P;
            for (int b = 0; b < 6 && !rc; b++) {
                for (int r = 0; r < nr; r++)
                    memcpy(one + (size_t)r * C, all + (size_t)r * per + (size_t)b * C,
                           sizeof(int) * (size_t)C);
                if (cwba_table_append(paths[b], one, nr, C, &err)) rc = cli_fail_status(&err);
            }
            cli_progress_update(&pr, base + nr - done, cd->count - done);
        }
        int go = !rc;
        if (dist_min_int(&go, "agreement on the appended rows") || !go) rc = 1;
    }
    cli_progress_end(&pr);
    int n = cd->count - done;
    if (!rc && !quiet && n > 0 && rank == 0)
        fprintf(stderr,
                "calibrate: %d images, %.2f s/image, %.0f back-end passes/image "
                "(naive recomputation would need %.0f)%s\n",
                n, (cwba_now() - t0) / n * P, (double)stats.passes / ((n + P - 1) / P),
                (double)C * (126.0 * C + 1.0), P > 1 ? " (per rank)" : "");
    free(in), free(x), free(rows), free(all), free(one);
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

/* One image's state while its configurations are evaluated. */
typedef struct eval_image {
    const float *x, *y0;   /* (C, HW), (K) */
    double t_y0;           /* seconds of the reference pass */
    cwba_eval_ctx *ctx[2]; /* uniform, log: made on first use */
} eval_image;

typedef struct eval_run {
    cwba_backend be;
    int C, HW, K;
    size_t feat;
    const cwba_table *tables;
    double alpha, beta, clip;
    int fresh_probes;
    cwba_stream_info si;
    uint8_t *stream;
    size_t stream_cap;
    uint32_t *codes; /* (C, HW) */
    int *n;          /* (C) */
} eval_run;

/* The quantized feature xh, its codes (er->codes) and interval counts
 * (er->n) of one configuration, with the passes and seconds it is charged. */
static int eval_quantize(eval_run *er, eval_image *im, const engine_method *me, int b, float *xh,
                         engine_result *r, double *code_bits)
{
    cwba_error err;
    cwba_error_clear(&err);
    const int C = er->C;
    if (me->quant == CWBA_QUANT_DOREFA) {
        cwba_dorefa(im->x, er->feat, b, (float)er->clip, xh);
        const int levels = (1 << b) - 1;
        for (size_t i = 0; i < er->feat; i++)
            er->codes[i] = cwba_quant_code_ref(CWBA_QUANT_DOREFA, im->x[i], 0.0f, (float)er->clip,
                                               levels);
        *code_bits = b;
        return 0;
    }
    if (me->alloc == ALLOC_NONE) {
        for (int c = 0; c < C; c++) er->n[c] = (1 << b) - 1;
        if (cwba_quantize_feature(me->quant, im->x, C, er->HW, er->n, xh, er->codes, &err))
            return cli_fail_status(&err);
    } else {
        int qi = me->quant == CWBA_QUANT_LOG;
        if (!im->ctx[qi] && cwba_eval_ctx_create(&er->be, me->quant, im->x, im->y0, er->alpha,
                                                 er->beta, &im->ctx[qi], &err))
            return cli_fail_status(&err);
        if (er->fresh_probes) cwba_eval_ctx_fresh_probes(im->ctx[qi]);
        cwba_alloc_stats st = {0, 0, 0};
        long steps = 0;
        if (cwba_eval_ctx_run(im->ctx[qi], &er->tables[b - 2], b, me->reserve, er->n, xh,
                              er->codes, &steps, &st, &err))
            return cli_fail_status(&err);
        r->passes += st.passes;
        /* Online steps need the reference output y0: one pass and its time,
         * charged only to a configuration that takes steps (reserve 0, or
         * no leftover intervals, needs none). */
        if (steps > 0) {
            r->passes += 1;
            r->seconds += im->t_y0;
        }
    }
    double bits_sum = 0.0;
    for (int c = 0; c < C; c++) bits_sum += log2((double)er->n[c] + 1.0);
    *code_bits = bits_sum / C;
    return 0;
}

/* Codes the configuration's codes as real bitstreams (both payload modes):
 * the rate reported is the bytes that would travel. */
static int eval_encode(eval_run *er, const eval_image *im, const engine_method *me, int b,
                       engine_result *r)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_stream_info *si = &er->si;
    si->quant = me->quant;
    si->bits = b;
    si->clip = (float)er->clip;
    si->mn = si->mx = 0.0f;
    if (me->quant != CWBA_QUANT_DOREFA) {
        cwba_feature_range(im->x, er->feat, &si->mn, &si->mx);
        /* The log quantizer passes a range below float32 resolution through
         * uncoded, which the bitstream cannot carry. */
        if (me->quant == CWBA_QUANT_LOG && si->mx > si->mn &&
            !(cwba_quant_code_ref(CWBA_QUANT_LOG, si->mx, si->mn, si->mx, 1) == 1)) {
            r->stream_failures++;
            return 0;
        }
    }
    size_t lens[2] = {0, 0};
    int coded = 0;
    for (int mode = 0; mode < 2; mode++) {
        si->mode = mode == 0 ? CWBA_STREAM_FIXED : CWBA_STREAM_ADAPTIVE;
        size_t len = 0;
        cwba_status st = cwba_stream_encode(si, me->quant == CWBA_QUANT_DOREFA ? NULL : er->n,
                                            er->codes, er->stream, er->stream_cap, &len, NULL,
                                            &err);
        if (st == CWBA_E_UNSUPPORTED) {
            if (mode == 0) r->stream_failures++;
            continue;
        }
        if (st) return cli_fail_status(&err);
        r->stream_bytes_sum[mode] += (double)len;
        lens[mode] = len;
        coded |= 1 << mode;
    }
    /* Mode auto keeps the smaller payload; the rest of the stream is the same. */
    if (coded == 3) r->stream_bytes_sum[2] += (double)(lens[0] < lens[1] ? lens[0] : lens[1]);
    return 0;
}

/* One batched back-end pass for every configuration's final feature, and
 * the per-configuration figures. */
static int eval_final(cwba_model *m, int split, eval_run *er, const eval_image *im, int label,
                      const float *xhat, float *logits, const double *slot_time, int nslots,
                      engine_result *res)
{
    cwba_error err;
    cwba_error_clear(&err);
    double t0 = cwba_now();
    for (int s0 = 0; s0 < nslots; s0 += er->be.max_batch) {
        int nb = nslots - s0 < er->be.max_batch ? nslots - s0 : er->be.max_batch;
        if (cwba_model_forward_back(m, split, xhat + er->feat * (size_t)s0, nb,
                                    logits + (size_t)er->K * s0, &err))
            return cli_fail_status(&err);
    }
    double t_final = (cwba_now() - t0) / nslots;
    int top0 = argmax(im->y0, er->K);
    for (int s = 0; s < nslots; s++) {
        engine_result *r = &res[s];
        const float *lg = logits + (size_t)er->K * s;
        r->images++;
        r->mse_sum += cwba_mse(lg, im->y0, (size_t)er->K);
        r->feature_mse_sum += cwba_mse(xhat + er->feat * (size_t)s, im->x, er->feat);
        int t = argmax(lg, er->K);
        if (label >= 0 && t == label) r->correct++;
        if (t == top0) r->agree++;
        r->seconds += slot_time[s] + t_final;
        r->passes += 1;
    }
    return 0;
}

int engine_evaluate(cwba_model *m, int split, const cli_data *cd, const engine_method *methods,
                    int nmethods, const long *bits, int nbits, cwba_table tables[6],
                    double alpha, double beta, double dorefa_clip, int fresh_probes,
                    engine_result *res, engine_summary *sum)
{
    cwba_error err;
    cwba_error_clear(&err);
    eval_run er;
    memset(&er, 0, sizeof er);
    cli_backend_ctx bctx;
    cli_backend_init(&er.be, &bctx, m, split);
    er.C = er.be.C;
    er.HW = er.be.H * er.be.W;
    er.K = er.be.K;
    er.feat = (size_t)er.C * er.HW;
    er.tables = tables;
    er.alpha = alpha;
    er.beta = beta;
    er.clip = dorefa_clip;
    er.fresh_probes = fresh_probes;
    const int K = er.K, S = cwba_model_input_size(m);
    const size_t feat = er.feat;
    int nslots = nmethods * nbits;
    memset(sum, 0, sizeof *sum);
    sum->C = er.C;
    sum->conv = cwba_model_conv_algo(m);
    sum->H = er.be.H;
    sum->W = er.be.W;
    sum->input_pixels = (long)S * S;
    for (int i = 0; i < nmethods; i++)
        for (int j = 0; j < nbits; j++) {
            engine_result *r = &res[i * nbits + j];
            memset(r, 0, sizeof *r);
            r->method = methods[i];
            r->bits = (int)bits[j];
        }
    snprintf(er.si.model, sizeof er.si.model, "%s", cwba_arch_name(cwba_model_arch(m)));
    snprintf(er.si.split, sizeof er.si.split, "%s", cwba_model_split_name(m, split));
    er.si.C = er.C;
    er.si.H = er.be.H;
    er.si.W = er.be.W;
    er.stream_cap = feat * 48 + 65536;
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S);
    float *x = malloc(sizeof(float) * feat);
    float *y0 = malloc(sizeof(float) * (size_t)K);
    float *xhat = malloc(sizeof(float) * feat * (size_t)nslots);
    float *logits = malloc(sizeof(float) * (size_t)K * (size_t)nslots);
    double *slot_time = malloc(sizeof(double) * (size_t)nslots);
    er.n = malloc(sizeof(int) * (size_t)er.C);
    er.codes = malloc(sizeof(uint32_t) * feat);
    er.stream = malloc(er.stream_cap);
    int rc = 0;
    if (!in || !x || !y0 || !xhat || !logits || !slot_time || !er.n || !er.codes || !er.stream) {
        cli_error("out of memory");
        rc = 1;
    }
    cli_progress pr;
    cli_progress_start(&pr, "evaluate");
    double t_all = cwba_now();
    /* Each image's figures go to rec first and are then added in image
     * order: with one process and under MPI (rounds of one image per rank,
     * gathered on rank 0) the sums are the same operations in the same order. */
    const int rank = dist_rank(), P = dist_size();
    const size_t rec_bytes = sizeof(engine_result) * (size_t)nslots + sizeof(int) * 4;
    unsigned char *rec_buf = calloc(1, rec_bytes);
    unsigned char *all = rank == 0 ? malloc(rec_bytes * (size_t)P) : NULL;
    if (!rec_buf || (rank == 0 && !all)) {
        cli_error("out of memory");
        rc = 1;
    }
    int ok = !rc;
    if (dist_min_int(&ok, "agreement on the buffers") || !ok) rc = 1;
    for (int base = 0; base < cd->count && !rc; base += P) {
        int i = base + rank;
        engine_result *rec = (engine_result *)rec_buf;
        int *info = (int *)(rec_buf + sizeof(engine_result) * (size_t)nslots); /* used, labelled, float correct */
        memset(rec_buf, 0, rec_bytes);
        int label = -1, skipped = 0;
        if (i >= cd->count) {
        } else if (cli_data_get(cd, i, in, &label, &skipped, &err)) {
            rc = 1;
        } else if (!skipped) {
            if (cwba_model_forward_front(m, split, in, 1, x, &err))
                rc = cli_fail_status(&err);
            eval_image im = {x, y0, cwba_now(), {NULL, NULL}};
            if (!rc && cwba_model_forward_back(m, split, x, 1, y0, &err)) rc = cli_fail_status(&err);
            im.t_y0 = cwba_now() - im.t_y0;
            if (!rc) {
                info[0] = 1;
                info[1] = label >= 0;
                info[2] = label >= 0 && argmax(y0, K) == label;
            }
            for (int mi = 0; mi < nmethods && !rc; mi++)
                for (int bi = 0; bi < nbits && !rc; bi++) {
                    int slot = mi * nbits + bi, b = (int)bits[bi];
                    double t0 = cwba_now(), code_bits = 0.0;
                    rc = eval_quantize(&er, &im, &methods[mi], b, xhat + feat * (size_t)slot,
                                       &rec[slot], &code_bits);
                    slot_time[slot] = cwba_now() - t0;
                    rec[slot].code_bits_sum += code_bits;
                    if (!rc) rc = eval_encode(&er, &im, &methods[mi], b, &rec[slot]);
                }
            cwba_eval_ctx_free(im.ctx[0]);
            cwba_eval_ctx_free(im.ctx[1]);
            if (!rc)
                rc = eval_final(m, split, &er, &im, label, xhat, logits, slot_time, nslots, rec);
        }
        ok = !rc;
        if (dist_min_int(&ok, "agreement on an evaluation round") || !ok ||
            dist_gather(rec_buf, rec_bytes, all, "gather of evaluation results")) {
            rc = 1;
            break;
        }
        if (rank != 0) continue;
        int nr = cd->count - base < P ? cd->count - base : P;
        for (int r = 0; r < nr; r++) {
            const engine_result *g = (const engine_result *)(all + rec_bytes * (size_t)r);
            const int *gi = (const int *)(all + rec_bytes * (size_t)r + sizeof(engine_result) * (size_t)nslots);
            sum->images += gi[0];
            sum->labelled += gi[1];
            sum->float_correct += gi[2];
            for (int sl = 0; sl < nslots; sl++) {
                engine_result *t = &res[sl];
                t->images += g[sl].images;
                t->mse_sum += g[sl].mse_sum;
                t->feature_mse_sum += g[sl].feature_mse_sum;
                t->correct += g[sl].correct;
                t->agree += g[sl].agree;
                t->code_bits_sum += g[sl].code_bits_sum;
                t->seconds += g[sl].seconds;
                t->passes += g[sl].passes;
                for (int k = 0; k < 3; k++) t->stream_bytes_sum[k] += g[sl].stream_bytes_sum[k];
                t->stream_failures += g[sl].stream_failures;
            }
        }
        cli_progress_update(&pr, base + nr, cd->count);
    }
    free(rec_buf);
    free(all);
    cli_progress_end(&pr);
    cli_data_report_skipped(cd);
    sum->seconds_total = cwba_now() - t_all;
    free(in), free(x), free(y0), free(xhat), free(logits), free(slot_time);
    free(er.n), free(er.codes), free(er.stream);
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
    /* The field's rate units, for the stream cwba encode writes (mode auto):
     * bytes per image, bits per feature element and per input pixel. */
    double px = (double)s->input_pixels;
    if (r->stream_failures == 0 && elems > 0 && px > 0)
        fprintf(f, "\"bytes_per_image\":%.2f,\"bits_per_element_stream\":%.6f,\"bits_per_pixel\":%.6f,",
                r->stream_bytes_sum[2] / N, r->stream_bytes_sum[2] * 8 / N / elems,
                r->stream_bytes_sum[2] * 8 / N / px);
    else
        fprintf(f, "\"bytes_per_image\":null,\"bits_per_element_stream\":null,\"bits_per_pixel\":null,");
    fprintf(f, "\"input_pixels\":%ld,", s->input_pixels);
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
    const char *titles[5] = {"output MSE (the original's metric)",
                             "top-1 accuracy (agreement with the float model)",
                             "exact code bits per element",
                             "bitstream bits per element, all side information included: "
                             "fixed / adaptive payload",
                             "bitstream as cwba encode writes it (smaller payload): "
                             "bytes per image / bits per input pixel"};
    for (int t = 0; t < 5; t++) {
        fprintf(f, "%-24s", titles[t]);
        fprintf(f, "\n%-24s", "method \\ bits");
        for (int j = 0; j < nbits; j++)
            fprintf(f, t == 4 ? " %17ld" : t == 1 || t == 3 ? " %15ld" : " %10ld", bits[j]);
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
                } else if (t == 4) {
                    char cell[40];
                    if (r->stream_failures == 0 && s->input_pixels > 0)
                        snprintf(cell, sizeof cell, "%.1f / %.4f", r->stream_bytes_sum[2] / N,
                                 r->stream_bytes_sum[2] * 8 / N / (double)s->input_pixels);
                    else
                        snprintf(cell, sizeof cell, "n/a");
                    fprintf(f, " %17s", cell);
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
