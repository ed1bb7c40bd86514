/* HEVC intra anchor: libavcodec's libx265 encoder and its native hevc
 * decoder, one 4:0:0 (monochrome) frame at 8 or 10 bits (x265 signals the
 * range-extension profile that covers 4:0:0). Fixed QP, all-intra, no
 * adaptive quantization, and single-threaded x265 (no thread pool, one
 * frame thread, no wavefronts) so that the same frame gives the same bytes
 * on every run; the encoder-information SEI that x265 writes by default is
 * switched off (it is text about the encoder, not needed to decode). */
#include "codec/anchor_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
/* The library never prints: libavcodec's log goes nowhere. */
static void quiet(void) { av_log_set_level(AV_LOG_QUIET); }

static cwba_status av_fail(cwba_error *err, cwba_status st, const char *what, int rc)
{
    char b[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(rc, b, sizeof b);
    return cwba_fail(err, st, "hevc anchor: %s: %s", what, b);
}

cwba_status anchor_hevc_encode(const uint16_t *pix, int w, int h, int depth, int qp,
                               anchor_buf *out, cwba_error *err)
{
    pthread_once(&quiet_once, quiet);
    const AVCodec *codec = avcodec_find_encoder_by_name("libx265");
    if (!codec)
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "hevc anchor: libavcodec has no libx265 encoder");
    AVCodecContext *ctx = avcodec_alloc_context3(codec);
    AVFrame *fr = av_frame_alloc();
    AVPacket *pk = av_packet_alloc();
    cwba_status st = CWBA_OK;
    int rc;
    char params[256];
    if (!ctx || !fr || !pk) {
        st = cwba_fail(err, CWBA_E_NOMEM, "hevc anchor: out of memory");
        goto done;
    }
    ctx->width = w;
    ctx->height = h;
    ctx->pix_fmt = depth == 10 ? AV_PIX_FMT_GRAY10LE : AV_PIX_FMT_GRAY8;
    ctx->time_base = (AVRational){1, 25};
    ctx->thread_count = 1;
    ctx->gop_size = 1;
    ctx->max_b_frames = 0;
    snprintf(params, sizeof params,
             "qp=%d:keyint=1:aq-mode=0:pools=none:frame-threads=1:wpp=0:"
             "lookahead-slices=0:info=0:hash=0:log-level=none",
             qp);
    if ((rc = av_opt_set(ctx->priv_data, "preset", "medium", 0)) < 0 ||
        (rc = av_opt_set(ctx->priv_data, "x265-params", params, 0)) < 0) {
        st = av_fail(err, CWBA_E_INTERNAL, "setting x265 options", rc);
        goto done;
    }
    if ((rc = avcodec_open2(ctx, codec, NULL)) < 0) {
        st = av_fail(err, CWBA_E_UNSUPPORTED, "opening libx265", rc);
        goto done;
    }
    fr->format = ctx->pix_fmt;
    fr->width = w;
    fr->height = h;
    if ((rc = av_frame_get_buffer(fr, 0)) < 0) {
        st = av_fail(err, CWBA_E_NOMEM, "frame buffer", rc);
        goto done;
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = fr->data[0] + (size_t)y * fr->linesize[0];
        const uint16_t *src = pix + (size_t)y * w;
        if (depth == 10)
            memcpy(row, src, sizeof(uint16_t) * w); /* GRAY10LE: host order on x86/arm */
        else
            for (int x = 0; x < w; x++) row[x] = (uint8_t)src[x];
    }
    fr->pts = 0;
    if ((rc = avcodec_send_frame(ctx, fr)) < 0 || (rc = avcodec_send_frame(ctx, NULL)) < 0) {
        st = av_fail(err, CWBA_E_INTERNAL, "encoding", rc);
        goto done;
    }
    while ((rc = avcodec_receive_packet(ctx, pk)) == 0) {
        st = anchor_buf_append(out, pk->data, (size_t)pk->size, err);
        av_packet_unref(pk);
        if (st) goto done;
    }
    if (rc != AVERROR_EOF) st = av_fail(err, CWBA_E_INTERNAL, "encoding", rc);
done:
    av_packet_free(&pk);
    av_frame_free(&fr);
    avcodec_free_context(&ctx);
    return st;
}

cwba_status anchor_hevc_decode(const uint8_t *src, size_t len, int w, int h, int depth,
                               uint16_t *pix, cwba_error *err)
{
    pthread_once(&quiet_once, quiet);
    if (len == 0 || len > (size_t)INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE)
        return cwba_fail(err, CWBA_E_FORMAT, "hevc anchor: stream of %zu bytes", len);
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_HEVC);
    if (!codec) return cwba_fail(err, CWBA_E_UNSUPPORTED, "hevc anchor: libavcodec has no hevc decoder");
    AVCodecContext *ctx = avcodec_alloc_context3(codec);
    AVFrame *fr = av_frame_alloc();
    AVPacket *pk = av_packet_alloc();
    cwba_status st = CWBA_OK;
    int rc, frames = 0;
    if (!ctx || !fr || !pk || av_new_packet(pk, (int)len) < 0) {
        st = cwba_fail(err, CWBA_E_NOMEM, "hevc anchor: out of memory");
        goto done;
    }
    memcpy(pk->data, src, len); /* the decoder reads the zeroed padding after it */
    ctx->thread_count = 1;
    ctx->thread_type = 0;
    if ((rc = avcodec_open2(ctx, codec, NULL)) < 0) {
        st = av_fail(err, CWBA_E_UNSUPPORTED, "opening the hevc decoder", rc);
        goto done;
    }
    int want = depth == 10 ? AV_PIX_FMT_GRAY10LE : AV_PIX_FMT_GRAY8;
    if ((rc = avcodec_send_packet(ctx, pk)) < 0 || (rc = avcodec_send_packet(ctx, NULL)) < 0) {
        st = av_fail(err, CWBA_E_FORMAT, "decoding", rc);
        goto done;
    }
    while ((rc = avcodec_receive_frame(ctx, fr)) == 0) {
        if (++frames > 1 || fr->width != w || fr->height != h || fr->format != want) {
            st = cwba_fail(err, CWBA_E_FORMAT,
                           "hevc anchor: stream is not one %dx%d monochrome %d-bit frame", w, h,
                           depth);
            goto done;
        }
        for (int y = 0; y < h; y++) {
            const uint8_t *row = fr->data[0] + (size_t)y * fr->linesize[0];
            uint16_t *dst = pix + (size_t)y * w;
            if (depth == 10)
                memcpy(dst, row, sizeof(uint16_t) * w);
            else
                for (int x = 0; x < w; x++) dst[x] = row[x];
        }
        av_frame_unref(fr);
    }
    if (rc != AVERROR_EOF)
        st = av_fail(err, CWBA_E_FORMAT, "decoding", rc);
    else if (frames != 1)
        st = cwba_fail(err, CWBA_E_FORMAT, "hevc anchor: stream holds no picture");
done:
    av_packet_free(&pk);
    av_frame_free(&fr);
    avcodec_free_context(&ctx);
    return st;
}
