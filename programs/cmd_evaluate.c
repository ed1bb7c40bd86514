/* cwba evaluate: quantize the features at a split with one method at several
 * bit depths (and reserves) and measure what it costs the back end (--flag 1). */
#include "anchor_eval.h"
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A comma list of finite non-negative numbers (at most cap). */
static int parse_double_list(const char *name, const char *s, double *out, int cap, int *count)
{
    *count = 0;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || !isfinite(v) || v < 0 || (*end && *end != ',') || *count == cap) {
            cli_error("--%s: '%s' is not a comma list of at most %d non-negative numbers", name, s,
                      cap);
            return 0;
        }
        out[(*count)++] = v;
        s = *end ? end + 1 : end;
    }
    if (*count == 0) cli_error("--%s: empty list", name);
    return *count > 0;
}

static const cli_optdef defs[] = {
    CLI_MODEL_OPTIONS,
    {"split", 1, "split point (see cwba layers)"},
    {"quant", 1, "uniform | log | dorefa"},
    {"alloc", 1, "none (n = 2^b-1 everywhere) | channel (needs --table) | rd (rate-distortion: "
                 "needs --lambda or --bytes)"},
    {"lambda", 1, "--alloc rd: Lagrange multipliers, comma list (output MSE per bit per element)"},
    {"bytes", 1, "--alloc rd: target stream sizes in bytes per image, comma list"},
    {"table", 1, "interval table directory from cwba calibrate (DIR/b.csv)"},
    {"bits", 1, "bit depths, comma separated, 2..7 (default 2,3,4,5,6,7)"},
    {"reserve", 1, "reserved intervals for online iterations, comma list (default 0)"},
    CLI_ALLOC_OPTIONS,
    {"data", 1, "fmnist[:DIR[:train|:test]] | imagenet:DIR[:LABELS] | folder:DIR (default: fmnist test)"},
    CLI_SELECT_OPTIONS,
    {"every", 1, "take every K-th image (the original's protocol: --every 50 on ImageNet val)"},
    {"skip-unreadable", 0, "skip images that cannot be decoded (counted at the end)"},
    {"threads", 1, "worker threads (default 2); results do not depend on it"},
    {"fresh-probes", 0, CLI_FRESH_PROBES_HELP},
    {"codec", 1, "standard-codec anchor instead of --quant: jpeg | webp | hevc (docs/anchors.md)"},
    {"quality", 1, "anchor qualities, comma list: JPEG/WebP quality 0..100, HEVC QP 0..51"},
    {"general", 0, "also code the same codes with zstd -19 and xz (LZMA2 -6): a lower anchor"},
    {"json", 0, "JSON Lines output, one object per (bits, reserve) or anchor quality"},
    {"help", 0, "show this help"},
};

