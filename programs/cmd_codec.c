/* cwba encode (the edge: image -> front end -> allocation -> quantization ->
 * one bitstream file per image) and cwba decode (the cloud: bitstream ->
 * dequantized feature -> back end -> top-5 classes). docs/bitstream.md
 * defines the format. */
#include "engine.h"

#include "cloud.h"
#include "post.h"
#include "cwba/codec.h"

#include <stdlib.h>
#include <string.h>

static const cli_optdef enc_defs[] = {
    CLI_MODEL_OPTIONS,
    {"split", 1, "split point (see cwba layers)"},
    {"quant", 1, "uniform | log | dorefa"},
    {"alloc", 1, "none | channel (needs --table)"},
    {"table", 1, "interval table directory (cwba calibrate)"},
    {"bits", 1, "bit depth 2..7"},
    {"reserve", 1, "reserved intervals for online iterations (default 0)"},
    CLI_ALLOC_OPTIONS,
    {"mode", 1, "payload coding: fixed | adaptive | auto (default auto: the smaller)"},
    {"data", 1, "images (default: fmnist test set)"},
    CLI_SELECT_OPTIONS,
    {"every", 1, "take every K-th image"},
    {"out", 1, "output directory: one <index>.cwb per image"},
    {"post", 1, "send each stream to a cwba serve URL (.../v1/decode), print the answers"},
    {"token-file", 1, "--post: bearer token file"},
    {"cacert", 1, "--post: CA certificate (PEM) to verify an https server with"},
    {"retries", 1, "--post: attempts after a 503 or a connection error (default 5)"},
    {"threads", 1, "worker threads (default 2)"},
    {"help", 0, "show this help"},
};

