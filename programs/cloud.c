/* The cloud decoder path of `cwba decode` and `cwba serve` (cloud.h). */
#include "cloud.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cloud_outcome cloud_decode_feature(cwba_model *m, cwba_arch arch, const uint8_t *buf, size_t len,
                                   int want_split, cwba_stream_info *si, int *split, float **xhat,
                                   cwba_error *err)
{
    *xhat = NULL;
    int C, H, W;
    if (cwba_stream_decode_header(buf, len, si, err)) return CLOUD_BAD_STREAM;
    if (strcmp(si->model, cwba_arch_name(arch)) != 0) {
        cwba_fail(err, CWBA_E_FORMAT, "the bitstream is for model '%s', not %s", si->model,
                  cwba_arch_name(arch));
        return CLOUD_MISMATCH;
    }
    if (cwba_model_find_split(m, si->split, split, err)) return CLOUD_MISMATCH;
    if (want_split >= 0 && *split != want_split) {
        cwba_fail(err, CWBA_E_FORMAT, "the bitstream is for split '%s', not %s", si->split,
                  cwba_model_split_name(m, want_split));
        return CLOUD_MISMATCH;
    }
    cwba_model_split_shape(m, *split, &C, &H, &W);
    if (cwba_stream_expect(si, cwba_arch_name(arch), cwba_model_split_name(m, *split), C, H, W,
                           err))
        return CLOUD_MISMATCH;
    size_t feat = (size_t)C * H * W;
    int *n = malloc(sizeof(int) * (size_t)C);
    float *x = malloc(sizeof(float) * feat);
    if (!n || !x) {
        free(n), free(x);
        cwba_fail(err, CWBA_E_NOMEM, "out of memory");
        return CLOUD_NOMEM;
    }
    cwba_status st = cwba_stream_decode(buf, len, si, n, (size_t)C, NULL, x, feat, err);
    free(n);
    if (st) {
        free(x);
        return st == CWBA_E_NOMEM ? CLOUD_NOMEM : CLOUD_BAD_STREAM;
    }
    *xhat = x;
    return CLOUD_OK;
}

int cloud_top5(const float *lg, int K, int top[5])
{
    int nt = K < 5 ? K : 5;
    for (int t = 0; t < nt; t++) {
        int best = -1;
        for (int k = 0; k < K; k++) {
            int used = 0;
            for (int u = 0; u < t; u++) used |= top[u] == k;
            if (!used && (best < 0 || lg[k] > lg[best])) best = k;
        }
        top[t] = best;
    }
    return nt;
}

int cloud_json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        int k;
        if (c == '"' || c == '\\')
            k = snprintf(tmp, sizeof tmp, "\\%c", c);
        else if (c < 0x20)
            k = snprintf(tmp, sizeof tmp, "\\u%04x", c);
        else
            k = snprintf(tmp, sizeof tmp, "%c", c);
        if (o + (size_t)k + 1 > cap) return -1;
        memcpy(out + o, tmp, (size_t)k);
        o += (size_t)k;
    }
    if (o + 1 > cap) return -1;
    out[o] = 0;
    return (int)o;
}

/* snprintf at out + *o, failing (returns 0) when the text does not fit. */
static int put(char *out, size_t cap, size_t *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int put(char *out, size_t cap, size_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out + *o, cap - *o, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *o) return 0;
    *o += (size_t)k;
    return 1;
}

int cloud_result_json(char *out, size_t cap, const char *file, const cwba_stream_info *si,
                      size_t bytes, const float *lg, int K)
{
    int top[5], nt = cloud_top5(lg, K, top);
    size_t o = 0;
    if (cap == 0 || !put(out, cap, &o, "{")) return -1;
    if (file) {
        char esc[8192];
        if (cloud_json_escape(esc, sizeof esc, file) < 0 ||
            !put(out, cap, &o, "\"file\":\"%s\",", esc))
            return -1;
    }
    /* stream names are printable ASCII without spaces, but may hold '"' */
    char em[2 * CWBA_STREAM_NAME_MAX * 6 + 8], es[sizeof em];
    if (cloud_json_escape(em, sizeof em, si->model) < 0 ||
        cloud_json_escape(es, sizeof es, si->split) < 0 ||
        !put(out, cap, &o, "\"model\":\"%s\",\"split\":\"%s\",\"bytes\":%zu,\"top5\":[", em, es,
             bytes))
        return -1;
    for (int t = 0; t < nt; t++)
        if (!put(out, cap, &o, "%s%d", t ? "," : "", top[t])) return -1;
    if (!put(out, cap, &o, "],\"logits_top5\":[")) return -1;
    for (int t = 0; t < nt; t++)
        if (!put(out, cap, &o, "%s%.6g", t ? "," : "", lg[top[t]])) return -1;
    if (!put(out, cap, &o, "]}")) return -1;
    return (int)o;
}
