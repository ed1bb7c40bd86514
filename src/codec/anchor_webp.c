/* WebP anchor (libwebp, lossy VP8): the frame is the luma plane of a
 * YUV 4:2:0 picture written directly (full 0..255 range, no RGB
 * conversion), chroma held at 128 so that it costs almost nothing. Encoder
 * settings: libwebp's default preset at the given quality, method 4 (what
 * cwebp and Pillow use), single-threaded. */
#include "codec/anchor_internal.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/encode.h>

cwba_status anchor_webp_encode(const uint16_t *pix, int w, int h, int quality, anchor_buf *out,
                               cwba_error *err)
{
    WebPConfig cfg;
    WebPPicture pic;
    WebPMemoryWriter wr;
    if (!WebPConfigPreset(&cfg, WEBP_PRESET_DEFAULT, (float)quality) || !WebPPictureInit(&pic))
        return cwba_fail(err, CWBA_E_INTERNAL, "webp anchor: libwebp version mismatch");
    cfg.method = 4;
    cfg.thread_level = 0;
    if (!WebPValidateConfig(&cfg))
        return cwba_fail(err, CWBA_E_INTERNAL, "webp anchor: invalid configuration");
    pic.use_argb = 0;
    pic.colorspace = WEBP_YUV420;
    pic.width = w;
    pic.height = h;
    if (!WebPPictureAlloc(&pic)) return cwba_fail(err, CWBA_E_NOMEM, "webp anchor: out of memory");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) pic.y[(size_t)y * pic.y_stride + x] = (uint8_t)pix[(size_t)y * w + x];
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    for (int y = 0; y < ch; y++) {
        memset(pic.u + (size_t)y * pic.uv_stride, 128, (size_t)cw);
        memset(pic.v + (size_t)y * pic.uv_stride, 128, (size_t)cw);
    }
    WebPMemoryWriterInit(&wr);
    pic.writer = WebPMemoryWrite;
    pic.custom_ptr = &wr;
    cwba_status st = CWBA_OK;
    if (!WebPEncode(&cfg, &pic))
        st = cwba_fail(err, CWBA_E_INTERNAL, "webp anchor: encoding failed (libwebp error %d)",
                       (int)pic.error_code);
    else
        st = anchor_buf_append(out, wr.mem, wr.size, err);
    WebPMemoryWriterClear(&wr);
    WebPPictureFree(&pic);
    return st;
}

cwba_status anchor_webp_decode(const uint8_t *src, size_t len, int w, int h, uint16_t *pix,
                               cwba_error *err)
{
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(src, len, &f) != VP8_STATUS_OK)
        return cwba_fail(err, CWBA_E_FORMAT, "webp anchor: not a WebP stream");
    if (f.width != w || f.height != h || f.has_alpha || f.has_animation || f.format != 1)
        return cwba_fail(err, CWBA_E_FORMAT, "webp anchor: stream is not one lossy %dx%d frame", w, h);
    size_t ysz = (size_t)w * h, cw = (size_t)(w + 1) / 2, csz = cw * (size_t)((h + 1) / 2);
    uint8_t *buf = malloc(ysz + 2 * csz);
    if (!buf) return cwba_fail(err, CWBA_E_NOMEM, "webp anchor: out of memory");
    cwba_status st = CWBA_OK;
    if (!WebPDecodeYUVInto(src, len, buf, ysz, w, buf + ysz, csz, (int)cw, buf + ysz + csz, csz,
                           (int)cw))
        st = cwba_fail(err, CWBA_E_FORMAT, "webp anchor: corrupt stream");
    else
        for (size_t i = 0; i < ysz; i++) pix[i] = buf[i];
    free(buf);
    return st;
}
