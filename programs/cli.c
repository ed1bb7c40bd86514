/* Option parsing, model/data resolution and progress display for the CLI. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cwba: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail_status(const cwba_error *err)
{
    cli_error("%s", err->msg[0] ? err->msg : cwba_status_name(err->status));
    return 1;
}

static int find_def(const cli_optdef *defs, int ndefs, const char *name, size_t len)
{
    for (int i = 0; i < ndefs; i++)
        if (strlen(defs[i].name) == len && strncmp(defs[i].name, name, len) == 0) return i;
    return -1;
}

int cli_parse(cli_opts *o, const cli_optdef *defs, int ndefs, int argc, char **argv,
              const char *cmd)
{
    memset(o, 0, sizeof *o);
    o->defs = defs;
    o->ndefs = ndefs;
    if (ndefs > CLI_MAX_OPTS) {
        cli_error("internal: too many options for %s", cmd);
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            cli_error("%s: unexpected argument '%s' (options look like --name value; see cwba %s --help)",
                      cmd, a, cmd);
            return 2;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_def(defs, ndefs, name, len);
        if (k < 0) {
            cli_error("%s: unknown option '--%.*s' (see cwba %s --help)", cmd, (int)len, name, cmd);
            return 2;
        }
        if (o->values[k]) {
            cli_error("%s: option --%s given twice", cmd, defs[k].name);
            return 2;
        }
        if (defs[k].takes_value) {
            if (eq) {
                o->values[k] = eq + 1;
            } else {
                if (i + 1 >= argc) {
                    cli_error("%s: option --%s needs a value", cmd, defs[k].name);
                    return 2;
                }
                o->values[k] = argv[++i];
            }
        } else {
            if (eq) {
                cli_error("%s: option --%s takes no value", cmd, defs[k].name);
                return 2;
            }
            o->values[k] = "";
        }
    }
    return 0;
}

int cli_begin(cli_opts *o, const cli_optdef *defs, int ndefs, int argc, char **argv,
              const char *cmd, const char *synopsis, const char *const *required)
{
    int rc = cli_parse(o, defs, ndefs, argc, argv, cmd);
    if (rc) return rc;
    if (cli_has(o, "help")) {
        cli_print_help(cmd, synopsis, defs, ndefs);
        return 0;
    }
    for (int i = 0; required && required[i]; i++)
        if (!cli_has(o, required[i])) {
            cli_error("%s: --%s is required", cmd, required[i]);
            return 2;
        }
    return CLI_GO;
}

const char *cli_get(const cli_opts *o, const char *name)
{
    int k = find_def(o->defs, o->ndefs, name, strlen(name));
    return k < 0 ? NULL : o->values[k];
}

int cli_has(const cli_opts *o, const char *name) { return cli_get(o, name) != NULL; }

void cli_set(cli_opts *o, const char *name, const char *value)
{
    int k = find_def(o->defs, o->ndefs, name, strlen(name));
    if (k >= 0) o->values[k] = value;
}

int cli_table_paths(const char *dir, char paths[6][4096])
{
    for (int b = 0; b < 6; b++)
        if ((size_t)snprintf(paths[b], sizeof paths[b], "%s/%d.csv", dir, b + 2) >= sizeof paths[b]) {
            cli_error("table directory path too long: %s", dir);
            return 2;
        }
    return 0;
}

int cli_get_int(const cli_opts *o, const char *name, long def, long lo, long hi, long *out)
{
    const char *v = cli_get(o, name);
    if (!v) {
        *out = def;
        return 1;
    }
    long x;
    if (!cwba_parse_int(v, &x)) {
        cli_error("--%s: '%s' is not an integer", name, v);
        return 0;
    }
    if (x < lo || x > hi) {
        cli_error("--%s: %ld is out of range [%ld, %ld]", name, x, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

int cli_get_double(const cli_opts *o, const char *name, double def, double *out)
{
    const char *v = cli_get(o, name);
    if (!v) {
        *out = def;
        return 1;
    }
    if (!cwba_parse_double(v, out)) {
        cli_error("--%s: '%s' is not a finite number", name, v);
        return 0;
    }
    return 1;
}

int cli_get_int_list(const cli_opts *o, const char *name, const char *def, long lo, long hi,
                     long *out, int max, int *count)
{
    const char *v = cli_get(o, name);
    if (!v) v = def;
    *count = 0;
    char buf[1024];
    if (strlen(v) >= sizeof buf || !*v) {
        cli_error("--%s: bad list '%s'", name, v);
        return 0;
    }
    strcpy(buf, v);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long x;
        if (!cwba_parse_int(tok, &x)) {
            cli_error("--%s: '%s' is not an integer", name, tok);
            return 0;
        }
        if (x < lo || x > hi) {
            cli_error("--%s: %ld is out of range [%ld, %ld]", name, x, lo, hi);
            return 0;
        }
        for (int j = 0; j < *count; j++)
            if (out[j] == x) {
                cli_error("--%s: %ld listed twice", name, x);
                return 0;
            }
        if (*count >= max) {
            cli_error("--%s: at most %d values", name, max);
            return 0;
        }
        out[(*count)++] = x;
    }
    if (*count == 0) {
        cli_error("--%s: empty list", name);
        return 0;
    }
    return 1;
}

void cli_print_help(const char *cmd, const char *synopsis, const cli_optdef *defs, int ndefs)
{
    printf("usage: cwba %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < ndefs; i++) {
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s", defs[i].name, defs[i].takes_value ? " V" : "");
        printf("  %-22s %s\n", lhs, defs[i].help);
    }
}

/* ------------------------------------------------------------------ models */

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *models_dir(void)
{
    const char *e = getenv("CWBA_MODELS");
    if (e && *e && strlen(e) < 2048) return e;
    static char buf[2048];
    snprintf(buf, sizeof buf, "%s/models", CWBA_SOURCE_DIR);
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
    return "models";
}

