/* Calibration and evaluation loops over a dataset (see engine.h). */
#include "engine.h"

#include "cwba/codec.h"
#include "dist.h"

#include <lzma.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

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

int engine_write_rows(const char *path, const cwba_table *t, int keep)
{
    cwba_error err;
    cwba_error_clear(&err);
    /* Written whole beside the target and renamed over it: a reader (or an
     * interrupted run) sees the old table or the new one, never a part. */
    char tmp[4096 + 8];
    size_t len = strlen(path);
    if (len + 7 > sizeof tmp) {
        cli_error("table path too long: %s", path);
        return 1;
    }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".write", 7);
    remove(tmp);
    if (keep > 0 && cwba_table_append(tmp, t->data, keep, t->C, &err)) return cli_fail_status(&err);
    if (keep == 0) {
        FILE *f = fopen(tmp, "wb");
        if (!f || fclose(f) != 0) {
            cli_error("cannot write %s", tmp);
            return 1;
        }
    }
    if (rename(tmp, path) != 0) {
        cli_error("cannot rename %s to %s", tmp, path);
        remove(tmp);
        return 1;
    }
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
            if (rows[b] > mn) rc = engine_write_rows(paths[b], &t[b], mn);
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
    cwba_probe_cache *pc[2]; /* rate-distortion allocation: uniform, log */
    cwba_rd_ctx *rd[2];
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

static int stream_info(eval_run *er, const eval_image *im, cwba_quant q, int b);

/* Bytes of the stream cwba encode writes (mode auto) for er->n and
 * er->codes; er->si must be set. */
static int stream_bytes_auto(eval_run *er, size_t *bytes)
{
    cwba_error err;
    cwba_error_clear(&err);
    er->si.mode = CWBA_STREAM_AUTO;
    if (cwba_stream_encode(&er->si, er->n, er->codes, er->stream, er->stream_cap, bytes, NULL, &err))
        return cli_fail_status(&err);
    return 0;
}

/* Rate-distortion allocation of one configuration: the image's candidates
 * (probes and rate model) made on first use, shared by its configurations
 * unless fresh probes are asked for; then one lambda, or the search for the
 * smallest lambda whose real stream fits the target. */
