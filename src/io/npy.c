/* NumPy .npy files (format 1.0 written; 1.0, 2.0 and 3.0 read).
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE for v1, u32 LE for
 * v2/v3), an ASCII (v3: UTF-8) Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a final '\n' so that the data starts on a 64-byte boundary. */
#include "io_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Headers we write are < 200 bytes; numpy never writes more than a few KB. */
#define NPY_MAX_HEADER ((size_t)1 << 20)

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

cwba_status cwba_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                               cwba_error *err)
{
    if (ndim < 0 || ndim > CWBA_MAX_DIMS)
        return cwba_fail(err, CWBA_E_ARG, "%s: %d dimensions (at most %d)", path, ndim,
                         CWBA_MAX_DIMS);
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !cwba_size_mul(numel, (size_t)shape[i], &numel))
            return cwba_fail(err, CWBA_E_ARG, "%s: invalid shape", path);
        /* A 1-tuple needs its trailing comma: (5,) */
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[i],
                      (ndim == 1 || i + 1 < ndim) ? "," : "");
        if (i + 1 < ndim) n += snprintf(dict + n, sizeof dict - (size_t)n, " ");
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t nbytes;
    if (!cwba_size_mul(numel, sizeof(float), &nbytes))
        return cwba_fail(err, CWBA_E_ARG, "%s: array too large", path);

    /* 10 bytes of preamble + dict + padding + '\n' = multiple of 64. */
    size_t hdr_total = 10 + (size_t)n + 1;
    hdr_total = (hdr_total + 63) / 64 * 64;
    uint8_t hdr[640];
    memcpy(hdr, npy_magic, 6);
    hdr[6] = 1;
    hdr[7] = 0;
    size_t hlen = hdr_total - 10;
    hdr[8] = (uint8_t)(hlen & 0xFF);
    hdr[9] = (uint8_t)(hlen >> 8);
    memcpy(hdr + 10, dict, (size_t)n);
    memset(hdr + 10 + n, ' ', hdr_total - 10 - (size_t)n - 1);
    hdr[hdr_total - 1] = '\n';

    cwba_atomic_file *f;
    cwba_status st = cwba_atomic_open(path, &f, err);
    if (st) return st;
    st = cwba_atomic_write(f, hdr, hdr_total, err);
    /* The data is written little-endian; on big-endian hosts swap first. */
    const uint16_t probe = 1;
    if (!st && *(const uint8_t *)&probe == 1) {
        if (nbytes) st = cwba_atomic_write(f, data, nbytes, err);
    } else if (!st) {
        for (size_t i = 0; i < numel && !st; i++) {
            uint32_t b;
            memcpy(&b, &data[i], 4);
            uint8_t le[4] = {(uint8_t)b, (uint8_t)(b >> 8), (uint8_t)(b >> 16), (uint8_t)(b >> 24)};
            st = cwba_atomic_write(f, le, 4, err);
        }
    }
    if (st) {
        cwba_atomic_abort(f);
        return st;
    }
    return cwba_atomic_commit(f, err);
}