int cli_model_open(const cli_opts *o, cli_model *cm)
{
    memset(cm, 0, sizeof *cm);
    cwba_error err;
    cwba_error_clear(&err);
    const char *mname = cli_get(o, "model");
    if (!mname) {
        cli_error("--model is required (alexnet, vgg11..vgg19[_bn], resnet18..resnet152)");
        return 2;
    }
    if (cwba_arch_parse(mname, &cm->arch, &err)) return cli_fail_status(&err);
    const char *wpath = cli_has(o, "weights") ? cli_get(o, "weights") : NULL;
    long input_size = 0;
    unsigned long long synth_seed = 0;
    int synthetic = wpath && !strncmp(wpath, "synthetic:", 10);
    if (synthetic) {
        char *end = NULL;
        errno = 0;
        synth_seed = strtoull(wpath + 10, &end, 10);
        if (errno || end == wpath + 10 || *end || wpath[10] == '-') {
            cli_error("--weights synthetic:SEED needs a decimal seed, got '%s'", wpath);
            return 2;
        }
    }
    if (!wpath) {
        const char *dir = models_dir();
        char card_path[4096];
        snprintf(card_path, sizeof card_path, "%s/%s_fmnist64.json", dir, cwba_arch_name(cm->arch));
        if (!file_exists(card_path)) {
            cli_error("%s has no reference model in %s: give --weights FILE (a torchvision "
                      "checkpoint, e.g. from cwba fetch-weights %s) or --weights synthetic:SEED",
                      cwba_arch_name(cm->arch), dir, cwba_arch_name(cm->arch));
            return 2;
        }
        snprintf(cm->weights_path, sizeof cm->weights_path, "%s/%s_fmnist64.safetensors", dir,
                 cwba_arch_name(cm->arch));
        if (!file_exists(cm->weights_path))
            snprintf(cm->weights_path, sizeof cm->weights_path, "%s/%s_fmnist64.safetensors.xz",
                     dir, cwba_arch_name(cm->arch));
        if (cwba_card_load(card_path, &cm->card, &err)) return cli_fail_status(&err);
        cm->is_reference = 1;
        if (cwba_card_verify(&cm->card, cm->weights_path, &err)) {
            cli_fail_status(&err);
            cwba_card_free(&cm->card);
            return 1;
        }
        input_size = cm->card.input_size;
    } else {
        snprintf(cm->weights_path, sizeof cm->weights_path, "%s", wpath);
        input_size = 224;
    }
    if (cli_has(o, "input-size") &&
        !cli_get_int(o, "input-size", input_size, 16, 4096, &input_size)) {
        cli_model_close(cm);
        return 2;
    }
    cwba_weights *w = NULL;
    if (synthetic ? cwba_weights_synthetic(cm->arch, 1000, synth_seed, &w, &err)
                  : cwba_weights_load(cm->weights_path, &w, &err)) {
        cli_model_close(cm);
        return cli_fail_status(&err);
    }
    cwba_status st = cwba_model_create(cm->arch, w, (int)input_size, &cm->model, &err);
    cwba_weights_free(w);
    cwba_conv_algo algo = CWBA_CONV_DIRECT;
    if (!st && cli_has(o, "conv")) st = cwba_conv_algo_parse(cli_get(o, "conv"), &algo, &err);
    if (!st) st = cwba_model_set_conv_algo(cm->model, algo, &err);
    if (st) {
        cli_model_close(cm);
        return cli_fail_status(&err);
    }
    return 0;
}

