/* Image decoding and torchvision preprocessing (src/io/image.c) against
 * references made by Debian's python3-pil 9.4 + python3-torchvision 0.14
 * (tools/make_imagenet_reference.py images). Tolerance: none — the decoded
 * image, the resized uint8 image and the float32 tensor must be bit-identical
 * (sha256 over the whole buffers); where the reference crop is committed as
 * PNG the max differences are printed as well. */
#include "testutil.h"

#include "cwba/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "tests/data/imagenet/images/"

typedef struct ref_line {
    char name[128];
    int w, h, rw, rh;
    char dec[65], res[65], ten[65];
} ref_line;

static int read_index(ref_line *out, int max)
{
    FILE *f = fopen(tu_path(DIR "index.txt"), "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        assert_true(n < max);
        ref_line *r = &out[n];
        assert_int_equal(sscanf(line, "%127s %d %d %d %d %64s %64s %64s", r->name, &r->w, &r->h, &r->rw,
                                &r->rh, r->dec, r->res, r->ten),
                         8);
        n++;
    }
    fclose(f);
    return n;
}

static void test_against_torchvision(void **s)
{
    (void)s;
    ref_line refs[64];
    int n = read_index(refs, 64);
    assert_true(n >= 15);
    const cwba_preprocess pp = cwba_preprocess_imagenet();
    assert_int_equal(pp.size, 224);
    assert_int_equal(pp.resize, 256);
    float *t = malloc(3 * 224 * 224 * sizeof(float)); /* (3, 224, 224) */
    float *t2 = malloc(3 * 224 * 224 * sizeof(float));
    assert_non_null(t);
    assert_non_null(t2);
    int exact = 0;
    for (int i = 0; i < n; i++) {
        const ref_line *r = &refs[i];
        char rel[256];
        snprintf(rel, sizeof rel, DIR "%.127s", r->name);
        cwba_error err = {0};
        cwba_image img, res, crop;
        cwba_status st = cwba_image_load(tu_path(rel), &img, &err);
        if (st) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(st, CWBA_OK);
        assert_int_equal(img.width, r->w);
        assert_int_equal(img.height, r->h);
        char hex[65];
        cwba_sha256_hex(img.rgb, (size_t)img.width * img.height * 3, hex);
        int dec_ok = strcmp(hex, r->dec) == 0;

        int rw, rh;
        cwba_resize_shorter_side(img.width, img.height, 256, &rw, &rh);
        assert_int_equal(rw, r->rw);
        assert_int_equal(rh, r->rh);
        assert_int_equal(cwba_image_resize_bilinear(&img, rw, rh, &res, &err), CWBA_OK);
        cwba_sha256_hex(res.rgb, (size_t)rw * rh * 3, hex);
        int res_ok = strcmp(hex, r->res) == 0;

        assert_int_equal(cwba_image_center_crop(&res, 224, 224, &crop, &err), CWBA_OK);
        cwba_image_to_tensor(&crop, pp.mean, pp.std, t);
        cwba_sha256_hex(t, 3 * 224 * 224 * sizeof(float), hex);
        int ten_ok = strcmp(hex, r->ten) == 0;

        /* The one-call path gives the same tensor. */
        assert_int_equal(cwba_image_preprocess_file(tu_path(rel), &pp, t2, &err), CWBA_OK);
        assert_memory_equal(t, t2, 3 * 224 * 224 * sizeof(float));

        char extra[160] = "";
        snprintf(rel, sizeof rel, DIR "%.127s.crop.png", r->name);
        if (tu_exists(tu_path(rel))) {
            /* Full comparison with the committed reference pixels; the
             * reference tensor is float32 (u8/255 - mean)/std of them (the
             * generator asserts torch's tensor equals that elementwise). */
            cwba_image ref;
            assert_int_equal(cwba_image_load(tu_path(rel), &ref, &err), CWBA_OK);
            assert_int_equal(ref.width, 224);
            int maxd = 0;
            for (size_t k = 0; k < 224 * 224 * 3; k++) {
                int d = abs((int)ref.rgb[k] - (int)crop.rgb[k]);
                if (d > maxd) maxd = d;
            }
            cwba_image_to_tensor(&ref, pp.mean, pp.std, t2);
            double maxf = 0;
            for (size_t k = 0; k < 3 * 224 * 224; k++) maxf = fmax(maxf, fabs((double)t[k] - t2[k]));
            snprintf(extra, sizeof extra, "  crop max|diff| %d/255, tensor max|diff| %.3g", maxd, maxf);
            assert_int_equal(maxd, 0);
            assert_true(maxf == 0.0);
            cwba_image_free(&ref);
        }
        fprintf(stderr, "  %-26s %4dx%-4d -> %4dx%-4d decode %s, resize %s, tensor %s%s\n", r->name, r->w,
                r->h, rw, rh, dec_ok ? "exact" : "DIFFERS", res_ok ? "exact" : "DIFFERS",
                ten_ok ? "bit-exact" : "DIFFERS", extra);
        exact += dec_ok && res_ok && ten_ok;
        cwba_image_free(&img);
        cwba_image_free(&res);
        cwba_image_free(&crop);
    }
    fprintf(stderr, "  %d/%d images bit-exact with Pillow + torchvision\n", exact, n);
    assert_int_equal(exact, n);
    free(t);
    free(t2);
}

/* torchvision CenterCrop of an image smaller than the crop pads with zeros,
 * the extra odd pixel going right/bottom. */
