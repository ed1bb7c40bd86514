/* CRC-32 of the bitstream (docs/bitstream.md: ISO-HDLC, the value zlib's
 * crc32 gives), ours rather than zlib's so that the codec builds with no
 * outside library (the edge-side cross build, cmake/minimal.cmake);
 * tests/test_codec_stream.c checks it against the standard check value and,
 * where zlib is at hand, against zlib on random buffers. */
#include "codec/rc.h"

#include <pthread.h>

static uint32_t g_table[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        g_table[i] = c;
    }
}

uint32_t codec_crc32(const uint8_t *p, size_t n)
{
    pthread_once(&g_once, table_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = g_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}
