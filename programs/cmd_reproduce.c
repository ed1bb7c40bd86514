/* cwba reproduce: the original release's experiment on one split, end to end:
 * calibrate the interval table on training images, then evaluate every method
 * on test images and print the original's table (rows: methods, columns: bits)
 * with accuracy beside the output MSE. Resumable: an existing table is reused. */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static const cli_optdef defs[] = {
    {"model", 1, "alexnet | vgg11..vgg19[_bn] | resnet18..resnet152 (default resnet18)"},
    {"weights", 1, "weights file (default: the reference model in models/)"},
    {"input-size", 1, "square input side in pixels (default: the model card's, else 224)"},
    {"split", 1, "split point (default: the original's: resnet18 layer3, alexnet features.5, "
                 "vgg16 features.30, vgg11 features.20, resnet50 layer1)"},
    {"quant", 1, "uniform | log for the channel-wise rows (default uniform)"},
    {"table", 1, "table directory (default runs/<model>-<split>-<quant>)"},
    {"calib-data", 1, "calibration images (default fmnist train set)"},
    {"calib-images", 1, "calibration images used (default 6; experiments/ uses 16)"},
    {"data", 1, "evaluation images (default fmnist test set)"},
    {"limit", 1, "evaluation images used (default 100)"},
    {"every", 1, "take every K-th evaluation image (default 100)"},
    {"offset", 1, "skip the first K evaluation images"},
    {"reserve", 1, "reserves for the channel-wise rows (default 0,10,40)"},
    {"fresh-probes", 0, CLI_FRESH_PROBES_HELP},
    {"bits", 1, "bit depths (default 2,3,4,5,6,7)"},
    CLI_ALLOC_OPTIONS,
    {"threads", 1, "worker threads (default 2)"},
    {"json", 0, "JSON Lines instead of the table"},
    {"help", 0, "show this help"},
};

