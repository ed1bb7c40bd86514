/* cwba infer: top-1 accuracy of a model over a dataset; logits and split
 * features saved as .npy on request. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const cli_optdef defs[] = {
    CLI_MODEL_OPTIONS,
    {"data", 1, "fmnist[:DIR[:train|:test]] | imagenet:DIR[:LABELS] | folder:DIR (default: fmnist test)"},
    CLI_SELECT_OPTIONS,
    {"every", 1, "take every K-th image (the original's protocol: --every 50 on ImageNet val)"},
    {"skip-unreadable", 0, "skip images that cannot be decoded (counted at the end)"},
    {"batch", 1, "images per forward pass (default 32)"},
    {"threads", 1, "worker threads (default 2); results do not depend on it"},
    {"save-logits", 1, "write logits (N, classes) as float32 .npy"},
    {"split", 1, "split point for --save-feature"},
    {"save-feature", 1, "write the features at --split (N, C, H, W) as float32 .npy"},
    {"json", 0, "print one JSON object instead of text"},
    {"help", 0, "show this help"},
};

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int cmd_infer(int argc, char **argv)
{
    cli_opts o;
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "infer", "--model M [options]", NULL);
    if (rc != CLI_GO) return rc;
    long batch, threads;
    if (!cli_get_int(&o, "batch", 32, 1, 4096, &batch) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads))
        return 2;
    if (cli_has(&o, "save-feature") != cli_has(&o, "split")) {
        cli_error("--save-feature and --split go together");
        return 2;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    cwba_error err;
    cwba_error_clear(&err);
    int split = -1, C = 0, H = 0, W = 0;
    if (cli_has(&o, "split")) {
        if (cwba_model_find_split(cm.model, cli_get(&o, "split"), &split, &err)) {
            cli_model_close(&cm);
            return cli_fail_status(&err);
        }
        cwba_model_split_shape(cm.model, split, &C, &H, &W);
    }
    cli_data cd;
    if ((rc = cli_data_open(&o, &cm, &cd))) {
        cli_model_close(&cm);
        return rc;
    }
    int S = cwba_model_input_size(cm.model), K = cwba_model_num_classes(cm.model);
    size_t img = (size_t)3 * S * S, feat = (size_t)C * H * W;
    int N = cd.count;
    float *in = malloc(sizeof(float) * img * (size_t)batch);
    float *logits = malloc(sizeof(float) * (size_t)K * (size_t)N);
    float *feats = NULL;
    int *labels = malloc(sizeof(int) * (size_t)N);
    size_t fbytes = 0;
    if (split >= 0) {
        if (!cwba_size_mul(feat, (size_t)N, &fbytes) || !cwba_size_mul(fbytes, 4, &fbytes) ||
            fbytes > ((size_t)8 << 30)) {
            cli_error("--save-feature: %d features of %zu values exceed 8 GiB; use --limit", N,
                      feat);
            rc = 2;
            goto out;
        }
        feats = malloc(fbytes ? fbytes : 1);
    }
    if (!in || !logits || !labels || (split >= 0 && !feats)) {
        cli_error("out of memory");
        rc = 1;
        goto out;
    }
    cli_progress pr;
    cli_progress_start(&pr, "infer");
    double t0 = cwba_now();
    long correct = 0;
    int labelled = cwba_dataset_has_labels(cd.ds);
    int used = 0; /* images actually run (unreadable ones may be skipped) */
    for (int i = 0; i < N;) {
        int nb = 0;
        while (nb < batch && i < N) {
            int skipped = 0;
            if (cli_data_get(&cd, i, in + img * (size_t)nb, &labels[used + nb], &skipped, &err)) {
                rc = 1;
                goto out;
            }
            i++;
            if (!skipped) nb++;
        }
        if (nb == 0) break;
        if (split >= 0) {
            float *f = feats + feat * (size_t)used;
            if (cwba_model_forward_front(cm.model, split, in, nb, f, &err) ||
                cwba_model_forward_back(cm.model, split, f, nb, logits + (size_t)K * used, &err)) {
                rc = cli_fail_status(&err);
                goto out;
            }
        } else if (cwba_model_forward(cm.model, in, nb, logits + (size_t)K * used, &err)) {
            rc = cli_fail_status(&err);
            goto out;
        }
        for (int j = 0; j < nb; j++)
            if (labelled && argmax(logits + (size_t)K * (used + j), K) == labels[used + j]) correct++;
        used += nb;
        cli_progress_update(&pr, i, N);
    }
    cli_progress_end(&pr);
    cli_data_report_skipped(&cd);
    N = used;
    double secs = (cwba_now() - t0) / (N > 0 ? N : 1);
    if (cli_has(&o, "save-logits")) {
        int64_t shape[2] = {N, K};
        if (cwba_npy_write_f32(cli_get(&o, "save-logits"), logits, 2, shape, &err)) {
            rc = cli_fail_status(&err);
            goto out;
        }
    }
    if (split >= 0) {
        int64_t shape[4] = {N, C, H, W};
        if (cwba_npy_write_f32(cli_get(&o, "save-feature"), feats, 4, shape, &err)) {
            rc = cli_fail_status(&err);
            goto out;
        }
    }
    double top1 = N > 0 ? (double)correct / N : 0.0;
    if (cli_has(&o, "json")) {
        printf("{\"model\":\"%s\",\"weights\":\"%s\",\"images\":%d,", cwba_arch_name(cm.arch),
               cm.weights_path, N);
        if (labelled)
            printf("\"top1\":%.6f,", top1);
        else
            printf("\"top1\":null,");
        printf("\"seconds_per_image\":%.6g,\"conv\":\"%s\",\"threads\":%ld}\n", secs,
               cwba_conv_algo_name(cwba_model_conv_algo(cm.model)), threads);
    } else {
        printf("model %s  weights %s  images %d\n", cwba_arch_name(cm.arch), cm.weights_path, N);
        if (labelled)
            printf("top1 %.4f (%ld/%d)", top1, correct, N);
        else
            printf("top1 n/a (unlabelled data)");
        if (cm.is_reference) printf("   [model card: %.4f on the 10,000 test images]", cm.card.test_top1);
        printf("\nseconds per image %.6f (%ld threads, batch %ld)\n", secs, threads, batch);
    }
out:
    free(in);
    free(logits);
    free(feats);
    free(labels);
    cli_data_close(&cd);
    cli_model_close(&cm);
    return rc;
}
