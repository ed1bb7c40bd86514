/* Standard-codec anchors through the back end (see anchor_eval.h): per image,
 * the feature at the split is coded by the codec at every quality, decoded,
 * and all decoded features go through the back end in one batch; the rate
 * is the length of the anchor stream (its header included). */
#include "anchor_eval.h"
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define MAX_QUALITIES 32

typedef struct anchor_result {
    int quality;
    long images, correct, agree;
    double mse_sum, feature_mse_sum, bytes_sum, payload_sum, seconds;
} anchor_result;

/* Options of evaluate that describe cwba's own quantizers, not an anchor. */
static int reject_method_options(const cli_opts *o)
{
    static const char *const own[] = {"quant", "alloc", "table", "bits", "reserve", "alpha",
                                      "beta", "dorefa-clip", "fresh-probes",
                                      "lambda", "bytes", "general"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (cli_has(o, own[i])) {
            cli_error("--%s does not apply with --codec (the anchor quantizes to the codec's depth)",
                      own[i]);
            return 2;
        }
    return 0;
}

typedef struct anchor_run {
    cwba_anchor_codec codec;
    const long *q;
    int nq;
    long images, labelled, float_correct;
    int C, H, W, S;
    anchor_result *res;
} anchor_run;

/* engine_run_images' callback: every quality coded, decoded into its slot. */
static int anchor_image(void *ctx, const engine_image *im, float *xhat, double *slot_time,
                        void *rec)
{
    anchor_run *ar = ctx;
    double *bytes = rec; /* this image: stream and payload bytes per quality */
    cwba_error err;
    cwba_error_clear(&err);
    const size_t feat = (size_t)ar->C * ar->H * ar->W;
    for (int k = 0; k < ar->nq; k++) {
        uint8_t *s = NULL;
        size_t len = 0;
        cwba_anchor_stats st;
        memset(&st, 0, sizeof st);
        double t0 = cwba_now();
        int rc = 0;
        if (cwba_anchor_encode(ar->codec, (int)ar->q[k], im->x, ar->C, ar->H, ar->W, &s, &len, &st,
                               &err) ||
            cwba_anchor_decode(s, len, ar->C, ar->H, ar->W, xhat + feat * (size_t)k, &err))
            rc = cli_fail_status(&err);
        slot_time[k] = cwba_now() - t0;
        bytes[2 * k] = (double)len;
        bytes[2 * k + 1] = (double)st.payload_bytes;
        free(s);
        if (rc) return rc;
    }
    return 0;
}

/* One image's bytes added to the totals (rank 0, in image order). */
static void anchor_merge(void *ctx, const void *rec)
{
    anchor_run *ar = ctx;
    const double *bytes = rec;
    for (int k = 0; k < ar->nq; k++) {
        ar->res[k].bytes_sum += bytes[2 * k];
        ar->res[k].payload_sum += bytes[2 * k + 1];
    }
}

static int run_images(cwba_model *m, int split, const cli_data *cd, anchor_run *ar,
                      anchor_result *res)
{
    engine_slot *slots = malloc(sizeof *slots * (size_t)ar->nq);
    if (!slots) {
        cli_error("out of memory");
        return 1;
    }
    engine_summary sum;
    ar->res = res;
    int rc = engine_run_images(m, split, cd, ar->nq, anchor_image, anchor_merge,
                               sizeof(double) * 2 * (size_t)ar->nq, ar, slots, &sum);
    ar->images = sum.images;
    ar->labelled = sum.labelled;
    ar->float_correct = sum.float_correct;
    for (int k = 0; k < ar->nq; k++) {
        res[k].images = slots[k].images;
        res[k].correct = slots[k].correct;
        res[k].agree = slots[k].agree;
        res[k].mse_sum = slots[k].mse_sum;
        res[k].feature_mse_sum = slots[k].feature_mse_sum;
        res[k].seconds = slots[k].seconds; /* coding + its share of the final pass */
    }
    free(slots);
    return rc;
}

static void print_json(const char *model, const char *split, const anchor_run *ar,
                       const anchor_result *r, cwba_conv_algo conv)
{
    double N = r->images > 0 ? (double)r->images : 1.0;
    double el = (double)ar->C * ar->H * ar->W, px = (double)ar->S * ar->S;
    printf("{\"model\":\"%s\",\"split\":\"%s\",\"codec\":\"%s\",\"quality\":%d,\"depth\":%d,"
           "\"images\":%ld,\"mse\":%.9g,\"feature_mse\":%.9g,",
           model, split, cwba_anchor_codec_name(ar->codec), r->quality,
           cwba_anchor_depth(ar->codec), r->images, r->mse_sum / N, r->feature_mse_sum / N);
    if (ar->labelled > 0)
        printf("\"top1\":%.6f,\"float_top1\":%.6f,", (double)r->correct / N,
               (double)ar->float_correct / (double)ar->labelled);
    else
        printf("\"top1\":null,\"float_top1\":null,");
    printf("\"agree\":%.6f,\"bytes_per_image\":%.2f,\"header_bytes\":%d,"
           "\"payload_bytes_per_image\":%.2f,\"bits_per_element\":%.6f,\"bits_per_pixel\":%.6f,"
           "\"seconds_per_image\":%.6g,\"conv\":\"%s\",\"threads\":%d}\n",
           (double)r->agree / N, r->bytes_sum / N, CWBA_ANCHOR_HEADER_BYTES, r->payload_sum / N,
           r->bytes_sum * 8 / N / el, r->bytes_sum * 8 / N / px, r->seconds / N,
           cwba_conv_algo_name(conv), cwba_get_threads());
}

static void print_table(const char *model, const char *split, const anchor_run *ar,
                        const anchor_result *res, const cwba_anchor_grid *g)
{
    printf("%s %s (%dx%dx%d), %ld images, %s anchor: %d-bit min-max, %dx%d tiles in a %dx%d frame",
           model, split, ar->C, ar->H, ar->W, ar->images, cwba_anchor_codec_name(ar->codec),
           cwba_anchor_depth(ar->codec), g->cols, g->rows, g->frame_w, g->frame_h);
    if (ar->labelled > 0)
        printf(", float model top-1 %.4f", (double)ar->float_correct / (double)ar->labelled);
    printf("\n\n%-8s %12s %12s %10s %10s %12s %12s %10s\n",
           ar->codec == CWBA_ANCHOR_HEVC ? "QP" : "quality", "output MSE", "feature MSE", "top-1",
           "agree", "bytes/image", "bits/element", "bits/pixel");
    for (int k = 0; k < ar->nq; k++) {
        const anchor_result *r = &res[k];
        double N = r->images > 0 ? (double)r->images : 1.0;
        char top1[16];
        if (ar->labelled > 0)
            snprintf(top1, sizeof top1, "%.4f", (double)r->correct / N);
        else
            snprintf(top1, sizeof top1, "-");
        printf("%-8d %12.5g %12.5g %10s %10.4f %12.1f %12.4f %10.4f\n", r->quality, r->mse_sum / N,
               r->feature_mse_sum / N, top1, (double)r->agree / N, r->bytes_sum / N,
               r->bytes_sum * 8 / N / ((double)ar->C * ar->H * ar->W),
               r->bytes_sum * 8 / N / ((double)ar->S * ar->S));
    }
}

int anchor_evaluate(const cli_opts *o)
{
    int rc = reject_method_options(o);
    if (rc) return rc;
    cwba_error err;
    cwba_error_clear(&err);
    anchor_run ar;
    memset(&ar, 0, sizeof ar);
    if (cwba_anchor_codec_parse(cli_get(o, "codec"), &ar.codec, &err)) {
        cli_error("--codec: %s", err.msg);
        return 2;
    }
    if (!cli_has(o, "quality")) {
        cli_error("--codec needs --quality Q[,Q...] (%s)",
                  ar.codec == CWBA_ANCHOR_HEVC ? "QP 0..51" : "quality 0..100");
        return 2;
    }
    long q[MAX_QUALITIES], threads;
    if (!cli_get_int_list(o, "quality", NULL, 0, 100, q, MAX_QUALITIES, &ar.nq) ||
        !cli_get_int(o, "threads", 2, 1, 256, &threads))
        return 2;
    for (int k = 0; k < ar.nq; k++)
        if (cwba_anchor_quality_check(ar.codec, (int)q[k], &err)) {
            cli_error("--quality: %s", err.msg);
            return 2;
        }
    ar.q = q;
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(o, &cm))) return rc;
    int split;
    cwba_anchor_grid g;
    if (cwba_model_find_split(cm.model, cli_get(o, "split"), &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_model_split_shape(cm.model, split, &ar.C, &ar.H, &ar.W);
    ar.S = cwba_model_input_size(cm.model);
    if (cwba_anchor_grid_make(ar.codec, ar.C, ar.H, ar.W, &g, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cli_data cd;
    if ((rc = cli_data_open(o, &cm, &cd))) {
        cli_model_close(&cm);
        return rc;
    }
    anchor_result res[MAX_QUALITIES];
    memset(res, 0, sizeof res);
    for (int k = 0; k < ar.nq; k++) res[k].quality = (int)q[k];
    rc = run_images(cm.model, split, &cd, &ar, res);
    if (rc == 0) {
        const char *model = cwba_arch_name(cm.arch), *sname = cwba_model_split_name(cm.model, split);
        for (int k = 0; k < ar.nq && cli_has(o, "json"); k++)
            print_json(model, sname, &ar, &res[k], cwba_model_conv_algo(cm.model));
        if (!cli_has(o, "json")) print_table(model, sname, &ar, res, &g);
    }
    cli_data_close(&cd);
    cli_model_close(&cm);
    return rc;
}