static int eval_rd(eval_run *er, eval_image *im, const engine_method *me, int kmax, float *xh,
                   engine_result *r)
{
    cwba_error err;
    cwba_error_clear(&err);
    int qi = me->quant == CWBA_QUANT_LOG;
    if (er->fresh_probes) {
        cwba_rd_ctx_free(im->rd[qi]);
        cwba_probe_cache_free(im->pc[qi]);
        im->rd[qi] = NULL;
        im->pc[qi] = NULL;
    }
    if (!im->rd[qi]) {
        cwba_alloc_stats st = {0, 0, 0};
        if (cwba_probe_cache_create(&er->be, me->quant, im->x, im->y0, &im->pc[qi], &err) ||
            cwba_rd_ctx_create(im->pc[qi], &er->be, me->quant, im->x, kmax, &im->rd[qi], &st, &err))
            return cli_fail_status(&err);
        /* the probes and the reference pass they are measured against */
        r->passes += st.passes + 1;
        r->seconds += im->t_y0;
    }
    double lambda = me->lambda;
    if (me->target_bytes > 0) {
        if (!stream_info(er, im, me->quant, kmax)) {
            cli_error("--bytes: the log quantizer cannot code this image's range");
            return 1;
        }
        /* Bisection on log10(lambda) over [-12, 3]: deterministic, 48 steps;
         * the real size is not monotone in lambda everywhere, so this finds
         * a lambda at which it fits, the smallest one the bracket resolves. */
        double lo = -12.0, hi = 3.0;
        size_t bytes;
        if (cwba_rd_ctx_alloc(im->rd[qi], pow(10.0, lo), er->n, NULL, er->codes, NULL, NULL, &err))
            return cli_fail_status(&err);
        if (stream_bytes_auto(er, &bytes)) return 1;
        if (bytes <= (size_t)me->target_bytes) {
            hi = lo;
        } else {
            for (int it = 0; it < 48; it++) {
                double mid = 0.5 * (lo + hi);
                if (cwba_rd_ctx_alloc(im->rd[qi], pow(10.0, mid), er->n, NULL, er->codes, NULL,
                                      NULL, &err))
                    return cli_fail_status(&err);
                if (stream_bytes_auto(er, &bytes)) return 1;
                if (bytes <= (size_t)me->target_bytes)
                    hi = mid;
                else
                    lo = mid;
            }
            if (cwba_rd_ctx_alloc(im->rd[qi], pow(10.0, hi), er->n, NULL, er->codes, NULL, NULL,
                                  &err))
                return cli_fail_status(&err);
            if (stream_bytes_auto(er, &bytes)) return 1;
            if (bytes > (size_t)me->target_bytes) r->over_target++;
        }
        lambda = pow(10.0, hi);
    }
    if (cwba_rd_ctx_alloc(im->rd[qi], lambda, er->n, xh, er->codes, NULL, NULL, &err))
        return cli_fail_status(&err);
    r->lambda_sum += lambda;
    for (int c = 0; c < er->C; c++) r->dropped_sum += er->n[c] == 0;
    return 0;
}

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
    if (me->alloc == ALLOC_RD) {
        if (eval_rd(er, im, me, b, xh, r)) return 1;
    } else if (me->alloc == ALLOC_NONE) {
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
/* Sets er->si for one configuration of the image; 0 when no bitstream can
 * carry it. */
static int stream_info(eval_run *er, const eval_image *im, cwba_quant q, int b)
{
    cwba_stream_info *si = &er->si;
    si->quant = q;
    si->bits = b;
    si->clip = (float)er->clip;
    si->mn = si->mx = 0.0f;
    if (q != CWBA_QUANT_DOREFA) {
        cwba_feature_range(im->x, er->feat, &si->mn, &si->mx);
        /* The log quantizer passes a range below float32 resolution through
         * uncoded, which the bitstream cannot carry. */
        if (q == CWBA_QUANT_LOG && si->mx > si->mn &&
            !(cwba_quant_code_ref(CWBA_QUANT_LOG, si->mx, si->mn, si->mx, 1) == 1))
            return 0;
    }
    return 1;
}

/* General-purpose compressors of the same codes: the stream's header and
 * side information as cwba writes them (mode 0), its payload replaced by the
 * codes (one byte each, two little-endian when an n_c exceeds 255;
 * channel-major) compressed by zstd level 19 and by raw LZMA2 at preset 6
 * (xz's default, no container; the dictionary cut to the input's size). */
static int general_encode(eval_run *er, const engine_method *me, int b, engine_result *r)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_stream_stats st;
    size_t len;
    er->si.mode = CWBA_STREAM_FIXED;
    if (cwba_stream_encode(&er->si, me->quant == CWBA_QUANT_DOREFA ? NULL : er->n, er->codes,
                           er->stream, er->stream_cap, &len, &st, &err))
        return cli_fail_status(&err);
    uint32_t top = 0;
    for (size_t i = 0; i < er->feat; i++)
        if (er->codes[i] > top) top = er->codes[i];
    (void)b;
    const size_t w = top > 255 ? 2 : 1, nin = er->feat * w;
    uint8_t *in = malloc(nin);
    size_t cap = ZSTD_compressBound(nin) + nin / 2 + 4096;
    uint8_t *out = malloc(cap);
    if (!in || !out) {
        free(in), free(out);
        cli_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < er->feat; i++)
        for (size_t j = 0; j < w; j++) in[i * w + j] = (uint8_t)(er->codes[i] >> (8 * j));
    const double rest = (double)(len - st.payload_bytes);
    size_t z = ZSTD_compress(out, cap, in, nin, 19);
    lzma_options_lzma opt;
    lzma_lzma_preset(&opt, 6);
    opt.dict_size = nin < LZMA_DICT_SIZE_MIN ? LZMA_DICT_SIZE_MIN : (uint32_t)nin;
    lzma_filter filters[2] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    size_t xpos = 0;
    lzma_ret xr = lzma_raw_buffer_encode(filters, NULL, in, nin, out, &xpos, cap);
    free(in), free(out);
    if (ZSTD_isError(z) || xr != LZMA_OK) {
        cli_error("zstd/xz anchor: compression failed (%s)",
                  ZSTD_isError(z) ? ZSTD_getErrorName(z) : "lzma");
        return 1;
    }
    r->general_bytes_sum[0] += rest + (double)z;
    r->general_bytes_sum[1] += rest + (double)xpos;
    return 0;
}