void cli_model_close(cli_model *cm)
{
    cwba_model_free(cm->model);
    cm->model = NULL;
    if (cm->is_reference) cwba_card_free(&cm->card);
    cm->is_reference = 0;
}

/* -------------------------------------------------------------------- data */

int cli_data_open(const cli_opts *o, const cli_model *cm, cli_data *cd)
{
    memset(cd, 0, sizeof *cd);
    cwba_error err;
    cwba_error_clear(&err);
    const char *spec = cli_has(o, "data") ? cli_get(o, "data") : "fmnist";
    int size = cwba_model_input_size(cm->model);
    cwba_preprocess pp;
    if (!strncmp(spec, "imagenet:", 9) || !strncmp(spec, "folder:", 7)) {
        /* torchvision's evaluation transform, scaled to the model's input:
         * Resize(256) + CenterCrop(224) at 224. */
        pp = cwba_preprocess_imagenet();
        pp.resize = (int)((long)size * 256 / 224);
        pp.size = size;
    } else {
        pp = cwba_preprocess_fmnist();
        pp.size = size;
    }
    cwba_dataset_options dopt = {0, cli_has(o, "skip-unreadable")};
    if (cwba_dataset_open_ex(spec, &pp, &dopt, &cd->ds, &err)) return cli_fail_status(&err);
    int total = cwba_dataset_count(cd->ds);
    long offset, limit, every;
    if (!cli_get_int(o, "offset", 0, 0, 1L << 30, &offset) ||
        !cli_get_int(o, "limit", 0, 0, 1L << 30, &limit) ||
        !cli_get_int(o, "every", 1, 1, 1L << 30, &every)) {
        cli_data_close(cd);
        return 2;
    }
    if (offset >= total) {
        cli_error("--offset %ld: the dataset has only %d images", offset, total);
        cli_data_close(cd);
        return 2;
    }
    long avail = (total - offset + every - 1) / every;
    cd->first = (int)offset;
    cd->every = (int)every;
    cd->count = (int)((limit > 0 && limit < avail) ? limit : avail);
    return 0;
}

int cli_data_get(const cli_data *cd, int i, float *out, int *label, int *skipped, cwba_error *err)
{
    int sk = 0;
    cwba_status st = cwba_dataset_get_or_skip(cd->ds, cli_data_index(cd, i), out, label, &sk, err);
    if (skipped) *skipped = sk;
    if (st) return cli_fail_status(err);
    return 0;
}

void cli_data_report_skipped(const cli_data *cd)
{
    int n = cwba_dataset_skipped(cd->ds);
    if (n > 0) fprintf(stderr, "cwba: skipped %d unreadable image%s\n", n, n == 1 ? "" : "s");
}

void cli_data_close(cli_data *cd)
{
    cwba_dataset_free(cd->ds);
    cd->ds = NULL;
}

int cli_data_index(const cli_data *cd, int i) { return cd->first + i * cd->every; }

/* ----------------------------------------------------------------- backend */

static cwba_status backend_run(void *ctx, const float *feat, int batch, float *logits,
                               cwba_error *err)
{
    cli_backend_ctx *c = ctx;
    return cwba_model_forward_back(c->model, c->split, feat, batch, logits, err);
}

void cli_backend_init(cwba_backend *be, cli_backend_ctx *ctx, cwba_model *m, int split)
{
    ctx->model = m;
    ctx->split = split;
    memset(be, 0, sizeof *be);
    cwba_model_split_shape(m, split, &be->C, &be->H, &be->W);
    be->K = cwba_model_num_classes(m);
    be->max_batch = 64;
    be->run = backend_run;
    be->ctx = ctx;
}

/* ---------------------------------------------------------------- progress */

void cli_progress_start(cli_progress *p, const char *what)
{
    p->enabled = isatty(STDERR_FILENO);
    p->start = p->last = cwba_now();
    p->what = what;
}

void cli_progress_update(cli_progress *p, long done, long total)
{
    if (!p->enabled) return;
    double now = cwba_now();
    if (now - p->last < 0.2 && done < total) return;
    p->last = now;
    double el = now - p->start;
    double eta = done > 0 ? el / (double)done * (double)(total - done) : 0.0;
    fprintf(stderr, "\r%s: %ld/%ld  %.1fs elapsed, ~%.0fs left   ", p->what, done, total, el, eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->enabled) fprintf(stderr, "\r\033[K");
}
