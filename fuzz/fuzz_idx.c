/* libFuzzer target: IDX files (Fashion-MNIST's format, gzip or plain) read
 * through the fmnist: dataset, which takes a directory: each input is
 * written to a private temporary directory as one of the two files, the
 * other file is made to match, and the dataset is opened and read.
 *
 * Input: byte 0 bit 0 chooses which file the rest is (0: the images file,
 * 1: the labels file); the partner holds as many items as the input's
 * header claims (when that is at most FUZZ_PARTNER_MAX, else 1). */
#include "fuzz_util.h"

#include <stdio.h>
#include <unistd.h>
#include <zlib.h>

#include "cwba/io.h"

#define FUZZ_PARTNER_MAX 4096u

static char g_dir[256];

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[320];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) abort();
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* An IDX file of `count` items: labels (i % 10) or 2x2 images. */
static void write_partner(int labels, uint32_t count)
{
    size_t hdr = labels ? 8 : 16, item = labels ? 1 : 4, n = hdr + (size_t)count * item;
    uint8_t *b = calloc(n, 1);
    if (!b) abort();
    put_be32(b, labels ? 0x801u : 0x803u);
    put_be32(b + 4, count);
    if (!labels) {
        put_be32(b + 8, 2);
        put_be32(b + 12, 2);
    }
    for (size_t i = 0; i < (size_t)count * item; i++) b[hdr + i] = (uint8_t)(labels ? (i % 10) : i);
    write_file(labels ? "t10k-labels-idx1-ubyte" : "t10k-images-idx3-ubyte", b, n);
    free(b);
}

/* The first 8 bytes of the IDX content: as they are, or gunzipped. */
static int idx_head(const uint8_t *p, size_t n, uint8_t head[8])
{
    if (n < 2 || p[0] != 0x1f || p[1] != 0x8b) {
        if (n < 8) return 0;
        memcpy(head, p, 8);
        return 1;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return 0;
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);
    z.next_out = head;
    z.avail_out = 8;
    int r = Z_OK;
    while (z.avail_out > 0 && r == Z_OK) r = inflate(&z, Z_NO_FLUSH);
    inflateEnd(&z);
    return z.avail_out == 0;
}

static void cleanup(void)
{
    char path[320];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", g_dir);
    unlink(path);
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/cwba-fuzz-idx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(g_dir)) abort();
        atexit(cleanup);
    }
    if (size < 1) return 0;
    int is_labels = data[0] & 1;
    const uint8_t *file = data + 1;
    size_t n = size - 1;
    /* The count the header claims (gzip inputs: in their first 8 bytes
     * decompressed). */
    uint32_t count = 1;
    uint8_t head[8];
    if (idx_head(file, n, head)) {
        uint32_t c = ((uint32_t)head[4] << 24) | ((uint32_t)head[5] << 16) |
                     ((uint32_t)head[6] << 8) | head[7];
        if (c >= 1 && c <= FUZZ_PARTNER_MAX) count = c;
    }
    write_file(is_labels ? "t10k-labels-idx1-ubyte" : "t10k-images-idx3-ubyte", file, n);
    write_partner(!is_labels, count);

    char spec[300];
    snprintf(spec, sizeof spec, "fmnist:%s:test", g_dir);
    cwba_preprocess pp = {.size = 8, .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
    cwba_dataset *d = NULL;
    cwba_error err = {0};
    cwba_status st = cwba_dataset_open(spec, &pp, &d, &err);
    fuzz_check_status(st, &err);
    if (st == CWBA_OK) {
        int count_d = cwba_dataset_count(d);
        if (count_d < 1 || !cwba_dataset_has_labels(d)) abort();
        float x[3 * 8 * 8];
        int idx[2] = {0, count_d - 1};
        for (int k = 0; k < 2; k++) {
            int label = -1;
            st = cwba_dataset_get(d, idx[k], x, &label, &err);
            fuzz_check_status(st, &err);
            if (st == CWBA_OK) {
                if (label < 0 || label > 9) abort();
                fuzz_touch(x, sizeof x / sizeof x[0]);
            }
        }
    } else if (d) {
        abort();
    }
    cwba_dataset_free(d);
    return 0;
}