static int eval_encode(eval_run *er, const eval_image *im, const engine_method *me, int b,
                       engine_result *r)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_stream_info *si = &er->si;
    if (!stream_info(er, im, me->quant, b)) {
        r->stream_failures++;
        return 0;
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
    if (me->general && coded & 1 && general_encode(er, me, b, r)) return 1;
    return 0;
}

/* ------------------------------------------------------- the image loop */

/* One batched back-end pass for every configuration's final feature, and
 * the per-configuration figures. */
static int slots_final(cwba_model *m, int split, const cwba_backend *be, const engine_image *im,
                       const float *xhat, float *logits, const double *slot_time, int nslots,
                       engine_slot *res)
{
    cwba_error err;
    cwba_error_clear(&err);
    const size_t feat = (size_t)be->C * be->H * be->W;
    double t0 = cwba_now();
    for (int s0 = 0; s0 < nslots; s0 += be->max_batch) {
        int nb = nslots - s0 < be->max_batch ? nslots - s0 : be->max_batch;
        if (cwba_model_forward_back(m, split, xhat + feat * (size_t)s0, nb,
                                    logits + (size_t)be->K * s0, &err))
            return cli_fail_status(&err);
    }
    double t_final = (cwba_now() - t0) / nslots;
    int top0 = argmax(im->y0, be->K);
    for (int s = 0; s < nslots; s++) {
        engine_slot *r = &res[s];
        const float *lg = logits + (size_t)be->K * s;
        r->images++;
        r->mse_sum += cwba_mse(lg, im->y0, (size_t)be->K);
        r->feature_mse_sum += cwba_mse(xhat + feat * (size_t)s, im->x, feat);
        int t = argmax(lg, be->K);
        if (im->label >= 0 && t == im->label) r->correct++;
        if (t == top0) r->agree++;
        r->seconds += slot_time[s] + t_final;
        r->passes += 1;
    }
    return 0;
}

