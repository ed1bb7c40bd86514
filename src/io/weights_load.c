/* The weights loader: reads a file (xz or not) and picks the reader by its
 * content, .pth (src/io/pth.c) or safetensors (src/io/safetensors.c). */
#include "io_internal.h"

#include <stdlib.h>

cwba_status cwba_weights_load(const char *path, cwba_weights **out, cwba_error *err)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_status st = cwba_read_maybe_xz(path, &buf, &len, err);
    if (st) return st;

    /* ---- format dispatch: one place, by content ---- */
    if (cwba_is_pth(buf, len)) {
        /* PyTorch .pth checkpoint: zip ("PK\x03\x04") or legacy pickle (src/io/pth.c). */
        st = cwba_weights_parse_pth(buf, len, path, out, err);
        free(buf);
        return st;
    }
    st = cwba_weights_parse_safetensors(buf, len, path, out, err);
    free(buf);
    return st;
}
