/* cwba/codec.h — the split-inference bitstream: the edge encoder and the cloud
 * decoder of one quantized feature, with its true rate.
 *
 * The format is specified in docs/bitstream.md (version 1). A stream carries
 * everything the cloud needs to rebuild the back end's input: model and split
 * names, C x H x W, the quantizer and its range, every channel's interval
 * count n_c, and the codes (0..n_c per element), entropy coded:
 *   - mode FIXED: each code uniform over its n_c+1 symbols with a range coder,
 *     i.e. within a fraction of a percent of sum_c H*W*log2(n_c+1) bits;
 *   - mode ADAPTIVE: a binary context model (neighbour codes as context) that
 *     goes below that cost when codes are skewed, as ReLU features are.
 * Every stream ends in a CRC32; the decoder checks every field and never
 * reads outside the buffer it is given.
 *
 * Usage (edge):
 *   cwba_stream_info si = {.model = "resnet18", .split = "layer3", .C = 256, .H = 4,
 *                          .W = 4, .quant = CWBA_QUANT_UNIFORM, .mn = mn, .mx = mx,
 *                          .mode = CWBA_STREAM_AUTO};
 *   size_t cap = cwba_stream_bound(&si, n);          // n: (C) interval counts
 *   uint8_t *buf = malloc(cap);  size_t len;
 *   cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err);
 *   // or, from the float feature x (C, H, W), quantizing on the way:
 *   cwba_stream_encode_feature(&si, x, n, buf, cap, &len, xhat, &stats, &err);
 * Usage (cloud):
 *   cwba_stream_decode_header(buf, len, &si, &err);     // sizes, identity
 *   cwba_stream_expect(&si, "resnet18", "layer3", 256, 4, 4, &err);
 *   cwba_stream_decode(buf, len, &si, n, C, NULL, xhat, C*H*W, &err);
 *
 * Ownership: every buffer is the caller's; the library allocates only
 * temporary scratch that it frees before returning. */
#ifndef CWBA_CODEC_H
#define CWBA_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "cwba/core.h"
#include "cwba/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CWBA_STREAM_VERSION 1
#define CWBA_STREAM_NAME_MAX 31            /* model / split name length, bytes */
#define CWBA_STREAM_MAX_C 8192
#define CWBA_STREAM_MAX_HW 4096            /* bound on H and on W separately */
#define CWBA_STREAM_MAX_ELEMS (1L << 28)   /* bound on C*H*W */
#define CWBA_STREAM_MAX_N 16777215         /* n_c <= 2^24 - 1 */
#define CWBA_STREAM_DOREFA_BITS_MAX 16

typedef enum cwba_stream_mode {
    CWBA_STREAM_FIXED = 0,    /* fixed alphabet: each code uniform over n_c+1 */
    CWBA_STREAM_ADAPTIVE = 1, /* adaptive context model */
    CWBA_STREAM_AUTO = 2      /* encode only: whichever of the two is smaller */
} cwba_stream_mode;

typedef struct cwba_stream_info {
    char model[CWBA_STREAM_NAME_MAX + 1]; /* e.g. "resnet18"; printable ASCII, no space */
    char split[CWBA_STREAM_NAME_MAX + 1]; /* e.g. "layer3" */
    int C, H, W;
    cwba_quant quant;
    float mn, mx;           /* uniform/log: the feature's global range (mn <= mx) */
    int bits;               /* dorefa: bit depth b (1..16); n_c = 2^b - 1 */
    float clip;             /* dorefa: clipping value (> 0), kept for the record */
    cwba_stream_mode mode;  /* encode: requested; decode: the mode in the stream */
} cwba_stream_info;

/* Where the bytes of one stream went. */
typedef struct cwba_stream_stats {
    size_t header_bytes;    /* everything but the two coded sections (incl. CRC) */
    size_t side_bytes;      /* the coded n_c section (0 when n_c is constant) */
    size_t payload_bytes;   /* the coded codes */
    size_t total_bytes;
    double ideal_bits;      /* sum_c H*W*log2(n_c+1): the fixed-alphabet cost */
    cwba_stream_mode mode;  /* FIXED or ADAPTIVE: what the payload uses */
} cwba_stream_stats;

/* Upper bound on the encoded size for this info and n (C), which may be NULL
 * (then n_c = CWBA_STREAM_MAX_N is assumed). FIXED and AUTO need about the
 * ideal size; ADAPTIVE alone has a loose worst case (~40 bytes per element).
 * Returns 0 if the info is out of the format's limits. */
size_t cwba_stream_bound(const cwba_stream_info *info, const int *n);

/* Encodes one feature's codes. n (C): interval counts 1..CWBA_STREAM_MAX_N
 * (dorefa: may be NULL; if given every n_c must be 2^bits-1). codes (C, H, W):
 * each in 0..n_c; when mn == mx (uniform/log) every code must be 0. Writes
 * *written bytes to dst (capacity cap; cwba_stream_bound() always suffices).
 * stats may be NULL. */
cwba_status cwba_stream_encode(const cwba_stream_info *info, const int *n, const uint32_t *codes,
                               uint8_t *dst, size_t cap, size_t *written,
                               cwba_stream_stats *stats, cwba_error *err);

/* Edge convenience: quantizes the feature x (C, H, W) and encodes it.
 * uniform/log: info->mn, mx are ignored and set from x's global range (the
 * stream's copy is what counts); n (C) are the interval counts. dorefa: n may
 * be NULL; codes are round(clamp(x, 0, clip) * (2^bits - 1)). xhat (C, H, W,
 * may be NULL) receives what the cloud will decode, i.e. the quantizer's
 * output bit for bit. Values of x must be finite. */
cwba_status cwba_stream_encode_feature(const cwba_stream_info *info, const float *x, const int *n,
                                       uint8_t *dst, size_t cap, size_t *written, float *xhat,
                                       cwba_stream_stats *stats, cwba_error *err);

/* Validates a whole stream (every header field, the section lengths, the
 * total length and the CRC) and fills info, without decoding the payload. */
cwba_status cwba_stream_decode_header(const uint8_t *src, size_t len, cwba_stream_info *info,
                                      cwba_error *err);

/* Decodes a stream. Outputs (each may be NULL): n (C, capacity n_cap), codes
 * and xhat (C, H, W, capacity elem_cap elements). xhat is the dequantized
 * feature, bit-for-bit what cwba_quant_dequant_ref gives for these codes
 * (dorefa: code / (2^bits - 1)); when mn == mx every value is mn. info may be
 * NULL. On error the outputs hold unspecified values. */
cwba_status cwba_stream_decode(const uint8_t *src, size_t len, cwba_stream_info *info, int *n,
                               size_t n_cap, uint32_t *codes, float *xhat, size_t elem_cap,
                               cwba_error *err);

/* Checks that a decoded stream is for this model and split (and shape, when
 * C, H, W > 0); CWBA_E_FORMAT with both identities in the message if not. */
cwba_status cwba_stream_expect(const cwba_stream_info *info, const char *model, const char *split,
                               int C, int H, int W, cwba_error *err);

const char *cwba_stream_mode_name(cwba_stream_mode m);
cwba_status cwba_stream_mode_parse(const char *name, cwba_stream_mode *out, cwba_error *err);

#ifdef __cplusplus
}
#endif
#endif