int engine_run_images(cwba_model *m, int split, const cli_data *cd, int nslots,
                      engine_image_fn fn, engine_merge_fn merge, size_t rec_bytes, void *ctx,
                      engine_slot *slots, engine_summary *sum)
{
    cwba_error err;
    cwba_error_clear(&err);
    cwba_backend be;
    cli_backend_ctx bctx;
    cli_backend_init(&be, &bctx, m, split);
    const int K = be.K, S = cwba_model_input_size(m);
    const size_t feat = (size_t)be.C * be.H * be.W;
    memset(sum, 0, sizeof *sum);
    memset(slots, 0, sizeof *slots * (size_t)nslots);
    sum->C = be.C;
    sum->H = be.H;
    sum->W = be.W;
    sum->conv = cwba_model_conv_algo(m);
    sum->input_pixels = (long)S * S;
    /* Each image's figures go to a record first (info: used, labelled,
     * float correct; the slots' figures; the method's own part) and are
     * added in image order: with one process and under MPI (rounds of one
     * image per rank, gathered on rank 0) the sums are the same operations
     * in the same order. */
    const int rank = dist_rank(), P = dist_size();
    const size_t off_slots = sizeof(double) * 2; /* 4 ints, 8-byte aligned */
    const size_t off_user = off_slots + sizeof(engine_slot) * (size_t)nslots;
    const size_t rec_len = off_user + (rec_bytes + 7) / 8 * 8;
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S);
    float *x = malloc(sizeof(float) * feat);
    float *y0 = malloc(sizeof(float) * (size_t)K);
    float *xhat = malloc(sizeof(float) * feat * (size_t)nslots);
    float *logits = malloc(sizeof(float) * (size_t)K * (size_t)nslots);
    double *slot_time = malloc(sizeof(double) * (size_t)nslots);
    unsigned char *rec = calloc(1, rec_len);
    unsigned char *all = rank == 0 ? malloc(rec_len * (size_t)P) : NULL;
    int rc = 0;
    if (!in || !x || !y0 || !xhat || !logits || !slot_time || !rec || (rank == 0 && !all)) {
        cli_error("out of memory");
        rc = 1;
    }
    int ok = !rc;
    if (dist_min_int(&ok, "agreement on the buffers") || !ok) rc = 1;
    cli_progress pr;
    cli_progress_start(&pr, "evaluate");
    if (rank != 0) pr.enabled = 0;
    double t_all = cwba_now();
    for (int base = 0; base < cd->count && !rc; base += P) {
        const int i = base + rank;
        int *info = (int *)rec;
        engine_slot *rs = (engine_slot *)(rec + off_slots);
        memset(rec, 0, rec_len);
        int label = -1, skipped = 0;
        if (i >= cd->count) {
            /* this rank has no image in the last round */
        } else if (cli_data_get(cd, i, in, &label, &skipped, &err)) {
            rc = 1;
        } else if (!skipped) {
            engine_image im = {x, y0, label, 0.0};
            if (cwba_model_forward_front(m, split, in, 1, x, &err)) rc = cli_fail_status(&err);
            im.t_y0 = cwba_now();
            if (!rc && cwba_model_forward_back(m, split, x, 1, y0, &err))
                rc = cli_fail_status(&err);
            im.t_y0 = cwba_now() - im.t_y0;
            if (!rc) {
                info[0] = 1;
                info[1] = label >= 0;
                info[2] = label >= 0 && argmax(y0, K) == label;
                for (int s = 0; s < nslots; s++) slot_time[s] = 0.0;
                rc = fn(ctx, &im, xhat, slot_time, rec + off_user);
            }
            if (!rc) rc = slots_final(m, split, &be, &im, xhat, logits, slot_time, nslots, rs);
        }
        /* A failed image stops every rank before anything of its round counts. */
        ok = !rc;
        if (dist_min_int(&ok, "agreement on an evaluation round") || !ok ||
            dist_gather(rec, rec_len, all, "gather of evaluation results")) {
            rc = 1;
            break;
        }
        if (rank != 0) continue;
        const int nr = cd->count - base < P ? cd->count - base : P;
        for (int r = 0; r < nr; r++) {
            const unsigned char *g = all + rec_len * (size_t)r;
            const int *gi = (const int *)g;
            if (!gi[0]) continue; /* skipped image */
            const engine_slot *gs = (const engine_slot *)(g + off_slots);
            sum->images++;
            sum->labelled += gi[1];
            sum->float_correct += gi[2];
            for (int s = 0; s < nslots; s++) {
                engine_slot *t = &slots[s];
                t->images += gs[s].images;
                t->correct += gs[s].correct;
                t->agree += gs[s].agree;
                t->mse_sum += gs[s].mse_sum;
                t->feature_mse_sum += gs[s].feature_mse_sum;
                t->seconds += gs[s].seconds;
                t->passes += gs[s].passes;
            }
            if (merge) merge(ctx, g + off_user);
        }
        cli_progress_update(&pr, base + nr, cd->count);
    }
    cli_progress_end(&pr);
    cli_data_report_skipped(cd);
    sum->seconds_total = cwba_now() - t_all;
    free(in), free(x), free(y0), free(xhat), free(logits), free(slot_time), free(rec), free(all);
    return rc;
}

/* ------------------------------------------------- cwba's own quantizers */

typedef struct eval_loop {
    eval_run *er;
    const engine_method *methods;
    int nmethods;
    const long *bits;
    int nbits;
    engine_result *res;
} eval_loop;

/* Every configuration of one image: quantize (timed) and code. */
static int eval_one_image(void *ctx, const engine_image *img, float *xhat, double *slot_time,
                          void *rec)
{
    eval_loop *L = ctx;
    engine_result *res = rec; /* this image's figures, zeroed */
    eval_run *er = L->er;
    eval_image im = {img->x, img->y0, img->t_y0, {NULL, NULL}, {NULL, NULL}, {NULL, NULL}};
    int rc = 0;
    for (int mi = 0; mi < L->nmethods && !rc; mi++)
        for (int bi = 0; bi < L->nbits && !rc; bi++) {
            int slot = mi * L->nbits + bi, b = (int)L->bits[bi];
            double t0 = cwba_now(), code_bits = 0.0;
            rc = eval_quantize(er, &im, &L->methods[mi], b, xhat + er->feat * (size_t)slot,
                               &res[slot], &code_bits);
            slot_time[slot] = cwba_now() - t0;
            res[slot].code_bits_sum += code_bits;
            if (!rc) rc = eval_encode(er, &im, &L->methods[mi], b, &res[slot]);
        }
    for (int qi = 0; qi < 2; qi++) {
        cwba_eval_ctx_free(im.ctx[qi]);
        cwba_rd_ctx_free(im.rd[qi]);
        cwba_probe_cache_free(im.pc[qi]);
    }
    return rc;
}

