/* libFuzzer target: image decoding (our code around libjpeg and libpng)
 * and, for images of moderate size, the resize, crop and tensor steps that
 * follow it in every image dataset. */
#include "fuzz_util.h"

#include "cwba/io.h"

/* Larger decoded images are only checked, not resized (time per input). */
#define FUZZ_RESIZE_MAX_PIXELS ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_copy(data, size);
    cwba_image img, crop = {0};
    cwba_error err = {0};
    cwba_status st = cwba_image_decode(buf, size, "fuzz.img", &img, &err);
    fuzz_check_status(st, &err);
    if (st == CWBA_OK) {
        if (img.width < 1 || img.height < 1 || !img.rgb) abort();
        fuzz_touch_bytes(img.rgb, (size_t)img.width * (size_t)img.height * 3);
        if ((size_t)img.width * (size_t)img.height <= FUZZ_RESIZE_MAX_PIXELS) {
            st = cwba_image_resize_crop(&img, 20, 16, &crop, &err);
            fuzz_check_status(st, &err);
            if (st == CWBA_OK) {
                if (crop.width != 16 || crop.height != 16) abort();
                static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
                float t[3 * 16 * 16];
                cwba_image_to_tensor(&crop, mean, sd, t);
                fuzz_touch(t, sizeof t / sizeof t[0]);
            }
        }
    } else if (img.rgb) {
        abort();
    }
    cwba_image_free(&crop);
    cwba_image_free(&img);
    free(buf);
    return 0;
}
