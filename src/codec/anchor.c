/* Standard-codec anchors: min-max quantization, channel tiling and the
 * 16-byte container around the codec streams of anchor_jpeg.c,
 * anchor_webp.c and anchor_hevc.c (see cwba/codec.h, docs/anchors.md). */
#include "codec/anchor_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest frame side each codec takes: JPEG 65500 (libjpeg's JPEG_MAX_DIMENSION),
 * WebP 16383 (WEBP_MAX_DIMENSION); for HEVC 8192 keeps x265's level limits. */
static int max_side(cwba_anchor_codec c)
{
    return c == CWBA_ANCHOR_JPEG ? 65500 : c == CWBA_ANCHOR_WEBP ? 16383 : 8192;
}

const char *cwba_anchor_codec_name(cwba_anchor_codec c)
{
    switch (c) {
    case CWBA_ANCHOR_JPEG: return "jpeg";
    case CWBA_ANCHOR_WEBP: return "webp";
    case CWBA_ANCHOR_HEVC: return "hevc";
    }
    return "unknown";
}

static int codec_valid(int c) { return c >= CWBA_ANCHOR_JPEG && c <= CWBA_ANCHOR_HEVC; }

cwba_status cwba_anchor_codec_parse(const char *name, cwba_anchor_codec *out, cwba_error *err)
{
    for (int c = CWBA_ANCHOR_JPEG; name && c <= CWBA_ANCHOR_HEVC; c++)
        if (!strcmp(name, cwba_anchor_codec_name((cwba_anchor_codec)c))) {
            *out = (cwba_anchor_codec)c;
            return CWBA_OK;
        }
    return cwba_fail(err, CWBA_E_ARG, "unknown codec '%s' (jpeg, webp, hevc)",
                     name ? name : "(null)");
}

int cwba_anchor_depth(cwba_anchor_codec c) { return c == CWBA_ANCHOR_HEVC ? 10 : 8; }

cwba_status cwba_anchor_quality_check(cwba_anchor_codec c, int quality, cwba_error *err)
{
    if (!codec_valid((int)c)) return cwba_fail(err, CWBA_E_ARG, "unknown codec %d", (int)c);
    int lo = c == CWBA_ANCHOR_JPEG ? 1 : 0, hi = c == CWBA_ANCHOR_HEVC ? 51 : 100;
    if (quality < lo || quality > hi)
        return cwba_fail(err, CWBA_E_ARG, "%s %s %d is outside %d..%d", cwba_anchor_codec_name(c),
                         c == CWBA_ANCHOR_HEVC ? "QP" : "quality", quality, lo, hi);
    return CWBA_OK;
}

int anchor_min_side(cwba_anchor_codec codec)
{
    /* libx265 3.5 refuses frames under 16 samples in either direction */
    return codec == CWBA_ANCHOR_HEVC ? 16 : 1;
}

cwba_status cwba_anchor_grid_make(cwba_anchor_codec codec, int C, int H, int W,
                                  cwba_anchor_grid *g, cwba_error *err)
{
    if (!codec_valid((int)codec)) return cwba_fail(err, CWBA_E_ARG, "unknown codec %d", (int)codec);
    if (C < 1 || H < 1 || W < 1 || C > 65535 || H > 65535 || W > 65535)
        return cwba_fail(err, CWBA_E_ARG, "anchor: feature shape %dx%dx%d outside 1..65535", C, H, W);
    /* near-square frame: cols * W ~ rows * H, i.e. cols^2 ~ C * H / W */
    double target = sqrt((double)C * H / W);
    long cols = 1;
    while (cols < target && cols < C) cols *= 2;
    if (cols > C) cols = C;
    long rows = (C + cols - 1) / cols;
    long fw = cols * W, fh = rows * H, mn = anchor_min_side(codec), mx = max_side(codec);
    if (fw < mn) fw = mn;
    if (fh < mn) fh = mn;
    if (fw > mx || fh > mx)
        return cwba_fail(err, CWBA_E_ARG, "anchor: %dx%dx%d tiles into a %ldx%ld frame, over %s's %ld",
                         C, H, W, fw, fh, cwba_anchor_codec_name(codec), mx);
    g->C = C;
    g->H = H;
    g->W = W;
    g->cols = (int)cols;
    g->rows = (int)rows;
    g->frame_w = (int)fw;
    g->frame_h = (int)fh;
    return CWBA_OK;
}