/* One image's figures added to the totals (rank 0, in image order). */
static void eval_merge(void *ctx, const void *rec)
{
    eval_loop *L = ctx;
    const engine_result *g = rec;
    for (int s = 0; s < L->nmethods * L->nbits; s++) {
        engine_result *t = &L->res[s];
        t->code_bits_sum += g[s].code_bits_sum;
        t->seconds += g[s].seconds;
        t->passes += g[s].passes;
        for (int k = 0; k < 3; k++) t->stream_bytes_sum[k] += g[s].stream_bytes_sum[k];
        t->stream_failures += g[s].stream_failures;
        t->lambda_sum += g[s].lambda_sum;
        t->over_target += g[s].over_target;
        t->dropped_sum += g[s].dropped_sum;
        for (int k = 0; k < 2; k++) t->general_bytes_sum[k] += g[s].general_bytes_sum[k];
    }
}

int engine_evaluate(cwba_model *m, int split, const cli_data *cd, const engine_method *methods,
                    int nmethods, const long *bits, int nbits, cwba_table tables[6],
                    double alpha, double beta, double dorefa_clip, int fresh_probes,
                    engine_result *res, engine_summary *sum)
{
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
    int nslots = nmethods * nbits;
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
    er.stream_cap = er.feat * 48 + 65536;
    er.n = malloc(sizeof(int) * (size_t)er.C);
    er.codes = malloc(sizeof(uint32_t) * er.feat);
    er.stream = malloc(er.stream_cap);
    engine_slot *slots = malloc(sizeof *slots * (size_t)nslots);
    int rc = 0;
    if (!er.n || !er.codes || !er.stream || !slots) {
        cli_error("out of memory");
        rc = 1;
    }
    eval_loop L = {&er, methods, nmethods, bits, nbits, res};
    if (!rc) rc = engine_run_images(m, split, cd, nslots, eval_one_image, eval_merge,
                                   sizeof(engine_result) * (size_t)nslots, &L, slots, sum);
    for (int s = 0; !rc && s < nslots; s++) {
        engine_result *r = &res[s];
        r->images = slots[s].images;
        r->mse_sum = slots[s].mse_sum;
        r->feature_mse_sum = slots[s].feature_mse_sum;
        r->correct = slots[s].correct;
        r->agree = slots[s].agree;
        r->seconds += slots[s].seconds;
        r->passes += slots[s].passes;
    }
    free(slots), free(er.n), free(er.codes), free(er.stream);
    return rc;
}

/* ------------------------------------------------------------------ output */

static const char *alloc_name(engine_alloc a)
{
    return a == ALLOC_CHANNEL ? "channel" : a == ALLOC_RD ? "rd" : "none";
}

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
    if (r->method.alloc == ALLOC_RD) {
        /* the lambda asked for (the point's name) or, with a byte target,
         * the mean of the lambdas found */
        if (r->method.target_bytes > 0)
            fprintf(f, "\"target_bytes\":%ld,\"over_target\":%ld,\"lambda_mean\":%.6g,",
                    r->method.target_bytes, r->over_target, r->lambda_sum / N);
        else
            fprintf(f, "\"lambda\":%.6g,", r->method.lambda);
        fprintf(f, "\"dropped_channels\":%.3f,", (double)r->dropped_sum / N);
    }
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
    if (r->method.general && r->stream_failures == 0)
        fprintf(f, "\"zstd_bytes_per_image\":%.2f,\"xz_bytes_per_image\":%.2f,",
                r->general_bytes_sum[0] / N, r->general_bytes_sum[1] / N);
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
