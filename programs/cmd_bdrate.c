/* cwba bdrate: Bjøntegaard delta rates of every method's rate-distortion
 * curve against one or more anchors, from an rd-points table
 * (config,method,point,images,bytes_per_image,bits_per_element,mse,top1)
 * to a bdrate table (config,method,anchor,metric,bd_rate_percent). */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const cli_optdef defs[] = {
    {"points", 1, "rd-points CSV (config,method,point,images,bytes_per_image,bits_per_element,mse,top1)"},
    {"anchor", 1, "anchor method(s), comma separated (e.g. jpeg or jpeg,webp,hevc)"},
    {"out", 1, "output CSV (config,method,anchor,metric,bd_rate_percent); default stdout"},
    {"fit", 1, "cubic (the classic Bjøntegaard fit, default) | pchip (piecewise cubic)"},
    {"help", 0, "show this help"},
};

#define NAME_MAX_LEN 64
#define MAX_CURVES 1024
#define MAX_ANCHORS 8

typedef struct rd_curve {
    char config[NAME_MAX_LEN], method[NAME_MAX_LEN];
    int n;
    char point[CWBA_BD_MAX_POINTS][NAME_MAX_LEN];
    double rate[CWBA_BD_MAX_POINTS], psnr[CWBA_BD_MAX_POINTS], top1[CWBA_BD_MAX_POINTS];
} rd_curve;

static const char HEADER[] = "config,method,point,images,bytes_per_image,bits_per_element,mse,top1";

/* Splits line (modified in place) at commas into exactly n fields. */
static int split_fields(char *line, char **f, int n)
{
    int k = 0;
    for (char *p = line;; p++) {
        if (k < n) f[k] = p;
        k++;
        p = strchr(p, ',');
        if (!p) break;
        *p = 0;
    }
    return k == n;
}

static int name_ok(const char *s)
{
    size_t L = strlen(s);
    if (L == 0 || L >= NAME_MAX_LEN) return 0;
    for (size_t i = 0; i < L; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e || s[i] == '"') return 0;
    return 1;
}

static rd_curve *find_curve(rd_curve *cv, int nc, const char *config, const char *method)
{
    for (int i = 0; i < nc; i++)
        if (!strcmp(cv[i].config, config) && !strcmp(cv[i].method, method)) return &cv[i];
    return NULL;
}

/* Reads the rd-points table; prints one error line and returns non-zero on
 * any malformed row. */
static int read_points(const char *path, rd_curve *cv, int *nc)
{
    cwba_error err;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (cwba_file_read_all(path, 64u << 20, &buf, &len, &err)) return cli_fail_status(&err);
    char *text = malloc(len + 1);
    if (!text) {
        free(buf);
        cli_error("out of memory");
        return 1;
    }
    memcpy(text, buf, len);
    text[len] = 0;
    free(buf);
    int rc = 0, lineno = 0;
    *nc = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t L = strlen(line);
        if (L && line[L - 1] == '\r') line[--L] = 0;
        if (lineno == 1) {
            if (strcmp(line, HEADER)) {
                cli_error("%s: the header must be '%s'", path, HEADER);
                rc = 2;
            }
            continue;
        }
        if (L == 0) continue;
        char *f[8];
        long images;
        double rate, bpe, mse, top1 = NAN;
        if (!split_fields(line, f, 8)) {
            cli_error("%s:%d: expected 8 comma-separated fields", path, lineno);
            rc = 2;
            break;
        }
        if (!name_ok(f[0]) || !name_ok(f[1]) || !name_ok(f[2])) {
            cli_error("%s:%d: config, method and point must be 1-%d printable characters", path,
                      lineno, NAME_MAX_LEN - 1);
            rc = 2;
            break;
        }
        int top1_missing = !strcmp(f[7], "") || !strcmp(f[7], "NA");
        if (!cwba_parse_int(f[3], &images) || images < 1 || !cwba_parse_double(f[4], &rate) ||
            !(rate > 0) || !cwba_parse_double(f[5], &bpe) || !(bpe > 0) ||
            !cwba_parse_double(f[6], &mse) || !(mse > 0) ||
            (!top1_missing && (!cwba_parse_double(f[7], &top1) || top1 < 0 || top1 > 1))) {
            cli_error("%s:%d: images must be a positive integer, bytes_per_image, "
                      "bits_per_element and mse positive numbers, top1 in [0, 1] or NA",
                      path, lineno);
            rc = 2;
            break;
        }
        rd_curve *c = find_curve(cv, *nc, f[0], f[1]);
        if (!c) {
            if (*nc == MAX_CURVES) {
                cli_error("%s: more than %d curves", path, MAX_CURVES);
                rc = 2;
                break;
            }
            c = &cv[(*nc)++];
            memset(c, 0, sizeof *c);
            snprintf(c->config, sizeof c->config, "%s", f[0]);
            snprintf(c->method, sizeof c->method, "%s", f[1]);
        }
        for (int i = 0; i < c->n && !rc; i++)
            if (!strcmp(c->point[i], f[2])) {
                cli_error("%s:%d: point %s of %s %s listed twice", path, lineno, f[2], f[0], f[1]);
                rc = 2;
            }
        if (rc) break;
        if (c->n == CWBA_BD_MAX_POINTS) {
            cli_error("%s:%d: more than %d points in %s %s", path, lineno, CWBA_BD_MAX_POINTS,
                      f[0], f[1]);
            rc = 2;
            break;
        }
        snprintf(c->point[c->n], NAME_MAX_LEN, "%s", f[2]);
        c->rate[c->n] = rate;
        c->psnr[c->n] = 10.0 * log10(1.0 / mse);
        c->top1[c->n] = top1;
        c->n++;
    }
    if (!rc && lineno == 0) {
        cli_error("%s: empty file (expected the header '%s')", path, HEADER);
        rc = 2;
    }
    free(text);
    return rc;
}

