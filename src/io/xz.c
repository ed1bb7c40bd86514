/* In-memory .xz decompression through liblzma, and "read, maybe decompress". */
#include "io_internal.h"

#include <lzma.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t xz_magic[6] = {0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00};

int cwba_is_xz(const uint8_t *buf, size_t len)
{
    return len >= sizeof xz_magic && memcmp(buf, xz_magic, sizeof xz_magic) == 0;
}

static const char *lzma_reason(lzma_ret r)
{
    switch (r) {
    case LZMA_MEM_ERROR: return "out of memory";
    case LZMA_FORMAT_ERROR: return "not an xz stream";
    case LZMA_OPTIONS_ERROR: return "unsupported xz options";
    case LZMA_DATA_ERROR: return "corrupt xz data";
    case LZMA_BUF_ERROR: return "truncated xz stream";
    case LZMA_UNSUPPORTED_CHECK: return "unsupported xz integrity check";
    default: return "xz decoder error";
    }
}

cwba_status cwba_xz_decompress(const uint8_t *in, size_t in_len, size_t max_out, const char *what,
                               uint8_t **out, size_t *out_len, cwba_error *err)
{
    *out = NULL;
    *out_len = 0;
    lzma_stream strm = LZMA_STREAM_INIT;
    /* LZMA_CONCATENATED: `xz` may write several streams back to back. */
    lzma_ret r = lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED);
    if (r != LZMA_OK) return cwba_fail(err, CWBA_E_NOMEM, "%s: cannot start xz decoder", what);

    /* Compressed weights shrink by ~3x at most; start there and double. */
    size_t cap = in_len < ((size_t)1 << 20) ? ((size_t)1 << 20) : in_len;
    if (cap > max_out) cap = max_out;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) {
        lzma_end(&strm);
        return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory decompressing", what);
    }
    strm.next_in = in;
    strm.avail_in = in_len;
    strm.next_out = buf;
    strm.avail_out = cap;
    cwba_status st = CWBA_OK;
    for (;;) {
        r = lzma_code(&strm, LZMA_FINISH);
        if (r == LZMA_STREAM_END) break;
        if (r != LZMA_OK) {
            st = cwba_fail(err, r == LZMA_MEM_ERROR ? CWBA_E_NOMEM : CWBA_E_FORMAT, "%s: %s", what,
                           lzma_reason(r));
            break;
        }
        if (strm.avail_out == 0) {
            if (cap >= max_out) {
                st = cwba_fail(err, CWBA_E_FORMAT, "%s: decompressed size exceeds %zu bytes", what,
                               max_out);
                break;
            }
            size_t ncap = cap > max_out / 2 ? max_out : 2 * cap;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory decompressing", what);
                break;
            }
            buf = nb;
            strm.next_out = buf + cap;
            strm.avail_out = ncap - cap;
            cap = ncap;
        } else if (strm.avail_in == 0) {
            /* Input exhausted without the end marker and output space left. */
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: truncated xz stream", what);
            break;
        }
    }
    size_t total = (size_t)strm.total_out;
    lzma_end(&strm);
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = total;
    return CWBA_OK;
}

cwba_status cwba_read_maybe_xz(const char *path, uint8_t **out, size_t *out_len, cwba_error *err)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    cwba_status st = cwba_file_read_all(path, 0, &raw, &raw_len, err);
    if (st) return st;
    if (!cwba_is_xz(raw, raw_len)) {
        *out = raw;
        *out_len = raw_len;
        return CWBA_OK;
    }
    st = cwba_xz_decompress(raw, raw_len, CWBA_XZ_MAX_OUT, path, out, out_len, err);
    free(raw);
    return st;
}