void cwba_anchor_tile(const cwba_anchor_grid *g, const uint16_t *codes, uint16_t pad,
                      uint16_t *frame)
{
    size_t fw = (size_t)g->frame_w;
    for (size_t i = 0; i < fw * (size_t)g->frame_h; i++) frame[i] = pad;
    for (int c = 0; c < g->C; c++) {
        size_t r0 = (size_t)(c / g->cols) * g->H, c0 = (size_t)(c % g->cols) * g->W;
        for (int y = 0; y < g->H; y++)
            memcpy(frame + (r0 + y) * fw + c0, codes + ((size_t)c * g->H + y) * g->W,
                   sizeof(uint16_t) * g->W);
    }
}

void cwba_anchor_untile(const cwba_anchor_grid *g, const uint16_t *frame, uint16_t *codes)
{
    size_t fw = (size_t)g->frame_w;
    for (int c = 0; c < g->C; c++) {
        size_t r0 = (size_t)(c / g->cols) * g->H, c0 = (size_t)(c % g->cols) * g->W;
        for (int y = 0; y < g->H; y++)
            memcpy(codes + ((size_t)c * g->H + y) * g->W, frame + (r0 + y) * fw + c0,
                   sizeof(uint16_t) * g->W);
    }
}

cwba_status anchor_buf_append(anchor_buf *b, const void *data, size_t n, cwba_error *err)
{
    if (n > SIZE_MAX - b->len) return cwba_fail(err, CWBA_E_NOMEM, "anchor: stream too large");
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) return cwba_fail(err, CWBA_E_NOMEM, "anchor: stream too large");
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return cwba_fail(err, CWBA_E_NOMEM, "anchor: out of memory for the stream");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return CWBA_OK;
}

/* ------------------------------------------------------------ quantization */

/* Range checks shared by both ends: the step must be a finite float. */
static cwba_status range_ok(float mn, float mx, int depth, cwba_error *err)
{
    float range = mx - mn;
    if (!isfinite(mn) || !isfinite(mx) || !(mn <= mx) || !isfinite(range) ||
        (range > 0 && !isfinite((float)((1 << depth) - 1) / range)))
        return cwba_fail(err, CWBA_E_UNSUPPORTED,
                         "anchor: feature range [%g, %g] cannot be quantized in float32", mn, mx);
    return CWBA_OK;
}

static void quantize(const float *x, size_t n, float mn, float mx, int depth, uint16_t *codes)
{
    float L = (float)((1 << depth) - 1), range = mx - mn;
    if (!(range > 0)) {
        memset(codes, 0, n * sizeof *codes);
        return;
    }
    float scale = L / range;
    for (size_t i = 0; i < n; i++) {
        float q = rintf((x[i] - mn) * scale);
        codes[i] = (uint16_t)(q < 0 ? 0 : q > L ? L : q);
    }
}

static void dequantize(const uint16_t *codes, size_t n, float mn, float mx, int depth, float *xhat)
{
    int L = (1 << depth) - 1;
    float step = (mx - mn) / (float)L;
    for (size_t i = 0; i < n; i++) xhat[i] = mn + (float)(codes[i] > L ? L : codes[i]) * step;
}