const char *cli_default_split(cwba_arch a)
{
    /* The original's positions: AlexNet features.5, VGG after the last
     * convolution block (its last max-pool: VGG16 features.30, the
     * original's "13th"), ResNet50 layer1, the other ResNets layer3. */
    static const struct { cwba_arch a; const char *split; } k[] = {
        {CWBA_ARCH_ALEXNET, "features.5"},   {CWBA_ARCH_VGG11, "features.20"},
        {CWBA_ARCH_VGG11_BN, "features.28"}, {CWBA_ARCH_VGG13, "features.24"},
        {CWBA_ARCH_VGG13_BN, "features.34"}, {CWBA_ARCH_VGG16, "features.30"},
        {CWBA_ARCH_VGG16_BN, "features.43"}, {CWBA_ARCH_VGG19, "features.36"},
        {CWBA_ARCH_VGG19_BN, "features.52"}, {CWBA_ARCH_RESNET50, "layer1"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (k[i].a == a) return k[i].split;
    return "layer3";
}

int cmd_reproduce(int argc, char **argv)
{
    cli_opts o;
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "reproduce", "[options]", NULL);
    if (rc != CLI_GO) return rc;
    if (!cli_has(&o, "model")) cli_set(&o, "model", "resnet18");
    cwba_error err;
    cwba_error_clear(&err);
    cwba_quant q = CWBA_QUANT_UNIFORM;
    if (cli_has(&o, "quant") && cwba_quant_parse(cli_get(&o, "quant"), &q, &err))
        return cli_fail_status(&err);
    if (q == CWBA_QUANT_DOREFA) {
        cli_error("--quant must be uniform or log");
        return 2;
    }
    long bits[6], reserves[12], threads, calib_n;
    int nbits, nres;
    double alpha, beta, clip;
    if (!cli_get_int_list(&o, "bits", "2,3,4,5,6,7", CWBA_BITS_MIN, CWBA_BITS_MAX, bits, 6, &nbits) ||
        !cli_get_int_list(&o, "reserve", "0,10,40", 0, 1L << 20, reserves, 12, &nres) ||
        !cli_get_double(&o, "alpha", 0.9, &alpha) || !cli_get_double(&o, "beta", 0.1, &beta) ||
        !cli_get_double(&o, "dorefa-clip", 0.9, &clip) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads) ||
        !cli_get_int(&o, "calib-images", 6, 1, 1L << 20, &calib_n))
        return 2;
    if (clip <= 0) {
        cli_error("--dorefa-clip must be positive");
        return 2;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    const char *sname = cli_has(&o, "split") ? cli_get(&o, "split") : cli_default_split(cm.arch);
    int split, C, H, W;
    if (cwba_model_find_split(cm.model, sname, &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_model_split_shape(cm.model, split, &C, &H, &W);
    char dir[2048];
    if (cli_has(&o, "table"))
        snprintf(dir, sizeof dir, "%s", cli_get(&o, "table"));
    else
        snprintf(dir, sizeof dir, "runs/%s-%s-%s", cwba_arch_name(cm.arch), sname,
                 cwba_quant_name(q));
    char paths[6][4096];
    if ((rc = cli_table_paths(dir, paths))) {
        cli_model_close(&cm);
        return rc;
    }

    /* 1. calibration on training images (resumes an existing table) */
    cli_opts oc = o;
    char climit[32];
    snprintf(climit, sizeof climit, "%ld", calib_n);
    cli_set(&oc, "data", cli_has(&o, "calib-data") ? cli_get(&o, "calib-data")
                                                   : "fmnist:/usr/share/datasets/fashion-mnist:train");
    cli_set(&oc, "limit", climit);
    cli_set(&oc, "every", NULL);
    cli_set(&oc, "offset", NULL);
    cli_data cd;
    if ((rc = cli_data_open(&oc, &cm, &cd))) {
        cli_model_close(&cm);
        return rc;
    }
    double t0 = cwba_now();
    if (!(rc = cli_mkdirs(dir))) rc = engine_calibrate(cm.model, split, &cd, q, paths, 0, 0);
    cli_data_close(&cd);
    double t_cal = cwba_now() - t0;
    if (rc) {
        cli_model_close(&cm);
        return rc;
    }
    cwba_table tables[6];
    if ((rc = engine_load_tables(paths, bits, nbits, C, tables))) {
        cli_model_close(&cm);
        return rc;
    }
    if (tables[bits[0] - 2].rows != calib_n) {
        cli_error("%s has %d rows but --calib-images is %ld; remove the directory or pass "
                  "--table elsewhere",
                  paths[bits[0] - 2], tables[bits[0] - 2].rows, calib_n);
        engine_free_tables(tables);
        cli_model_close(&cm);
        return 2;
    }

    /* 2. evaluation of every method on test images */
    cli_opts oe = o;
    if (!cli_has(&o, "limit")) cli_set(&oe, "limit", "100");
    if (!cli_has(&o, "every")) cli_set(&oe, "every", "100");
    if ((rc = cli_data_open(&oe, &cm, &cd))) {
        engine_free_tables(tables);
        cli_model_close(&cm);
        return rc;
    }
    engine_method methods[16];
    char labels[16][40];
    int nm = 0;
    methods[nm++] = (engine_method){CWBA_QUANT_UNIFORM, ALLOC_NONE, 0, "Uniform w/o BitAlloc", 0, 0, 0};
    methods[nm++] = (engine_method){CWBA_QUANT_LOG, ALLOC_NONE, 0, "Log w/o BitAlloc", 0, 0, 0};
    methods[nm++] = (engine_method){CWBA_QUANT_DOREFA, ALLOC_NONE, 0, "DoReFa quantization", 0, 0, 0};
    for (int i = 0; i < nres; i++) {
        snprintf(labels[i], sizeof labels[i], "Ours(%ld iter)%s", reserves[i],
                 q == CWBA_QUANT_LOG ? " log" : "");
        methods[nm++] = (engine_method){q, ALLOC_CHANNEL, (int)reserves[i], labels[i], 0, 0, 0};
    }
    engine_result *res = calloc((size_t)nm * nbits, sizeof *res);
    engine_summary sum;
    if (!res) {
        cli_error("out of memory");
        rc = 1;
    } else {
        rc = engine_evaluate(cm.model, split, &cd, methods, nm, bits, nbits, tables, alpha, beta,
                             clip, cli_has(&o, "fresh-probes"), res, &sum);
    }
    if (rc == 0) {
        const char *sn = cwba_model_split_name(cm.model, split);
        if (cli_has(&o, "json")) {
            for (int i = 0; i < nm * nbits; i++)
                engine_print_json(stdout, cwba_arch_name(cm.arch), sn, &res[i], &sum);
        } else {
            printf("calibration: %ld training images, %.1f s (table %s)\n", calib_n, t_cal, dir);
            printf("evaluation: %.1f s\n\n", sum.seconds_total);
            engine_print_table(stdout, cwba_arch_name(cm.arch), sn, C, H, W, res, nm, bits, nbits,
                               &sum);
            printf("s/image: allocation (online iterations included) + quantization + one back-end "
                   "pass, %ld threads%s.\n",
                   threads, cli_has(&o, "fresh-probes")
                                ? "; each row computed on its own (--fresh-probes)"
                                : "; the rows of an image share probe errors, so their passes and "
                                  "times are incremental (--fresh-probes: each on its own)");
        }
    }
    free(res);
    cli_data_close(&cd);
    engine_free_tables(tables);
    cli_model_close(&cm);
    return rc;
}
