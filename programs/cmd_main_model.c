/* cwba main_model: the original release's command line, unchanged.
 *   --flag 0: build the interval table -> {csv_path}/{b}/{csv_name}.csv
 *   --flag 1: output MSE for bits 2..7 with tables from ./quant_interval_{net_mode}/{b}.csv
 * --gpuid is accepted and ignored (cwba runs on the CPU). */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static const cli_optdef defs[] = {
    {"gpuid", 1, "accepted for compatibility, ignored"},
    {"flag", 1, "0: calculate the quantization interval table; 1: calculate the mse"},
    {"model", 1, "alexnet | vgg11..vgg19[_bn] | resnet18..resnet152"},
    {"quant_mode", 1, "uniform | log (flag 0 and 1) | dorefa (flag 1)"},
    {"net_mode", 1, "table directory ./quant_interval_{net_mode} (default alexnet|resnet|vgg)"},
    {"reserve_interval", 1, "reserved intervals for online iterative inference (default 0)"},
    {"alpha", 1, "weight of mean priority (default 0.9)"},
    {"beta", 1, "weight of std priority (default 0.1)"},
    {"csv_path", 1, "where flag 0 writes tables (default ./channel_allocation/)"},
    {"csv_name", 1, "table file name for flag 0 (default: the model name)"},
    {"weights", 1, "cwba extension: weights file (default: the reference model)"},
    {"split", 1, "cwba extension: split point (default: the original's for the model)"},
    {"input-size", 1, "cwba extension: input side in pixels"},
    {"data", 1, "cwba extension: dataset (flag 0: fmnist train, flag 1: fmnist test)"},
    {"limit", 1, "cwba extension: images (flag 0 default 100, flag 1 default 1000)"},
    {"every", 1, "cwba extension: take every K-th image (flag 1 default 10)"},
    {"offset", 1, "cwba extension: skip the first K images"},
    {"threads", 1, "cwba extension: worker threads (default 2)"},
    {"help", 0, "show this help"},
};

static const char *default_net_mode(cwba_arch a)
{
    const char *n = cwba_arch_name(a);
    return !strncmp(n, "vgg", 3) ? "vgg" : !strncmp(n, "alexnet", 7) ? "alexnet" : "resnet";
}

int cmd_main_model(int argc, char **argv)
{
    cli_opts o;
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "main_model",
                       "--flag 0|1 --model M --quant_mode Q [options]", NULL);
    if (rc != CLI_GO) return rc;
    long flag, reserve, gpuid, threads;
    double alpha, beta;
    if (!cli_has(&o, "flag")) {
        cli_error("main_model: --flag is required (0: interval table, 1: mse)");
        return 2;
    }
    if (!cli_get_int(&o, "flag", 0, 0, 1, &flag) ||
        !cli_get_int(&o, "reserve_interval", 0, 0, 1L << 20, &reserve) ||
        !cli_get_int(&o, "gpuid", 0, -1, 1 << 20, &gpuid) ||
        !cli_get_double(&o, "alpha", 0.9, &alpha) || !cli_get_double(&o, "beta", 0.1, &beta) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads))
        return 2;
    (void)gpuid;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_quant q;
    if (!cli_has(&o, "quant_mode")) {
        cli_error("main_model: --quant_mode is required (uniform, log or dorefa)");
        return 2;
    }
    if (cwba_quant_parse(cli_get(&o, "quant_mode"), &q, &err)) return cli_fail_status(&err);
    if (flag == 0 && q == CWBA_QUANT_DOREFA) {
        cli_error("main_model: --flag 0 needs --quant_mode uniform or log (DoReFa has no table)");
        return 2;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int split, C, H, W;
    const char *sname = cli_has(&o, "split") ? cli_get(&o, "split") : cli_default_split(cm.arch);
    if (cwba_model_find_split(cm.model, sname, &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_model_split_shape(cm.model, split, &C, &H, &W);
    cli_opts od = o;
    if (flag == 0) {
        if (!cli_has(&o, "data")) cli_set(&od, "data", "fmnist:/usr/share/datasets/fashion-mnist:train");
        if (!cli_has(&o, "limit")) cli_set(&od, "limit", "100");
    } else {
        if (!cli_has(&o, "limit")) cli_set(&od, "limit", "1000");
        if (!cli_has(&o, "every")) cli_set(&od, "every", "10");
    }
    cli_data cd;
    if ((rc = cli_data_open(&od, &cm, &cd))) {
        cli_model_close(&cm);
        return rc;
    }
    char paths[6][4096];
    if (flag == 0) {
        const char *base = cli_has(&o, "csv_path") ? cli_get(&o, "csv_path") : "./channel_allocation/";
        const char *name = cli_has(&o, "csv_name") ? cli_get(&o, "csv_name") : cwba_arch_name(cm.arch);
        size_t nl = strlen(name);
        const char *ext = (nl >= 4 && !strcmp(name + nl - 4, ".csv")) ? "" : ".csv";
        if (strchr(name, '/') || nl == 0) {
            cli_error("--csv_name must be a plain file name");
            rc = 2;
        }
        for (int b = 0; b < 6 && !rc; b++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%d", base, b + 2);
            if ((rc = cli_mkdirs(dir))) break;
            snprintf(paths[b], sizeof paths[b], "%s/%d/%s%s", base, b + 2, name, ext);
        }
        if (!rc) rc = engine_calibrate(cm.model, split, &cd, q, paths, 0, 0);
        if (!rc)
            printf("interval tables written to %s/{2..7}/%s%s; move them to "
                   "./quant_interval_%s/{2..7}.csv for --flag 1\n",
                   base, name, ext, default_net_mode(cm.arch));
    } else {
        long bits[6] = {2, 3, 4, 5, 6, 7};
        cwba_table tables[6];
        memset(tables, 0, sizeof tables);
        const char *nm = cli_has(&o, "net_mode") ? cli_get(&o, "net_mode") : default_net_mode(cm.arch);
        if (q != CWBA_QUANT_DOREFA) {
            for (int b = 0; b < 6; b++)
                snprintf(paths[b], sizeof paths[b], "./quant_interval_%s/%d.csv", nm, b + 2);
            rc = engine_load_tables(paths, bits, 6, C, tables);
        }
        engine_method me = {q, q == CWBA_QUANT_DOREFA ? ALLOC_NONE : ALLOC_CHANNEL, (int)reserve,
                            q == CWBA_QUANT_DOREFA ? "DoReFa quantization" : "Ours", 0, 0, 0};
        engine_result res[6];
        engine_summary sum;
        if (!rc)
            rc = engine_evaluate(cm.model, split, &cd, &me, 1, bits, 6, tables, alpha, beta, 0.9, 0,
                                 res, &sum);
        if (!rc) {
            printf("model %s  split %s  quant_mode %s  reserve_interval %ld  alpha %g  beta %g  "
                   "images %ld\n",
                   cwba_arch_name(cm.arch), sname, cwba_quant_name(q), reserve,
                   alpha, beta, sum.images);
            for (int b = 0; b < 6; b++) {
                double N = res[b].images > 0 ? (double)res[b].images : 1.0;
                printf("bits %d  mse %.5g", b + 2, res[b].mse_sum / N);
                if (sum.labelled > 0) printf("  top1 %.4f", (double)res[b].correct / N);
                printf("  runtime %.5gs\n", res[b].seconds / N);
            }
        }
        engine_free_tables(tables);
    }
    cli_data_close(&cd);
    cli_model_close(&cm);
    return rc;
}
