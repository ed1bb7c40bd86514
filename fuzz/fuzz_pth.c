/* libFuzzer target: PyTorch checkpoints, the zip reader and the pickle
 * machine behind cwba_weights_parse_pth (legacy and zip layouts).
 *
 * A zip input is parsed twice: as it is, and with the CRC32 of every stored
 * entry rewritten to match its bytes (in the central directory and the local
 * header), so that mutations of data.pkl reach the unpickler instead of
 * stopping at the CRC check. */
#include "fuzz_util.h"

#include <zlib.h>

#include "cwba/io.h"

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (rd16(p + 2) << 16); }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void parse(const uint8_t *buf, size_t len)
{
    cwba_weights *w = NULL;
    cwba_error err = {0};
    (void)cwba_is_pth(buf, len);
    cwba_status st = cwba_weights_parse_pth(buf, len, "fuzz.pth", &w, &err);
    fuzz_check_status(st, &err);
    if (st != CWBA_OK) {
        if (w) abort();
        return;
    }
    for (size_t i = 0; i < w->count; i++) fuzz_check_tensor(w, i);
    cwba_weights_free(w);
}

/* Rewrites the CRCs of stored entries found through the classic
 * end-of-central-directory record; returns 1 if anything changed. Every
 * read is bounds-checked: this walks hostile bytes too. */
static int fix_zip_crcs(uint8_t *b, size_t len)
{
    if (len < 22) return 0;
    size_t eocd = SIZE_MAX;
    for (size_t i = len - 22 + 1; i-- > 0;)
        if (rd32(b + i) == 0x06054b50u) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX) return 0;
    size_t count = rd16(b + eocd + 10), off = rd32(b + eocd + 16);
    int changed = 0;
    for (size_t k = 0; k < count && off <= len && len - off >= 46; k++) {
        uint8_t *c = b + off;
        if (rd32(c) != 0x02014b50u) break;
        size_t method = rd16(c + 10), csize = rd32(c + 20), nlen = rd16(c + 28);
        size_t elen = rd16(c + 30), clen = rd16(c + 32), loff = rd32(c + 42);
        if (method == 0 && loff <= len && len - loff >= 30 && rd32(b + loff) == 0x04034b50u) {
            size_t data = loff + 30 + rd16(b + loff + 26) + rd16(b + loff + 28);
            if (data <= len && csize <= len - data) {
                uint32_t crc = (uint32_t)crc32(0L, b + data, (uInt)csize);
                if (crc != rd32(c + 16)) changed = 1;
                wr32(c + 16, crc);
                wr32(b + loff + 14, crc);
            }
        }
        off += 46 + nlen + elen + clen;
    }
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_copy(data, size);
    parse(buf, size);
    if (size >= 4 && memcmp(buf, "PK\3\4", 4) == 0 && fix_zip_crcs(buf, size)) parse(buf, size);
    free(buf);
    return 0;
}