int cmd_evaluate(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"split", NULL};
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "evaluate",
                       "--model M --split P --quant Q --alloc none|channel [--table DIR] [options]",
                       req);
    if (rc != CLI_GO) return rc;
    if (cli_has(&o, "codec")) return anchor_evaluate(&o);
    if (!cli_has(&o, "quant")) {
        cli_error("evaluate: --quant is required (or --codec for a standard-codec anchor)");
        return 2;
    }
    if (cli_has(&o, "quality")) {
        cli_error("--quality applies to --codec only");
        return 2;
    }
    cwba_error err;
    cwba_error_clear(&err);
    cwba_quant q;
    if (cwba_quant_parse(cli_get(&o, "quant"), &q, &err)) return cli_fail_status(&err);
    const char *alloc_s = cli_has(&o, "alloc") ? cli_get(&o, "alloc") : "none";
    engine_alloc alloc;
    if (!strcmp(alloc_s, "none"))
        alloc = ALLOC_NONE;
    else if (!strcmp(alloc_s, "channel"))
        alloc = ALLOC_CHANNEL;
    else if (!strcmp(alloc_s, "rd"))
        alloc = ALLOC_RD;
    else {
        cli_error("--alloc: '%s' is not one of none, channel, rd", alloc_s);
        return 2;
    }
    /* --alloc rd: one configuration per lambda or byte target; --bits is
     * then one value, the largest candidate exponent kmax (default 7) */
    double rd_points[16];
    int nrd = 0, rd_bytes = cli_has(&o, "bytes");
    if (alloc == ALLOC_RD) {
        if (q == CWBA_QUANT_DOREFA) {
            cli_error("--alloc rd works with --quant uniform or log, not dorefa");
            return 2;
        }
        if (cli_has(&o, "lambda") == rd_bytes) {
            cli_error("--alloc rd needs exactly one of --lambda and --bytes");
            return 2;
        }
        if (cli_has(&o, "table") || cli_has(&o, "reserve")) {
            cli_error("--alloc rd takes no --table or --reserve (it measures each image)");
            return 2;
        }
        if (!parse_double_list(rd_bytes ? "bytes" : "lambda",
                               cli_get(&o, rd_bytes ? "bytes" : "lambda"), rd_points, 16, &nrd))
            return 2;
        for (int i = 0; rd_bytes && i < nrd; i++)
            if (rd_points[i] < 1 || rd_points[i] > 1e12 || rd_points[i] != floor(rd_points[i])) {
                cli_error("--bytes: %g is not a whole number of bytes in 1..1e12", rd_points[i]);
                return 2;
            }
    } else if (cli_has(&o, "lambda") || cli_has(&o, "bytes")) {
        cli_error("--lambda and --bytes apply to --alloc rd only");
        return 2;
    }
    if (alloc == ALLOC_CHANNEL && q == CWBA_QUANT_DOREFA) {
        cli_error("--alloc channel works with --quant uniform or log, not dorefa");
        return 2;
    }
    if (alloc == ALLOC_CHANNEL && !cli_has(&o, "table")) {
        cli_error("--alloc channel needs --table DIR (made by cwba calibrate)");
        return 2;
    }
    long bits[6], reserves[16], threads;
    int nbits, nres;
    double alpha, beta, clip;
    if (!cli_get_int_list(&o, "bits", alloc == ALLOC_RD ? "7" : "2,3,4,5,6,7",
                          alloc == ALLOC_RD ? 1 : CWBA_BITS_MIN,
                          alloc == ALLOC_RD ? CWBA_RD_KMAX : CWBA_BITS_MAX, bits, 6, &nbits) ||
        !cli_get_int_list(&o, "reserve", "0", 0, 1L << 20, reserves, 16, &nres) ||
        !cli_get_double(&o, "alpha", 0.9, &alpha) || !cli_get_double(&o, "beta", 0.1, &beta) ||
        !cli_get_double(&o, "dorefa-clip", 0.9, &clip) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads))
        return 2;
    if (clip <= 0) {
        cli_error("--dorefa-clip must be positive");
        return 2;
    }
    if (alloc == ALLOC_RD && nbits != 1) {
        cli_error("--alloc rd: --bits is one value, the largest candidate n = 2^bits - 1");
        return 2;
    }
    if (alloc == ALLOC_NONE && cli_has(&o, "reserve")) {
        cli_error("--reserve applies to --alloc channel only");
        return 2;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int split, C, H, W;
    if (cwba_model_find_split(cm.model, cli_get(&o, "split"), &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_model_split_shape(cm.model, split, &C, &H, &W);
    cwba_table tables[6];
    memset(tables, 0, sizeof tables);
    if (alloc == ALLOC_CHANNEL) {
        char paths[6][4096];
        if ((rc = cli_table_paths(cli_get(&o, "table"), paths)) ||
            (rc = engine_load_tables(paths, bits, nbits, C, tables))) {
            cli_model_close(&cm);
            return rc;
        }
    }
    cli_data cd;
    if ((rc = cli_data_open(&o, &cm, &cd))) {
        engine_free_tables(tables);
        cli_model_close(&cm);
        return rc;
    }
    int nm = alloc == ALLOC_CHANNEL ? nres : alloc == ALLOC_RD ? nrd : 1;
    engine_method methods[16];
    char labels[16][40];
    for (int i = 0; i < nm; i++) {
        methods[i].quant = q;
        methods[i].alloc = alloc;
        methods[i].reserve = alloc == ALLOC_CHANNEL ? (int)reserves[i] : 0;
        methods[i].lambda = alloc == ALLOC_RD && !rd_bytes ? rd_points[i] : 0.0;
        methods[i].target_bytes = alloc == ALLOC_RD && rd_bytes ? (long)rd_points[i] : 0;
        if (alloc == ALLOC_RD && rd_bytes)
            snprintf(labels[i], sizeof labels[i], "%s rd %ld B", cwba_quant_name(q),
                     methods[i].target_bytes);
        else if (alloc == ALLOC_RD)
            snprintf(labels[i], sizeof labels[i], "%s rd lambda=%g", cwba_quant_name(q),
                     methods[i].lambda);
        else if (alloc == ALLOC_CHANNEL)
            snprintf(labels[i], sizeof labels[i], "%s channel R=%d", cwba_quant_name(q),
                     methods[i].reserve);
        else
            snprintf(labels[i], sizeof labels[i], "%s w/o allocation", cwba_quant_name(q));
        methods[i].label = labels[i];
        methods[i].general = cli_has(&o, "general");
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
        const char *sname = cwba_model_split_name(cm.model, split);
        if (cli_has(&o, "json"))
            for (int i = 0; i < nm * nbits; i++)
                engine_print_json(stdout, cwba_arch_name(cm.arch), sname, &res[i], &sum);
        else
            engine_print_table(stdout, cwba_arch_name(cm.arch), sname, C, H, W, res, nm, bits,
                               nbits, &sum);
    }
    free(res);
    cli_data_close(&cd);
    engine_free_tables(tables);
    cli_model_close(&cm);
    return rc;
}
