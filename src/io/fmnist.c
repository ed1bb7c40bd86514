/* Fashion-MNIST (and any MNIST-layout IDX set): gzip or plain IDX files.
 *
 * IDX: big-endian u32 magic 0x00000803 (u8 images, 3 dims) / 0x00000801 (u8
 * labels, 1 dim), then one big-endian u32 per dimension, then the bytes. */
#include "io_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define IDX_MAX_ITEMS 100000000u /* sane caps: reject likely-malformed headers */
#define IDX_MAX_SIDE 4096u
#define IDX_FIRST_CHUNK ((size_t)1 << 20)
#define FMNIST_CLASSES 10

typedef struct {
    int rows, cols;
    uint8_t *images; /* (count, rows, cols) */
    uint8_t *labels; /* (count) */
} fmnist;

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* "<dir>/<name>.gz" if it exists, else "<dir>/<name>" if that exists; the .gz
 * name otherwise (so the error names what we looked for first). */
static void idx_path(const char *dir, const char *name, char *out, size_t cap)
{
    struct stat st;
    snprintf(out, cap, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0) return;
    char plain[4200];
    int n = snprintf(plain, sizeof plain, "%s/%s", dir, name);
    if (n > 0 && (size_t)n < sizeof plain && (size_t)n < cap && stat(plain, &st) == 0)
        memcpy(out, plain, (size_t)n + 1);
}

static cwba_status gz_read_exact(gzFile f, const char *path, void *buf, size_t n, cwba_error *err)
{
    uint8_t *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            /* zlib prefixes its message with the path; we print the path once. */
            size_t pl = strlen(path);
            if (strncmp(msg, path, pl) == 0 && strncmp(msg + pl, ": ", 2) == 0) msg += pl + 2;
            if (got < 0 || zerr)
                return cwba_fail(err, CWBA_E_FORMAT, "%s: corrupt gzip data (%s)", path, msg);
            return cwba_fail(err, CWBA_E_FORMAT, "%s: truncated IDX file", path);
        }
        p += got;
        n -= (size_t)got;
    }
    return CWBA_OK;
}

/* Reads one IDX file with the expected magic; dims[0..ndim-1] receive the
 * sizes, *data the payload (caller frees). */
static cwba_status idx_read(const char *path, uint32_t magic, int ndim, uint32_t *dims,
                            uint8_t **data, cwba_error *err)
{
    *data = NULL;
    gzFile f = gzopen(path, "rb"); /* transparently reads plain files too */
    if (!f) return cwba_fail(err, CWBA_E_IO, "cannot open %s: %s", path, strerror(errno));
    uint8_t hdr[4 + 4 * 3];
    size_t hlen = 4 + 4 * (size_t)ndim;
    cwba_status st = gz_read_exact(f, path, hdr, hlen, err);
    if (st) goto done;
    uint32_t m = be32(hdr);
    if (m != magic) {
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: bad IDX magic 0x%08x (expected 0x%08x)", path,
                       (unsigned)m, (unsigned)magic);
        goto done;
    }
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        uint32_t cap = i == 0 ? IDX_MAX_ITEMS : IDX_MAX_SIDE;
        if (dims[i] == 0 || dims[i] > cap) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: IDX dimension %d is %u (allowed 1..%u)", path, i,
                           (unsigned)dims[i], (unsigned)cap);
            goto done;
        }
        if (!cwba_size_mul(total, dims[i], &total)) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: IDX size overflows", path);
            goto done;
        }
    }
    /* The buffer grows with the data actually read, so that a short file
     * whose header claims billions of pixels fails as truncated instead of
     * allocating what it claims. */
    for (size_t have = 0, cap = 0; have < total;) {
        size_t ncap = !cap ? (total < IDX_FIRST_CHUNK ? total : IDX_FIRST_CHUNK)
                           : cap > total / 2 ? total : 2 * cap;
        uint8_t *nd = realloc(*data, ncap);
        if (!nd) {
            st = cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory (%zu bytes)", path, ncap);
            goto done;
        }
        *data = nd;
        cap = ncap;
        st = gz_read_exact(f, path, *data + have, cap - have, err);
        if (st) goto done;
        have = cap;
    }
    uint8_t extra;
    if (gzread(f, &extra, 1) != 0)
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: trailing bytes after the IDX data", path);
done:
    gzclose(f);
    if (st) {
        free(*data);
        *data = NULL;
    }
    return st;
}