static void test_center_crop_pad(void **s)
{
    (void)s;
    cwba_image in = {5, 3, malloc(5 * 3 * 3)}, out;
    for (int i = 0; i < 45; i++) in.rgb[i] = (uint8_t)(i + 1);
    cwba_error err = {0};
    assert_int_equal(cwba_image_center_crop(&in, 6, 6, &out, &err), CWBA_OK);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++) {
                int want = (y >= 1 && y <= 3 && x < 5) ? in.rgb[((y - 1) * 5 + x) * 3 + c] : 0;
                assert_int_equal(out.rgb[(y * 6 + x) * 3 + c], want);
            }
    cwba_image_free(&out);
    /* Crop offsets: round((11 - 4) / 2) = round(3.5) = 4, round((9-4)/2) = round(2.5) = 2. */
    cwba_image big = {11, 9, malloc(11 * 9 * 3)};
    for (int i = 0; i < 11 * 9 * 3; i++) big.rgb[i] = (uint8_t)i;
    assert_int_equal(cwba_image_center_crop(&big, 4, 4, &out, &err), CWBA_OK);
    assert_int_equal(out.rgb[0], big.rgb[(2 * 11 + 4) * 3]);
    cwba_image_free(&out);
    cwba_image_free(&big);
    cwba_image_free(&in);
}

/* torchvision's int(256 * long / short). */
static void test_resize_size(void **s)
{
    (void)s;
    int w, h;
    cwba_resize_shorter_side(500, 375, 256, &w, &h);
    assert_int_equal(w, 341);
    assert_int_equal(h, 256);
    cwba_resize_shorter_side(333, 500, 256, &w, &h);
    assert_int_equal(w, 256);
    assert_int_equal(h, 384);
    cwba_resize_shorter_side(7, 3, 256, &w, &h);
    assert_int_equal(w, 597);
    assert_int_equal(h, 256);
}

static void expect_fail(const uint8_t *buf, size_t len, const char *what, cwba_status want, const char *needle)
{
    cwba_image img;
    cwba_error err = {0};
    cwba_status st = cwba_image_decode(buf, len, what, &img, &err);
    if (want) {
        if (st != want) fprintf(stderr, "  %s: got %s: %s\n", what, cwba_status_name(st), err.msg);
        assert_int_equal(st, want);
        assert_non_null(strstr(err.msg, what));
        if (needle) assert_non_null(strstr(err.msg, needle));
        assert_null(img.rgb);
    } else if (st == CWBA_OK) {
        cwba_image_free(&img);
    }
}

static void hostile(const char *name, int step)
{
    char rel[256];
    snprintf(rel, sizeof rel, DIR "%s", name);
    uint8_t *buf;
    size_t len;
    cwba_error err = {0};
    assert_int_equal(cwba_file_read_all(tu_path(rel), 0, &buf, &len, &err), CWBA_OK);
    /* Cut anywhere inside the image data: a clear error (Pillow: "image file
     * is truncated"). The last 16 bytes may only hold trailers. */
    int cuts = 0;
    for (size_t n = 0; n + 16 < len; n += (size_t)step, cuts++) expect_fail(buf, n, name, CWBA_E_FORMAT, NULL);
    cwba_error e2 = {0};
    cwba_image img;
    assert_int_equal(cwba_image_decode(buf, len / 2, name, &img, &e2), CWBA_E_FORMAT);
    fprintf(stderr, "  %s: %d truncations rejected, e.g. \"%s\"\n", name, cuts, e2.msg);
    /* Random corruption: any status, never a crash (checked under ASan). */
    uint8_t *copy = malloc(len);
    uint32_t rng = 99;
    int still_ok = 0;
    for (int t = 0; t < 300; t++) {
        memcpy(copy, buf, len);
        for (int k = 0; k < 4; k++) {
            rng = rng * 1103515245u + 12345u;
            copy[(rng >> 8) % len] ^= (uint8_t)(1 + (rng >> 24) % 255);
        }
        if (cwba_image_decode(copy, len, name, &img, &e2) == CWBA_OK) {
            still_ok++;
            cwba_image_free(&img);
        }
    }
    fprintf(stderr, "  %s: %d/300 corrupted copies still decoded (libjpeg/libpng tolerate some)\n", name,
            still_ok);
    free(copy);
    free(buf);
}

static void test_hostile(void **s)
{
    (void)s;
    hostile("a_rgb_500x375.jpg", 97);
    hostile("f_progressive_400x300.jpg", 89);
    hostile("g_palette_150x200.png", 31);
    hostile("o_interlaced_120x90.png", 211);
    expect_fail((const uint8_t *)"", 0, "empty.jpg", CWBA_E_FORMAT, "empty");
    expect_fail((const uint8_t *)"GIF89a\x01\x00\x01\x00", 10, "x.gif", CWBA_E_UNSUPPORTED, "GIF");
    expect_fail((const uint8_t *)"BM\x00\x00\x00\x00\x00\x00", 8, "x.bmp", CWBA_E_UNSUPPORTED, "BMP");
    expect_fail((const uint8_t *)"hello world", 11, "x.txt", CWBA_E_FORMAT, "not a JPEG or PNG");
    /* A missing file is an I/O error naming it. */
    cwba_image img;
    cwba_error err = {0};
    assert_int_equal(cwba_image_load("/nonexistent/x.jpg", &img, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.jpg"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torchvision),
        cmocka_unit_test(test_center_crop_pad),
        cmocka_unit_test(test_resize_size),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
