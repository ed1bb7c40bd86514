/* Standard-codec anchors (src/codec/anchor*.c): the common interface of the
 * three codec wrappers. Each one codes a monochrome frame of w x h samples
 * (row-major, one uint16_t per sample, values 0..2^depth-1) and decodes it
 * back; the tiling, the min-max quantization and the container header live
 * in anchor.c. */
#ifndef CWBA_ANCHOR_INTERNAL_H
#define CWBA_ANCHOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cwba/codec.h"

/* A growable output buffer (the encoders append their stream to it). */
typedef struct anchor_buf {
    uint8_t *p;
    size_t len, cap;
} anchor_buf;

cwba_status anchor_buf_append(anchor_buf *b, const void *data, size_t n, cwba_error *err);

/* Smallest frame side each codec accepts (frames are padded up to it). */
int anchor_min_side(cwba_anchor_codec codec);

/* Encoders append the codec's own stream for the frame to out; decoders
 * check that the stream holds exactly one w x h monochrome frame of the
 * given depth and write its samples to pix (w*h). */
cwba_status anchor_jpeg_encode(const uint16_t *pix, int w, int h, int quality, anchor_buf *out,
                               cwba_error *err);
cwba_status anchor_jpeg_decode(const uint8_t *src, size_t len, int w, int h, uint16_t *pix,
                               cwba_error *err);
cwba_status anchor_webp_encode(const uint16_t *pix, int w, int h, int quality, anchor_buf *out,
                               cwba_error *err);
cwba_status anchor_webp_decode(const uint8_t *src, size_t len, int w, int h, uint16_t *pix,
                               cwba_error *err);
cwba_status anchor_hevc_encode(const uint16_t *pix, int w, int h, int depth, int qp,
                               anchor_buf *out, cwba_error *err);
cwba_status anchor_hevc_decode(const uint8_t *src, size_t len, int w, int h, int depth,
                               uint16_t *pix, cwba_error *err);

#endif