static cwba_status fmnist_get(const cwba_dataset *d, int index, float *out, int *label,
                              cwba_error *err)
{
    const fmnist *fm = d->impl;
    size_t npix = (size_t)fm->rows * (size_t)fm->cols;
    size_t nwork = npix + (size_t)d->pp.size * (size_t)d->pp.size;
    float *work = malloc(nwork * sizeof(float));
    if (!work) return cwba_fail(err, CWBA_E_NOMEM, "out of memory preprocessing an image");
    cwba_preprocess_gray_u8(fm->images + (size_t)index * npix, fm->rows, fm->cols, &d->pp, work, out);
    free(work);
    *label = fm->labels[index];
    return CWBA_OK;
}

static void fmnist_destroy(cwba_dataset *d)
{
    fmnist *fm = d->impl;
    if (!fm) return;
    free(fm->images);
    free(fm->labels);
    free(fm);
    d->impl = NULL;
}

static const cwba_dataset_ops fmnist_ops = {.kind = "fmnist", .get = fmnist_get, .destroy = fmnist_destroy};

cwba_status cwba_dataset_open_fmnist(const char *args, const cwba_preprocess *pp,
                                     cwba_dataset **out, cwba_error *err)
{
    *out = NULL;
    /* args: NULL | DIR | DIR:train | DIR:test (DIR may itself contain ':') */
    char dir[4096];
    const char *split = "test";
    if (!args || !*args) {
        snprintf(dir, sizeof dir, "%s", FMNIST_DEFAULT_DIR);
    } else {
        if (strlen(args) >= sizeof dir)
            return cwba_fail(err, CWBA_E_ARG, "fmnist: directory name too long");
        snprintf(dir, sizeof dir, "%s", args);
        char *c = strrchr(dir, ':');
        if (c && (strcmp(c + 1, "train") == 0 || strcmp(c + 1, "test") == 0)) {
            split = strcmp(c + 1, "train") == 0 ? "train" : "test";
            *c = '\0';
        }
        if (!*dir) snprintf(dir, sizeof dir, "%s", FMNIST_DEFAULT_DIR);
    }
    const char *prefix = strcmp(split, "train") == 0 ? "train" : "t10k";

    char img_path[4200], lab_path[4200], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    idx_path(dir, name, img_path, sizeof img_path);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    idx_path(dir, name, lab_path, sizeof lab_path);

    fmnist *fm = calloc(1, sizeof *fm);
    cwba_dataset *d = calloc(1, sizeof *d);
    if (!fm || !d) {
        free(fm);
        free(d);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    d->ops = &fmnist_ops;
    d->impl = fm;
    d->pp = pp ? *pp : cwba_preprocess_fmnist();

    uint32_t idims[3] = {0, 0, 0}, ldims[1] = {0};
    cwba_status st = idx_read(img_path, 0x00000803u, 3, idims, &fm->images, err);
    if (!st) st = idx_read(lab_path, 0x00000801u, 1, ldims, &fm->labels, err);
    if (!st && ldims[0] != idims[0])
        st = cwba_fail(err, CWBA_E_FORMAT, "%s has %u images but %s has %u labels", img_path,
                       (unsigned)idims[0], lab_path, (unsigned)ldims[0]);
    if (!st && idims[0] > (uint32_t)INT32_MAX)
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: too many images", img_path);
    for (uint32_t i = 0; !st && i < ldims[0]; i++) {
        if (fm->labels[i] >= FMNIST_CLASSES)
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: label %u of item %u is not a class 0..%d",
                           lab_path, (unsigned)fm->labels[i], (unsigned)i, FMNIST_CLASSES - 1);
    }
    if (st) {
        cwba_dataset_free(d);
        return st;
    }
    fm->rows = (int)idims[1];
    fm->cols = (int)idims[2];
    d->count = (int)idims[0];
    d->has_labels = 1;
    *out = d;
    return CWBA_OK;
}