/* ------------------------------------------------------------ the container */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static unsigned get16(const uint8_t *p) { return p[0] | (unsigned)p[1] << 8; }
static void putf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(u >> (8 * i));
}
static float getf(const uint8_t *p)
{
    uint32_t u = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

cwba_status cwba_anchor_encode(cwba_anchor_codec codec, int quality, const float *x, int C,
                               int H, int W, uint8_t **out, size_t *len,
                               cwba_anchor_stats *stats, cwba_error *err)
{
    *out = NULL;
    *len = 0;
    cwba_anchor_grid g;
    cwba_status st;
    if ((st = cwba_anchor_quality_check(codec, quality, err)) ||
        (st = cwba_anchor_grid_make(codec, C, H, W, &g, err)))
        return st;
    size_t n = (size_t)C * H * W;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return cwba_fail(err, CWBA_E_ARG, "anchor: feature value %zu is not finite", i);
    float mn, mx;
    cwba_feature_range(x, n, &mn, &mx);
    int depth = cwba_anchor_depth(codec);
    if ((st = range_ok(mn, mx, depth, err))) return st;
    uint16_t *codes = malloc(n * sizeof *codes);
    uint16_t *frame = malloc((size_t)g.frame_w * g.frame_h * sizeof *frame);
    anchor_buf b = {NULL, 0, 0};
    uint8_t hdr[CWBA_ANCHOR_HEADER_BYTES];
    if (!codes || !frame) {
        st = cwba_fail(err, CWBA_E_NOMEM, "anchor: out of memory for a %dx%d frame", g.frame_w,
                       g.frame_h);
        goto done;
    }
    quantize(x, n, mn, mx, depth, codes);
    cwba_anchor_tile(&g, codes, 0, frame);
    hdr[0] = (uint8_t)codec;
    hdr[1] = (uint8_t)depth;
    put16(hdr + 2, (unsigned)C);
    put16(hdr + 4, (unsigned)H);
    put16(hdr + 6, (unsigned)W);
    putf(hdr + 8, mn);
    putf(hdr + 12, mx);
    if ((st = anchor_buf_append(&b, hdr, sizeof hdr, err))) goto done;
    switch (codec) {
    case CWBA_ANCHOR_JPEG: st = anchor_jpeg_encode(frame, g.frame_w, g.frame_h, quality, &b, err); break;
    case CWBA_ANCHOR_WEBP: st = anchor_webp_encode(frame, g.frame_w, g.frame_h, quality, &b, err); break;
    case CWBA_ANCHOR_HEVC:
        st = anchor_hevc_encode(frame, g.frame_w, g.frame_h, depth, quality, &b, err);
        break;
    }
    if (st) goto done;
    if (stats) {
        stats->header_bytes = sizeof hdr;
        stats->payload_bytes = b.len - sizeof hdr;
        stats->total_bytes = b.len;
        stats->grid = g;
    }
    *out = b.p;
    *len = b.len;
    b.p = NULL;
done:
    free(b.p);
    free(codes);
    free(frame);
    return st;
}

cwba_status cwba_anchor_decode(const uint8_t *src, size_t len, int C, int H, int W, float *xhat,
                               cwba_error *err)
{
    if (len < CWBA_ANCHOR_HEADER_BYTES)
        return cwba_fail(err, CWBA_E_FORMAT, "anchor stream: %zu bytes, shorter than its header", len);
    int codec = src[0], depth = src[1];
    if (!codec_valid(codec) || depth != cwba_anchor_depth((cwba_anchor_codec)codec))
        return cwba_fail(err, CWBA_E_FORMAT, "anchor stream: codec %d at depth %d is not one we write",
                         codec, depth);
    int sC = (int)get16(src + 2), sH = (int)get16(src + 4), sW = (int)get16(src + 6);
    if (sC != C || sH != H || sW != W)
        return cwba_fail(err, CWBA_E_FORMAT, "anchor stream: feature %dx%dx%d, expected %dx%dx%d",
                         sC, sH, sW, C, H, W);
    float mn = getf(src + 8), mx = getf(src + 12);
    cwba_status st = range_ok(mn, mx, depth, err);
    if (st) return cwba_fail(err, CWBA_E_FORMAT, "anchor stream: bad range [%g, %g]", mn, mx);
    cwba_anchor_grid g;
    if ((st = cwba_anchor_grid_make((cwba_anchor_codec)codec, C, H, W, &g, err))) return st;
    size_t n = (size_t)C * H * W;
    uint16_t *codes = malloc(n * sizeof *codes);
    uint16_t *frame = malloc((size_t)g.frame_w * g.frame_h * sizeof *frame);
    if (!codes || !frame) {
        free(codes);
        free(frame);
        return cwba_fail(err, CWBA_E_NOMEM, "anchor: out of memory for a %dx%d frame", g.frame_w,
                         g.frame_h);
    }
    const uint8_t *p = src + CWBA_ANCHOR_HEADER_BYTES;
    size_t pl = len - CWBA_ANCHOR_HEADER_BYTES;
    switch ((cwba_anchor_codec)codec) {
    case CWBA_ANCHOR_JPEG: st = anchor_jpeg_decode(p, pl, g.frame_w, g.frame_h, frame, err); break;
    case CWBA_ANCHOR_WEBP: st = anchor_webp_decode(p, pl, g.frame_w, g.frame_h, frame, err); break;
    case CWBA_ANCHOR_HEVC:
        st = anchor_hevc_decode(p, pl, g.frame_w, g.frame_h, depth, frame, err);
        break;
    }
    if (!st) {
        cwba_anchor_untile(&g, frame, codes);
        dequantize(codes, n, mn, mx, depth, xhat);
    }
    free(codes);
    free(frame);
    return st;
}