/* ---- header dict parser: just enough Python literal syntax for numpy ---- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && isspace((unsigned char)*c->p)) c->p++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...") without escapes, copied into out. */
static int parse_str(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = '\0';
    return 1;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

static int parse_shape(cursor *c, int *ndim, int64_t shape[CWBA_MAX_DIMS])
{
    if (!eat(c, '(')) return 0;
    *ndim = 0;
    for (;;) {
        if (eat(c, ')')) return 1;
        skip_ws(c);
        if (c->p >= c->end || !isdigit((unsigned char)*c->p)) return 0;
        int64_t v = 0;
        while (c->p < c->end && isdigit((unsigned char)*c->p)) {
            if (v > (INT64_MAX - 9) / 10) return 0;
            v = v * 10 + (*c->p++ - '0');
        }
        /* Python 2 era files may carry a long suffix. */
        if (c->p < c->end && *c->p == 'L') c->p++;
        if (*ndim >= CWBA_MAX_DIMS) return 0;
        shape[(*ndim)++] = v;
        if (eat(c, ')')) return 1;
        if (!eat(c, ',')) return 0;
    }
}

typedef enum { NPY_F4, NPY_F8, NPY_F2 } npy_dtype;

static cwba_status parse_header(const char *path, const char *h, size_t len, npy_dtype *dt,
                                int *ndim, int64_t shape[CWBA_MAX_DIMS], cwba_error *err)
{
    cursor c = {h, h + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!eat(&c, '{')) return cwba_fail(err, CWBA_E_FORMAT, "%s: npy header is not a dict", path);
    for (;;) {
        if (eat(&c, '}')) break;
        char key[32];
        if (!parse_str(&c, key, sizeof key) || !eat(&c, ':'))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: malformed npy header dict", path);
        if (strcmp(key, "descr") == 0) {
            char d[32];
            if (!parse_str(&c, d, sizeof d))
                return cwba_fail(err, CWBA_E_FORMAT, "%s: npy descr is not a string", path);
            if (strcmp(d, "<f4") == 0) *dt = NPY_F4;
            else if (strcmp(d, "<f8") == 0) *dt = NPY_F8;
            else if (strcmp(d, "<f2") == 0) *dt = NPY_F2;
            else
                return cwba_fail(err, CWBA_E_UNSUPPORTED,
                                 "%s: npy descr '%s' is not supported (need '<f4', '<f8' or '<f2')",
                                 path, d);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&c, "True"))
                return cwba_fail(err, CWBA_E_UNSUPPORTED,
                                 "%s: npy fortran_order True is not supported (need C order)", path);
            if (!parse_word(&c, "False"))
                return cwba_fail(err, CWBA_E_FORMAT, "%s: npy fortran_order is not a bool", path);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (!parse_shape(&c, ndim, shape))
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "%s: npy shape is not a tuple of at most %d sizes", path,
                                 CWBA_MAX_DIMS);
            have_shape = 1;
        } else {
            return cwba_fail(err, CWBA_E_FORMAT, "%s: unexpected npy header key '%s'", path, key);
        }
        if (eat(&c, '}')) break;
        if (!eat(&c, ','))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: malformed npy header dict", path);
    }
    skip_ws(&c);
    if (c.p != c.end)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: trailing bytes after the npy header dict", path);
    if (!have_descr || !have_order || !have_shape)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: npy header lacks %s", path,
                         !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    return CWBA_OK;
}

cwba_status cwba_npy_read_f32(const char *path, float **data, int *ndim,
                              int64_t shape[CWBA_MAX_DIMS], cwba_error *err)
{
    *data = NULL;
    *ndim = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_status st = cwba_file_read_all(path, 0, &buf, &len, err);
    if (st) return st;
    st = cwba_npy_parse_f32(buf, len, path, data, ndim, shape, err);
    free(buf);
    return st;
}

cwba_status cwba_npy_parse_f32(const uint8_t *buf, size_t len, const char *path, float **data,
                               int *ndim, int64_t shape[CWBA_MAX_DIMS], cwba_error *err)
{
    *data = NULL;
    *ndim = 0;
    if (len < 10 || memcmp(buf, npy_magic, 6) != 0)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: not a .npy file (bad magic)", path);
    int major = buf[6];
    size_t hlen, pre;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        pre = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return cwba_fail(err, CWBA_E_FORMAT, "%s: truncated .npy header", path);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) |
               ((size_t)buf[11] << 24);
        pre = 12;
    } else {
        int minor = buf[7];
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: .npy format version %d.%d is not supported",
                         path, major, minor);
    }
    if (hlen > NPY_MAX_HEADER || hlen > len - pre)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: .npy header length %zu beyond the end of the file",
                         path, hlen);
    npy_dtype dt = NPY_F4;
    cwba_status st = parse_header(path, (const char *)buf + pre, hlen, &dt, ndim, shape, err);
    if (st) return st;
    size_t numel = 1, esize = dt == NPY_F8 ? 8 : dt == NPY_F2 ? 2 : 4, nbytes;
    for (int i = 0; i < *ndim; i++) {
        if (!cwba_size_mul(numel, (size_t)shape[i], &numel))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: .npy shape overflows", path);
    }
    size_t avail = len - pre - hlen;
    if (!cwba_size_mul(numel, esize, &nbytes) || nbytes != avail)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: .npy data is %zu bytes but its shape needs %zu x %zu bytes", path, avail,
                         numel, esize);
    float *out = malloc(numel ? numel * sizeof(float) : 1); /* numel*esize fit, so *4 fits */
    if (!out) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", path);
    const uint8_t *p = buf + pre + hlen;
    for (size_t i = 0; i < numel; i++) {
        const uint8_t *q = p + i * esize;
        if (dt == NPY_F4) {
            uint32_t b = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) |
                         ((uint32_t)q[3] << 24);
            memcpy(&out[i], &b, 4);
        } else if (dt == NPY_F2) {
            out[i] = cwba_f16_to_f32((uint16_t)(q[0] | (q[1] << 8)));
        } else {
            uint64_t b = 0;
            for (int k = 7; k >= 0; k--) b = (b << 8) | q[k];
            double d;
            memcpy(&d, &b, 8);
            out[i] = (float)d;
        }
    }
    *data = out;
    return CWBA_OK;
}
