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


/* ------------------------------------------------- standard-codec anchors
 *
 * The field's baselines for feature coding (sc2bench; CompressAI-Vision and
 * MPEG FCM): the feature (C, H, W) min-max quantized to 2^depth levels over
 * its global range, the channels tiled into one monochrome frame, the frame
 * coded by a standard image/video codec: JPEG (libjpeg-turbo, depth 8),
 * WebP (libwebp, lossy, depth 8) or HEVC intra (libavcodec + libx265,
 * Main10-style 4:0:0 at depth 10). docs/anchors.md gives every choice.
 *
 * An anchor stream is a 16-byte header (codec, depth, C, H, W, min, max:
 * all the decoder needs besides the codec's own stream) followed by the
 * codec's stream; its length is the rate. Tiling: channel c goes to tile
 * row c / cols, column c % cols, cols = the smallest power of two >=
 * sqrt(C * H / W) (capped at C), rows = ceil(C / cols); unused tiles and
 * the padding up to the codec's smallest frame hold code 0.
 *
 * Usage:
 *   uint8_t *s; size_t len;
 *   cwba_anchor_encode(CWBA_ANCHOR_HEVC, 32, x, C, H, W, &s, &len, NULL, &err);
 *   cwba_anchor_decode(s, len, C, H, W, xhat, &err);   free(s);
 * HEVC runs single-threaded with fixed x265 options, so the same input gives
 * the same bytes on every run. The first HEVC call silences libavcodec's
 * logging (av_log_set_level(AV_LOG_QUIET): the library never prints). */
typedef enum cwba_anchor_codec {
    CWBA_ANCHOR_JPEG = 1, /* quality 1..100 (libjpeg's scale) */
    CWBA_ANCHOR_WEBP = 2, /* quality 0..100 (libwebp's lossy scale) */
    CWBA_ANCHOR_HEVC = 3  /* quality = QP 0..51 (lower is better) */
} cwba_anchor_codec;

#define CWBA_ANCHOR_HEADER_BYTES 16

typedef struct cwba_anchor_grid {
    int C, H, W;
    int cols, rows;         /* tile grid */
    int frame_w, frame_h;   /* the coded frame: max(cols*W, min) x max(rows*H, min) */
} cwba_anchor_grid;

const char *cwba_anchor_codec_name(cwba_anchor_codec c);
cwba_status cwba_anchor_codec_parse(const char *name, cwba_anchor_codec *out, cwba_error *err);
/* Sample depth in bits: 8 (JPEG, WebP) or 10 (HEVC). */
int cwba_anchor_depth(cwba_anchor_codec c);
/* CWBA_E_ARG with the valid range when quality is outside it. */
cwba_status cwba_anchor_quality_check(cwba_anchor_codec c, int quality, cwba_error *err);

/* The tiling of a (C, H, W) feature for a codec; CWBA_E_ARG when the shape
 * is empty or the frame exceeds the codec's or the header's limits. */
cwba_status cwba_anchor_grid_make(cwba_anchor_codec codec, int C, int H, int W,
                                  cwba_anchor_grid *g, cwba_error *err);
/* codes (C, H, W) -> frame (frame_h, frame_w) with pad in the unused samples,
 * and back. */
void cwba_anchor_tile(const cwba_anchor_grid *g, const uint16_t *codes, uint16_t pad,
                      uint16_t *frame);
void cwba_anchor_untile(const cwba_anchor_grid *g, const uint16_t *frame, uint16_t *codes);

typedef struct cwba_anchor_stats {
    size_t header_bytes;   /* CWBA_ANCHOR_HEADER_BYTES */
    size_t payload_bytes;  /* the codec's stream */
    size_t total_bytes;
    cwba_anchor_grid grid;
} cwba_anchor_stats;

/* Encodes the feature x (C, H, W; finite values) into a malloc'd stream
 * (*out, *len; the caller frees). stats may be NULL. */
cwba_status cwba_anchor_encode(cwba_anchor_codec codec, int quality, const float *x, int C,
                               int H, int W, uint8_t **out, size_t *len,
                               cwba_anchor_stats *stats, cwba_error *err);
/* Decodes a stream for a feature of shape (C, H, W) (CWBA_E_FORMAT when the
 * stream is for another shape or malformed) into xhat (C*H*W): code k
 * becomes mn + k * ((mx - mn) / (2^depth - 1)) in float32. */
cwba_status cwba_anchor_decode(const uint8_t *src, size_t len, int C, int H, int W, float *xhat,
                               cwba_error *err);

#ifdef __cplusplus
}
#endif
#endif