int cmd_encode(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"split", "quant", "bits", NULL};
    int rc = cli_begin(&o, enc_defs, CLI_NDEFS(enc_defs), argc, argv, "encode",
                       "--model M --split P --quant Q --bits B --out DIR|--post URL [options]",
                       req);
    if (rc != CLI_GO) return rc;
    const char *out_dir = cli_get(&o, "out"), *post_url = cli_get(&o, "post");
    if (!out_dir && !post_url) {
        cli_error("encode: give --out DIR, --post URL or both");
        return 2;
    }
    cwba_error err;
    cwba_error_clear(&err);
    cwba_quant q;
    cwba_stream_mode mode = CWBA_STREAM_AUTO;
    if (cwba_quant_parse(cli_get(&o, "quant"), &q, &err)) return cli_fail_status(&err);
    if (cli_has(&o, "mode") && cwba_stream_mode_parse(cli_get(&o, "mode"), &mode, &err))
        return cli_fail_status(&err);
    const char *alloc_s = cli_has(&o, "alloc") ? cli_get(&o, "alloc") : "none";
    int channel = !strcmp(alloc_s, "channel");
    if (!channel && strcmp(alloc_s, "none")) {
        cli_error("--alloc: '%s' is not one of none, channel", alloc_s);
        return 2;
    }
    if (channel && (q == CWBA_QUANT_DOREFA || !cli_has(&o, "table"))) {
        cli_error("--alloc channel needs --quant uniform|log and --table DIR");
        return 2;
    }
    long bits, reserve, threads, retries;
    double alpha, beta, clip;
    if (!cli_get_int(&o, "bits", 0, CWBA_BITS_MIN, CWBA_BITS_MAX, &bits) ||
        !cli_get_int(&o, "reserve", 0, 0, 1L << 20, &reserve) ||
        !cli_get_double(&o, "alpha", 0.9, &alpha) || !cli_get_double(&o, "beta", 0.1, &beta) ||
        !cli_get_double(&o, "dorefa-clip", 0.9, &clip) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads) ||
        !cli_get_int(&o, "retries", 5, 0, 100, &retries))
        return 2;
    if (clip <= 0) {
        cli_error("--dorefa-clip must be positive");
        return 2;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int split;
    if (cwba_model_find_split(cm.model, cli_get(&o, "split"), &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_backend be;
    cli_backend_ctx bctx;
    cli_backend_init(&be, &bctx, cm.model, split);
    int C = be.C, HW = be.H * be.W, S = cwba_model_input_size(cm.model);
    size_t feat = (size_t)C * HW;
    cwba_table tables[6];
    memset(tables, 0, sizeof tables);
    if (channel) {
        char paths[6][4096];
        if ((rc = cli_table_paths(cli_get(&o, "table"), paths)) ||
            (rc = engine_load_tables(paths, &bits, 1, C, tables))) {
            cli_model_close(&cm);
            return rc;
        }
    }
    cli_data cd;
    post_client *pc = NULL;
    if ((rc = cli_data_open(&o, &cm, &cd)) || (out_dir && (rc = cli_mkdirs(out_dir))) ||
        (post_url && (rc = post_client_open(post_url, cli_get(&o, "token-file"),
                                            cli_get(&o, "cacert"), (int)retries, &pc)))) {
        cli_data_close(&cd);
        engine_free_tables(tables);
        cli_model_close(&cm);
        return rc;
    }
    cwba_stream_info si;
    memset(&si, 0, sizeof si);
    snprintf(si.model, sizeof si.model, "%s", cwba_arch_name(cm.arch));
    snprintf(si.split, sizeof si.split, "%s", cwba_model_split_name(cm.model, split));
    si.C = C;
    si.H = be.H;
    si.W = be.W;
    si.quant = q;
    si.bits = (int)bits;
    si.clip = (float)clip;
    si.mode = mode;
    size_t cap = feat * 48 + 65536;
    float *in = malloc(sizeof(float) * 3 * (size_t)S * S), *x = malloc(sizeof(float) * feat);
    float *y0 = malloc(sizeof(float) * (size_t)be.K);
    int *n = malloc(sizeof(int) * (size_t)C);
    uint8_t *buf = malloc(cap);
    if (!in || !x || !y0 || !n || !buf) {
        cli_error("out of memory");
        rc = 1;
    }
    double total_bytes = 0;
    int written = 0;
    for (int i = 0; i < cd.count && !rc; i++) {
        int skipped = 0;
        if (cli_data_get(&cd, i, in, NULL, &skipped, &err)) {
            rc = 1;
            break;
        }
        if (skipped) continue;
        if (cwba_model_forward_front(cm.model, split, in, 1, x, &err)) {
            rc = cli_fail_status(&err);
            break;
        }
        if (channel) {
            cwba_eval_params p = {q, (int)bits, (int)reserve, alpha, beta};
            if ((reserve > 0 && cwba_model_forward_back(cm.model, split, x, 1, y0, &err)) ||
                cwba_evaluate_image(&be, NULL, &tables[bits - 2], &p, x, reserve > 0 ? y0 : NULL,
                                    n, NULL, NULL, NULL, &err)) {
                rc = cli_fail_status(&err);
                break;
            }
        } else {
            for (int c = 0; c < C; c++) n[c] = (1 << bits) - 1;
        }
        size_t len = 0;
        cwba_stream_stats st;
        char path[4200];
        if (out_dir)
            snprintf(path, sizeof path, "%s/%06d.cwb", out_dir, cli_data_index(&cd, i));
        else
            snprintf(path, sizeof path, "image %d", cli_data_index(&cd, i));
        if (cwba_stream_encode_feature(&si, x, q == CWBA_QUANT_DOREFA ? NULL : n, buf, cap, &len,
                                       NULL, &st, &err) ||
            (out_dir && cwba_write_file_atomic(path, buf, len, &err))) {
            rc = cli_fail_status(&err);
            break;
        }
        if (pc && (rc = post_client_send(pc, buf, len, path, stdout))) break;
        total_bytes += (double)len;
        written++;
    }
    if (!rc) {
        cli_data_report_skipped(&cd);
        /* with --post, stdout holds the answers (JSON Lines) */
        fprintf(pc ? stderr : stdout,
                "encoded %d images %s %s: %.1f bytes/image, %.4f bits/element, %.5f bits/input "
                "pixel (%s payload)\n",
                written, out_dir ? "into" : "for", out_dir ? out_dir : post_url,
                written ? total_bytes / written : 0.0,
                written ? total_bytes * 8 / written / (double)feat : 0.0,
                written ? total_bytes * 8 / written / ((double)S * S) : 0.0,
                cwba_stream_mode_name(mode));
    }
    free(in), free(x), free(y0), free(n), free(buf);
    post_client_close(pc);
    cli_data_close(&cd);
    engine_free_tables(tables);
    cli_model_close(&cm);
    return rc;
}

static const cli_optdef dec_defs[] = {
    {"model", 1, "alexnet | vgg11..vgg19[_bn] | resnet18..resnet152 (must match the stream)"},
    {"weights", 1, "weights file (default: the reference model in models/)"},
    {"input-size", 1, "square input side in pixels"},
    {"save-logits", 1, "write the logits (files, classes) as float32 .npy"},
    {"save-feature", 1, "write the decoded features (files, C, H, W) as float32 .npy"},
    {"json", 0, "JSON Lines output"},
    {"threads", 1, "worker threads (default 2)"},
    {"help", 0, "show this help"},
};

static int cmd_decode_files(const cli_opts *op, int nd, char **files, int nfiles);

int cmd_decode(int argc, char **argv)
{
    /* options (anywhere) and bitstream files */
    char **optv = malloc(sizeof(char *) * (size_t)(argc + 1));
    char **files = malloc(sizeof(char *) * (size_t)(argc + 1));
    int nopt = 0, nfiles = 0;
    if (!optv || !files) {
        free(optv), free(files);
        cli_error("out of memory");
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            files[nfiles++] = argv[i];
            continue;
        }
        optv[nopt++] = argv[i];
        const char *a = argv[i] + 2;
        for (size_t k = 0; k < sizeof dec_defs / sizeof dec_defs[0]; k++)
            if (!strcmp(a, dec_defs[k].name) && dec_defs[k].takes_value && i + 1 < argc)
                optv[nopt++] = argv[++i];
    }
    cli_opts o;
    int nd = (int)(sizeof dec_defs / sizeof dec_defs[0]);
    int rc = cli_parse(&o, dec_defs, nd, nopt, optv, "decode");
    int r = rc ? rc : cmd_decode_files(&o, nd, files, nfiles);
    free(optv);
    free(files);
    return r;
}

static int cmd_decode_files(const cli_opts *op, int nd, char **files, int nfiles)
{
    int rc = 0;
    cli_opts o = *op;
    if (cli_has(&o, "help")) {
        cli_print_help("decode", "--model M [options] FILE.cwb...", dec_defs, nd);
        return 0;
    }
    if (nfiles <= 0) {
        cli_error("decode: give one or more bitstream files");
        return 2;
    }
    long threads;
    if (!cli_get_int(&o, "threads", 2, 1, 256, &threads)) return 2;
    cwba_set_threads((int)threads);
    cwba_error err;
    cwba_error_clear(&err);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int K = cwba_model_num_classes(cm.model);
    float *all_logits = malloc(sizeof(float) * (size_t)K * (size_t)nfiles);
    float *all_feats = NULL;
    size_t feat0 = 0;
    int split0 = -1;
    if (!all_logits) {
        cli_error("out of memory");
        cli_model_close(&cm);
        return 1;
    }
    for (int f = 0; f < nfiles && !rc; f++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        cwba_stream_info si;
        int split, C, H, W;
        float *xhat = NULL;
        if (cwba_file_read_all(files[f], (size_t)1 << 31, &buf, &len, &err)) {
            rc = cli_fail_status(&err);
            free(buf);
            break;
        }
        if (cloud_decode_feature(cm.model, cm.arch, buf, len, -1, &si, &split, &xhat, &err)) {
            cli_error("%s: %s", files[f], err.msg);
            rc = 1;
            free(buf);
            break;
        }
        cwba_model_split_shape(cm.model, split, &C, &H, &W);
        size_t feat = (size_t)C * H * W;
        if (cli_has(&o, "save-feature")) {
            if (split0 >= 0 && split0 != split) {
                cli_error("--save-feature: the streams come from different split points");
                rc = 2;
                free(buf), free(xhat);
                break;
            }
            if (!all_feats) {
                size_t bytes;
                if (!cwba_size_mul(feat, (size_t)nfiles * sizeof(float), &bytes) ||
                    !(all_feats = malloc(bytes))) {
                    cli_error("out of memory for --save-feature");
                    rc = 1;
                    free(buf), free(xhat);
                    break;
                }
            }
            split0 = split;
            feat0 = feat;
        }
        float *lg = all_logits + (size_t)K * f;
        if (cwba_model_forward_back(cm.model, split, xhat, 1, lg, &err)) {
            cli_error("%s: %s", files[f], err.msg);
            rc = 1;
        } else {
            if (all_feats) memcpy(all_feats + feat * (size_t)f, xhat, sizeof(float) * feat);
            int top[5], nt = cloud_top5(lg, K, top);
            if (cli_has(&o, "json")) {
                char line[16384];
                if (cloud_result_json(line, sizeof line, files[f], &si, len, lg, K) < 0) {
                    cli_error("%s: file name too long for --json", files[f]);
                    rc = 1;
                } else {
                    printf("%s\n", line);
                }
            } else {
                printf("%s: %s %s %dx%dx%d, %zu bytes, top-5:", files[f], si.model, si.split, C, H,
                       W, len);
                for (int t = 0; t < nt; t++) printf(" %d (%.4f)", top[t], lg[top[t]]);
                printf("\n");
            }
        }
        free(xhat);
        free(buf);
    }
    if (!rc && cli_has(&o, "save-logits")) {
        int64_t shape[2] = {nfiles, K};
        if (cwba_npy_write_f32(cli_get(&o, "save-logits"), all_logits, 2, shape, &err))
            rc = cli_fail_status(&err);
    }
    if (!rc && all_feats) {
        int C, H, W;
        cwba_model_split_shape(cm.model, split0, &C, &H, &W);
        int64_t shape[4] = {nfiles, C, H, W};
        (void)feat0;
        if (cwba_npy_write_f32(cli_get(&o, "save-feature"), all_feats, 4, shape, &err))
            rc = cli_fail_status(&err);
    }
    free(all_logits);
    free(all_feats);
    cli_model_close(&cm);
    return rc;
}