/* The output table, built in memory and written in one piece. */
typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

static int out_add(out_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int out_add(out_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        cli_error("internal: output row too long");
        return 1;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 4096;
        char *q = realloc(b->p, cap);
        if (!q) {
            cli_error("out of memory");
            return 1;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, line, (size_t)n + 1);
    b->len += (size_t)n;
    return 0;
}

/* One output row; "NA" (and a line on stderr saying why) when the BD-rate
 * is not defined for this pair. */
static int bd_row(out_buf *ob, const rd_curve *a, const rd_curve *t, int metric, cwba_bd_fit fit)
{
    const char *mname = metric == 0 ? "mse" : "top1";
    const double *qa = metric == 0 ? a->psnr : a->top1, *qt = metric == 0 ? t->psnr : t->top1;
    cwba_error err;
    cwba_error_clear(&err);
    double p = 0;
    int ok = 1;
    for (int i = 0; i < a->n; i++) ok &= !isnan(qa[i]);
    for (int i = 0; i < t->n; i++) ok &= !isnan(qt[i]);
    if (!ok)
        fprintf(stderr, "bdrate: %s %s vs %s, %s: NA (top1 missing)\n", t->config, t->method,
                a->method, mname);
    else if (cwba_bd_rate(a->rate, qa, a->n, t->rate, qt, t->n, fit, &p, &err)) {
        fprintf(stderr, "bdrate: %s %s vs %s, %s: NA (%s)\n", t->config, t->method, a->method,
                mname, err.msg);
        ok = 0;
    }
    if (ok) return out_add(ob, "%s,%s,%s,%s,%.4f\n", t->config, t->method, a->method, mname, p);
    return out_add(ob, "%s,%s,%s,%s,NA\n", t->config, t->method, a->method, mname);
}

int cmd_bdrate(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"points", "anchor", NULL};
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "bdrate",
                       "--points rd-points.csv --anchor M[,M...] [--out bdrate.csv] [--fit cubic|pchip]",
                       req);
    if (rc != CLI_GO) return rc;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_bd_fit fit = CWBA_BD_CUBIC;
    if (cli_has(&o, "fit") && cwba_bd_fit_parse(cli_get(&o, "fit"), &fit, &err)) {
        cli_error("--fit: %s", err.msg);
        return 2;
    }
    char anchors[MAX_ANCHORS][NAME_MAX_LEN], list[MAX_ANCHORS * NAME_MAX_LEN];
    int na = 0;
    if (strlen(cli_get(&o, "anchor")) >= sizeof list) {
        cli_error("--anchor: list too long");
        return 2;
    }
    strcpy(list, cli_get(&o, "anchor"));
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (na == MAX_ANCHORS || !name_ok(tok)) {
            cli_error("--anchor: at most %d method names of 1-%d printable characters", MAX_ANCHORS,
                      NAME_MAX_LEN - 1);
            return 2;
        }
        snprintf(anchors[na++], NAME_MAX_LEN, "%s", tok);
    }
    if (na == 0) {
        cli_error("--anchor: no method named");
        return 2;
    }
    rd_curve *cv = malloc(sizeof *cv * MAX_CURVES);
    if (!cv) {
        cli_error("out of memory");
        return 1;
    }
    int nc = 0;
    if ((rc = read_points(cli_get(&o, "points"), cv, &nc))) {
        free(cv);
        return rc;
    }
    for (int k = 0; k < na && !rc; k++) {
        int found = 0;
        for (int i = 0; i < nc; i++) found |= !strcmp(cv[i].method, anchors[k]);
        if (!found) {
            cli_error("%s: no curve of the anchor method '%s'", cli_get(&o, "points"), anchors[k]);
            rc = 2;
        }
    }
    out_buf ob = {NULL, 0, 0};
    if (!rc) rc = out_add(&ob, "config,method,anchor,metric,bd_rate_percent\n");
    for (int k = 0; k < na && !rc; k++)
        for (int i = 0; i < nc && !rc; i++) {
            const rd_curve *t = &cv[i];
            if (!strcmp(t->method, anchors[k])) continue;
            const rd_curve *a = find_curve(cv, nc, t->config, anchors[k]);
            if (!a) {
                fprintf(stderr, "bdrate: %s has no '%s' curve: %s skipped\n", t->config,
                        anchors[k], t->method);
                continue;
            }
            for (int metric = 0; metric < 2 && !rc; metric++) rc = bd_row(&ob, a, t, metric, fit);
        }
    if (!rc) {
        if (!cli_has(&o, "out"))
            fwrite(ob.p, 1, ob.len, stdout);
        else if (cwba_write_file_atomic(cli_get(&o, "out"), ob.p, ob.len, &err))
            rc = cli_fail_status(&err);
    }
    free(ob.p);
    free(cv);
    return rc;
}
