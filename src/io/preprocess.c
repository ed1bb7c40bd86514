/* Preprocessing shared by the dataset kinds: the reference models' settings,
 * their validation and the torch-exact bilinear resize. */
#include "io_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cwba_preprocess cwba_preprocess_fmnist(void)
{
    cwba_preprocess pp;
    memset(&pp, 0, sizeof pp); /* resize = 0: fmnist resizes straight to size */
    pp.size = 64;
    for (int c = 0; c < 3; c++) {
        pp.mean[c] = 0.2860f;
        pp.std[c] = 0.3530f;
    }
    return pp;
}

cwba_status cwba_preprocess_check(const cwba_preprocess *pp, const char *what, cwba_error *err)
{
    if (pp->size < 1 || pp->size > 4096)
        return cwba_fail(err, CWBA_E_ARG, "%s: input size %d outside 1..4096", what, pp->size);
    for (int c = 0; c < 3; c++) {
        if (!isfinite(pp->mean[c]) || !isfinite(pp->std[c]) || !(pp->std[c] > 0))
            return cwba_fail(err, CWBA_E_ARG, "%s: channel %d needs a finite mean and std > 0", what,
                             c);
    }
    return CWBA_OK;
}

/* Source index pair and weights for output index i along one axis, with the
 * arithmetic of PyTorch's CPU upsample kernel (align_corners=False):
 * scale = (float)in / out in float; src = scale*(i+0.5)-0.5 clamped at 0 and
 * lambda = src - floor(src) in double, lambda rounded to float once.
 * (Verified bit-exact against torch 1.13 for dyadic and non-dyadic scales;
 * for 28 -> 64 every quantity is exact, so the precision does not matter.) */
static void linear_source(int i, int in_size, int out_size, float scale, int *i0, int *i1,
                          float *l0, float *l1)
{
    if (in_size == out_size) {
        *i0 = *i1 = i;
        *l0 = 1.0f;
        *l1 = 0.0f;
        return;
    }
    double real = (double)scale * ((double)i + 0.5) - 0.5;
    if (real < 0.0) real = 0.0;
    int idx = (int)floor(real);
    if (idx > in_size - 1) idx = in_size - 1;
    double lam = real - (double)idx;
    if (lam < 0.0) lam = 0.0;
    if (lam > 1.0) lam = 1.0;
    *i0 = idx;
    *i1 = idx < in_size - 1 ? idx + 1 : idx;
    *l1 = (float)lam;
    *l0 = 1.0f - *l1;
}

void cwba_resize_bilinear(const float *in, int in_h, int in_w, float *out, int out_h, int out_w)
{
    /* in: (in_h, in_w), out: (out_h, out_w) */
    const float sh = (float)in_h / (float)out_h;
    const float sw = (float)in_w / (float)out_w;
    for (int y = 0; y < out_h; y++) {
        int y0, y1;
        float wy0, wy1;
        linear_source(y, in_h, out_h, sh, &y0, &y1, &wy0, &wy1);
        const float *r0 = in + (size_t)y0 * (size_t)in_w;
        const float *r1 = in + (size_t)y1 * (size_t)in_w;
        for (int x = 0; x < out_w; x++) {
            int x0, x1;
            float wx0, wx1;
            linear_source(x, in_w, out_w, sw, &x0, &x1, &wx0, &wx1);
            /* PyTorch's generic kernel interpolates along W, then H, each as
             * t0*w0 + t1*w1; its AVX2 build contracts that to fma(t0, w0, t1*w1).
             * Spelling the fma out reproduces torch bit for bit (checked against
             * torch 1.13 in tests/test_io_preprocess.c). */
            float t0 = fmaf(r0[x0], wx0, r0[x1] * wx1);
            float t1 = fmaf(r1[x0], wx0, r1[x1] * wx1);
            out[(size_t)y * (size_t)out_w + x] = fmaf(t0, wy0, t1 * wy1);
        }
    }
}

void cwba_preprocess_gray_u8(const uint8_t *img, int h, int w, const cwba_preprocess *pp,
                             float *work, float *out)
{
    const int s = pp->size;
    const size_t plane = (size_t)s * (size_t)s;
    float *x = work;                        /* (h, w) in [0, 1] */
    float *r = work + (size_t)h * (size_t)w; /* (s, s) resized */
    for (size_t i = 0; i < (size_t)h * (size_t)w; i++) x[i] = (float)img[i] / 255.0f;
    cwba_resize_bilinear(x, h, w, r, s, s);
    for (int c = 0; c < 3; c++) {
        float *o = out + (size_t)c * plane; /* (s, s) */
        for (size_t i = 0; i < plane; i++) o[i] = (r[i] - pp->mean[c]) / pp->std[c];
    }
}
