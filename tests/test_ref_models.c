/* CWBA_TEST_SLOW: full-size models; runs in the Release build only (see tests/CMakeLists.txt). */
/* The C networks against torchvision (tools/make_reference.py, committed
 * summaries in tests/data/ref/).
 *
 * For each architecture and two cases -- the project's trained Fashion-MNIST
 * models on 2 real test images at 64x64, and synthetic weights (seed 1) on a
 * synthetic 224x224 image with 1000 classes -- every split point's front-end
 * output and the logits are compared with what torchvision computed: shape,
 * 256 values at fixed indices (all values for small tensors), and the sums.
 *
 * Tolerances. The C code and PyTorch use different float32 summation orders
 * (GEMM blocking, im2col vs direct/oneDNN convolution), so results differ by
 * rounding only. That rounding error grows with depth and is proportional to
 * the magnitude of the activations, so every bound is relative to the scale
 * of the reference tensor, s = max(1, max|ref|):
 *   values:     max |c - ref|       <= VALUE_RTOL * s
 *   sum:        |sum_c - sum_ref|   <= VALUE_RTOL * (sum|ref| + numel)
 *   sum of x^2: |ss_c - ss_ref|     <= 2 * VALUE_RTOL * s * (sum|ref| + numel)
 *   max |x|:    |max_c - max_ref|   <= VALUE_RTOL * s
 * (the last three follow from the first applied to every element).
 * The model cards' 16 reference logits (rounded to 5 decimals by their
 * authors' PyTorch) are checked within CARD_ATOL = 1e-4 as the issue asks.
 * The largest difference at every split point is printed. */
#include "testutil.h"

#include <cwba.h>
#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Worst case measured with torch 1.13 (Debian) against this C code on x86-64
 * AVX2: 2.8e-6 (VGG16 224 px logits); 1e-5 leaves a margin for other CPUs'
 * summation orders while still catching any real error (a wrong bias, pad or
 * pooling window moves values by far more than 1e-5 of the tensor's range). */
#define VALUE_RTOL 1e-5
/* test_winograd runs the same checks, with the same bounds, on models with
 * Winograd arithmetic (cwba_model_set_conv_algo). Measured on AVX-512
 * (2026-11-27): VGG16 224 px logits 2.95e-6 of the scale (direct 2.76e-6),
 * ResNet18 224 px 6.3e-7 (direct 7.7e-7); card logits within 8.1e-6. */
static cwba_conv_algo g_algo = CWBA_CONV_DIRECT;
#define CARD_ATOL 1e-4
/* Preprocessing: bilinear weights and x/255, (x-m)/s in float32; a couple of
 * ulps of values of magnitude <= 2.1. */
#define INPUT_ATOL 2e-6

#define NUM_SAMPLES 256
#define FULL_LIMIT 4096
/* Samples per large tensor of the reference file being checked: 256, or the
 * file's "num_samples" (64 for the networks without a trained model). */
static size_t g_samples = NUM_SAMPLES;

static json_t *load_ref(const char *rel) {
    json_error_t jerr;
    json_t *root = json_load_file(tu_path(rel), 0, &jerr);
    if (root == NULL) {
        fail_msg("%s: %s (line %d)", rel, jerr.text, jerr.line);
    }
    assert_string_equal(json_string_value(json_object_get(root, "format")), "cwba-ref-1");
    return root;
}

static double jnum(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) {
        fail_msg("reference field %s missing or not a number", key);
    }
    return json_number_value(v);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    assert_non_null(p);
    return p;
}

/* Flat index of sample j, as in tools/make_reference.py. */
static size_t sample_index(size_t numel, size_t j) {
    if (numel <= FULL_LIMIT) {
        return j;
    }
    size_t step = numel / g_samples;
    size_t m = step > 1 ? step : 1;
    return j * step + (j * 7919u) % m;
}

/* Compares tensor x (numel values) with reference summary `ref`; returns the
 * largest sampled |difference| divided by the scale (for the report). */
static double compare_tensor(const char *what, const float *x, size_t numel, json_t *ref,
                             int quiet) {
    size_t ref_numel = (size_t)jnum(ref, "numel");
    if (ref_numel != numel) {
        fail_msg("%s: %zu elements, reference has %zu", what, numel, ref_numel);
    }
    double ref_maxabs = jnum(ref, "maxabs");
    double ref_sumabs = jnum(ref, "sumabs");
    double scale = ref_maxabs > 1.0 ? ref_maxabs : 1.0;

    double sum = 0.0, sumsq = 0.0, maxabs = 0.0;
    for (size_t i = 0; i < numel; i++) {
        double v = x[i];
        if (!isfinite(v)) {
            fail_msg("%s: non-finite value at %zu", what, i);
        }
        sum += v;
        sumsq += v * v;
        if (fabs(v) > maxabs) {
            maxabs = fabs(v);
        }
    }

    json_t *values = json_object_get(ref, "values");
    size_t nvals = json_array_size(values);
    size_t want_vals = numel <= FULL_LIMIT ? numel : g_samples;
    assert_int_equal(nvals, want_vals);
    double maxdiff = 0.0;
    size_t worst = 0;
    for (size_t j = 0; j < nvals; j++) {
        size_t idx = sample_index(numel, j);
        assert_true(idx < numel);
        double d = fabs((double)x[idx] - json_number_value(json_array_get(values, j)));
        if (d > maxdiff) {
            maxdiff = d;
            worst = idx;
        }
    }
    double dsum = fabs(sum - jnum(ref, "sum"));
    double dsumsq = fabs(sumsq - jnum(ref, "sumsq"));
    double dmax = fabs(maxabs - ref_maxabs);
    double mass = ref_sumabs + (double)numel;
    if (!quiet) {
        print_message("  %-11s n=%-8zu max|ref|=%-9.4g max|diff|=%.3g (rel %.3g @%zu)  "
                      "dsum/mass=%.2g dsumsq=%.2g dmax=%.2g\n",
                      what, numel, ref_maxabs, maxdiff, maxdiff / scale, worst, dsum / mass,
                      dsumsq / (scale * mass), dmax / scale);
    }
    if (maxdiff > VALUE_RTOL * scale) {
        fail_msg("%s: max |C - torch| = %.6g at flat index %zu exceeds %.3g * %.6g", what,
                 maxdiff, worst, VALUE_RTOL, scale);
    }
    if (dsum > VALUE_RTOL * mass) {
        fail_msg("%s: sum %.10g vs torch %.10g", what, sum, jnum(ref, "sum"));
    }
    if (dsumsq > 2.0 * VALUE_RTOL * scale * mass) {
        fail_msg("%s: sum of squares %.10g vs torch %.10g", what, sumsq, jnum(ref, "sumsq"));
    }
    if (dmax > VALUE_RTOL * scale) {
        fail_msg("%s: max |x| %.8g vs torch %.8g", what, maxabs, ref_maxabs);
    }
    return maxdiff / scale;
}

/* The reference split whose name is `name`; "layerN" is the alias of the
 * last "layerN.M". */
static json_t *find_ref_split(json_t *splits, const char *name) {
    char prefix[32];
    int alias = strncmp(name, "layer", 5) == 0 && strlen(name) == 6;
    snprintf(prefix, sizeof prefix, "%s.", name);
    size_t k;
    json_t *s, *found = NULL;
    json_array_foreach(splits, k, s) {
        const char *rname = json_string_value(json_object_get(s, "name"));
        if (strcmp(rname, name) == 0 || (alias && strncmp(rname, prefix, strlen(prefix)) == 0)) {
            found = s;
        }
    }
    return found;
}

/* (batch, 3, S, S) input of the fmnist64 case from fmnist_input.json. */
static float *fmnist_ref_input(int *batch, int *size) {
    json_t *root = load_ref("tests/data/ref/fmnist_input.json");
    json_t *shape = json_object_get(root, "shape");
    assert_int_equal(json_array_size(shape), 4);
    int n = (int)json_integer_value(json_array_get(shape, 0));
    int s = (int)json_integer_value(json_array_get(shape, 2));
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), 3);
    assert_true(n > 0 && n <= 16 && s > 0 && s <= 256);
    json_t *planes = json_object_get(root, "planes");
    size_t plane = (size_t)s * (size_t)s;
    assert_int_equal(json_array_size(planes), (size_t)n * plane);
    float *x = xmalloc((size_t)n * 3 * plane * sizeof(float)); /* (n, 3, s, s) */
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++) {
            for (size_t p = 0; p < plane; p++) {
                x[((size_t)i * 3 + (size_t)c) * plane + p] =
                    (float)json_number_value(json_array_get(planes, (size_t)i * plane + p));
            }
        }
    }
    json_decref(root);
    *batch = n;
    *size = s;
    return x;
}

/* Runs every split and the logits of `m` on `in` against reference file `rel`.
 * check_back: also feed each front-end output to forward_back and compare
 * with the reference logits (exercises every back end). */
static void check_model(cwba_model *m, json_t *ref, const float *in, int batch, int check_back) {
    cwba_error err;
    json_t *splits = json_object_get(ref, "splits");
    int num_splits = cwba_model_num_splits(m);
    int k = cwba_model_num_classes(m);
    assert_int_equal(k, (int)jnum(ref, "num_classes"));
    json_t *ref_logits = json_object_get(ref, "logits");
    assert_int_equal(json_array_size(ref_logits), (size_t)batch);

    /* Flattened reference logits as a summary object for compare_tensor. */
    size_t nlog = (size_t)batch * (size_t)k;
    json_t *lsum = json_object();
    json_t *lvals = json_array();
    double s = 0, ss = 0, sa = 0, ma = 0;
    for (int b = 0; b < batch; b++) {
        json_t *row = json_array_get(ref_logits, (size_t)b);
        assert_int_equal(json_array_size(row), (size_t)k);
        for (int j = 0; j < k; j++) {
            double v = json_number_value(json_array_get(row, (size_t)j));
            json_array_append_new(lvals, json_real(v));
            s += v;
            ss += v * v;
            sa += fabs(v);
            ma = fabs(v) > ma ? fabs(v) : ma;
        }
    }
    assert_true(nlog <= FULL_LIMIT); /* every logit is compared */
    json_object_set_new(lsum, "numel", json_integer((json_int_t)nlog));
    json_object_set_new(lsum, "sum", json_real(s));
    json_object_set_new(lsum, "sumsq", json_real(ss));
    json_object_set_new(lsum, "sumabs", json_real(sa));
    json_object_set_new(lsum, "maxabs", json_real(ma));
    json_object_set_new(lsum, "values", lvals);

    float *logits = xmalloc(nlog * sizeof(float)); /* (batch, K) */
    double t0 = cwba_now();
    if (cwba_model_forward(m, in, batch, logits, &err) != CWBA_OK) {
        fail_msg("forward: %s", err.msg);
    }
    print_message("  forward: %.2f s\n", cwba_now() - t0);
    compare_tensor("logits", logits, nlog, lsum, 0);
    float *back = check_back ? xmalloc(nlog * sizeof(float)) : NULL; /* (batch, K) */
    double back_maxdiff = 0.0;

    /* Every reference split must be reachable, every C split must have a reference. */
    size_t r;
    json_t *rs;
    json_array_foreach(splits, r, rs) {
        int idx;
        const char *name = json_string_value(json_object_get(rs, "name"));
        if (cwba_model_find_split(m, name, &idx, &err) != CWBA_OK) {
            fail_msg("reference split %s not found in the C model: %s", name, err.msg);
        }
        assert_string_equal(cwba_model_split_name(m, idx), name);
    }

    for (int sp = 0; sp < num_splits; sp++) {
        const char *name = cwba_model_split_name(m, sp);
        json_t *rsplit = find_ref_split(splits, name);
        if (rsplit == NULL) {
            fail_msg("C split %s has no torchvision reference", name);
        }
        int c, h, w;
        cwba_model_split_shape(m, sp, &c, &h, &w);
        json_t *shape = json_object_get(rsplit, "shape");
        if ((int)json_integer_value(json_array_get(shape, 0)) != batch ||
            (int)json_integer_value(json_array_get(shape, 1)) != c ||
            (int)json_integer_value(json_array_get(shape, 2)) != h ||
            (int)json_integer_value(json_array_get(shape, 3)) != w) {
            fail_msg("split %s: C shape (%d,%d,%d), torchvision (%d,%d,%d)", name, c, h, w,
                     (int)json_integer_value(json_array_get(shape, 1)),
                     (int)json_integer_value(json_array_get(shape, 2)),
                     (int)json_integer_value(json_array_get(shape, 3)));
        }
        size_t numel = (size_t)batch * (size_t)c * (size_t)h * (size_t)w;
        float *feat = xmalloc(numel * sizeof(float)); /* (batch, C, H, W) */
        if (cwba_model_forward_front(m, sp, in, batch, feat, &err) != CWBA_OK) {
            fail_msg("forward_front %s: %s", name, err.msg);
        }
        compare_tensor(name, feat, numel, rsplit, 0);
        if (check_back) {
            /* The back end fed with the front end's output must give the
             * torchvision logits too (and, up to rounding, the C forward's). */
            char what[48];
            snprintf(what, sizeof what, "back(%s)", name);
            if (cwba_model_forward_back(m, sp, feat, batch, back, &err) != CWBA_OK) {
                fail_msg("forward_back %s: %s", name, err.msg);
            }
            compare_tensor(what, back, nlog, lsum, 1);
            for (size_t i = 0; i < nlog; i++) {
                double d = fabs((double)back[i] - logits[i]);
                back_maxdiff = d > back_maxdiff ? d : back_maxdiff;
            }
        }
        free(feat);
    }
    if (check_back) {
        print_message("  forward_back at all %d splits: max |back - forward| = %.3g\n", num_splits,
                      back_maxdiff);
        assert_true(back_maxdiff <= VALUE_RTOL * (ma > 1.0 ? ma : 1.0));
    }
    free(back);
    free(logits);
    json_decref(lsum);
}

/* ------------------------------------------------- Fashion-MNIST 64x64 */

static void check_fmnist(cwba_arch arch) {
    char rel[128];
    snprintf(rel, sizeof rel, "tests/data/ref/%s_fmnist64.json", cwba_arch_name(arch));
    json_t *ref = load_ref(rel);
    print_message("%s fmnist64 (torch %s, torchvision %s)\n", cwba_arch_name(arch),
                  json_string_value(json_object_get(ref, "torch")),
                  json_string_value(json_object_get(ref, "torchvision")));
    cwba_error err;
    cwba_weights *w = NULL;
    const char *wpath = json_string_value(json_object_get(ref, "weights"));
    assert_non_null(wpath);
    if (cwba_weights_load(tu_path(wpath), &w, &err) != CWBA_OK) {
        fail_msg("%s: %s", wpath, err.msg);
    }
    cwba_model *m = NULL;
    if (cwba_model_create(arch, w, (int)jnum(ref, "input_size"), &m, &err) != CWBA_OK) {
        fail_msg("model_create %s: %s", cwba_arch_name(arch), err.msg);
    }
    cwba_weights_free(w);
    if (cwba_model_set_conv_algo(m, g_algo, &err) != CWBA_OK) fail_msg("%s", err.msg);
    int batch, size;
    float *in = fmnist_ref_input(&batch, &size);
    assert_int_equal(size, cwba_model_input_size(m));
    assert_int_equal(batch, (int)jnum(ref, "batch"));
    check_model(m, ref, in, batch, 1);
    free(in);
    cwba_model_free(m);
    json_decref(ref);
}

static void test_alexnet_fmnist64(void **state) {
    (void)state;
    check_fmnist(CWBA_ARCH_ALEXNET);
}
static void test_vgg16_fmnist64(void **state) {
    (void)state;
    check_fmnist(CWBA_ARCH_VGG16);
}
static void test_resnet18_fmnist64(void **state) {
    (void)state;
    check_fmnist(CWBA_ARCH_RESNET18);
}

/* ------------------------------------------- synthetic ImageNet geometry */

static void check_synth(cwba_arch arch) {
    char rel[128];
    snprintf(rel, sizeof rel, "tests/data/ref/%s_synth224.json", cwba_arch_name(arch));
    json_t *ref = load_ref(rel);
    print_message("%s synth224\n", cwba_arch_name(arch));
    json_t *wseed = json_object_get(json_object_get(ref, "weights"), "synthetic_seed");
    json_t *inp = json_object_get(ref, "input");
    assert_true(json_is_integer(wseed));
    assert_string_equal(json_string_value(json_object_get(inp, "synthetic_name")), "input");
    int size = (int)jnum(ref, "input_size");
    int batch = (int)jnum(ref, "batch");
    json_t *nsamp = json_object_get(ref, "num_samples");
    g_samples = nsamp ? (size_t)json_integer_value(nsamp) : NUM_SAMPLES;
    assert_true(g_samples >= 1 && g_samples <= NUM_SAMPLES);

    cwba_error err;
    cwba_weights *w = NULL;
    if (cwba_weights_synthetic(arch, (int)jnum(ref, "num_classes"),
                               (uint64_t)json_integer_value(wseed), &w, &err) != CWBA_OK) {
        fail_msg("weights_synthetic: %s", err.msg);
    }
    cwba_model *m = NULL;
    if (cwba_model_create(arch, w, size, &m, &err) != CWBA_OK) {
        fail_msg("model_create %s: %s", cwba_arch_name(arch), err.msg);
    }
    cwba_weights_free(w);
    if (cwba_model_set_conv_algo(m, g_algo, &err) != CWBA_OK) fail_msg("%s", err.msg);
    size_t n = (size_t)batch * 3 * (size_t)size * (size_t)size;
    float *in = xmalloc(n * sizeof(float)); /* (batch, 3, S, S) */
    cwba_synthetic_fill("input", (uint64_t)jnum(inp, "seed"), in, n);
    /* Back ends of every split at 224 px would add ~15 GFLOP per VGG16 split;
     * the 64 px case covers forward_back, so only fronts and logits here. */
    check_model(m, ref, in, batch, 0);
    g_samples = NUM_SAMPLES;
    free(in);
    cwba_model_free(m);
    json_decref(ref);
}

static void test_alexnet_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_ALEXNET);
}
static void test_vgg16_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_VGG16);
}
static void test_resnet18_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_RESNET18);
}

/* ------------------------------------------------ dataset + model cards */

static char *fmnist_spec(void) {
    const char *dir = tu_fmnist_dir();
    if (dir == NULL) {
        return NULL;
    }
    size_t len = strlen(dir) + 16;
    char *spec = xmalloc(len);
    snprintf(spec, len, "fmnist:%s:test", dir);
    return spec;
}

/* cwba_dataset_get's preprocessing against torch's (fmnist_input.json). */
static void test_fmnist_preprocessing(void **state) {
    (void)state;
    char *spec = fmnist_spec();
    if (spec == NULL) {
        skip();
    }
    int batch, size;
    float *want = fmnist_ref_input(&batch, &size);
    json_t *root = load_ref("tests/data/ref/fmnist_input.json");
    json_t *labels = json_object_get(root, "labels");
    cwba_preprocess pp = cwba_preprocess_fmnist();
    assert_int_equal(pp.size, size);
    cwba_dataset *d = NULL;
    cwba_error err;
    if (cwba_dataset_open(spec, &pp, &d, &err) != CWBA_OK) {
        fail_msg("dataset_open %s: %s", spec, err.msg);
    }
    size_t per = 3 * (size_t)size * (size_t)size;
    float *got = xmalloc(per * sizeof(float)); /* (3, S, S) */
    double maxdiff = 0.0;
    for (int i = 0; i < batch; i++) {
        int label = -2;
        if (cwba_dataset_get(d, i, got, &label, &err) != CWBA_OK) {
            fail_msg("dataset_get %d: %s", i, err.msg);
        }
        assert_int_equal(label, json_integer_value(json_array_get(labels, (size_t)i)));
        for (size_t p = 0; p < per; p++) {
            double diff = fabs((double)got[p] - want[(size_t)i * per + p]);
            maxdiff = diff > maxdiff ? diff : maxdiff;
        }
    }
    print_message("preprocessing: max |C - torch| = %.3g over %d images\n", maxdiff, batch);
    assert_true(maxdiff <= INPUT_ATOL);
    free(got);
    free(want);
    cwba_dataset_free(d);
    json_decref(root);
    free(spec);
}

/* The model cards' reference_logits_first16: dataset -> forward, end to end. */
static void check_card(cwba_arch arch) {
    char *spec = fmnist_spec();
    if (spec == NULL) {
        skip();
    }
    char rel[128], card_rel[128];
    snprintf(rel, sizeof rel, "tests/data/ref/%s_fmnist64.json", cwba_arch_name(arch));
    snprintf(card_rel, sizeof card_rel, "models/%s_fmnist64.json", cwba_arch_name(arch));
    json_t *ref = load_ref(rel);
    cwba_error err;
    cwba_card card;
    if (cwba_card_load(tu_path(card_rel), &card, &err) != CWBA_OK) {
        fail_msg("%s: %s", card_rel, err.msg);
    }
    cwba_weights *w = NULL;
    const char *wpath = json_string_value(json_object_get(ref, "weights"));
    if (cwba_weights_load(tu_path(wpath), &w, &err) != CWBA_OK) {
        fail_msg("%s: %s", wpath, err.msg);
    }
    cwba_model *m = NULL;
    if (cwba_model_create(arch, w, card.input_size, &m, &err) != CWBA_OK) {
        fail_msg("model_create: %s", err.msg);
    }
    cwba_weights_free(w);
    if (cwba_model_set_conv_algo(m, g_algo, &err) != CWBA_OK) fail_msg("%s", err.msg);
    assert_int_equal(card.num_classes, cwba_model_num_classes(m));
    cwba_preprocess pp = cwba_preprocess_fmnist();
    cwba_dataset *d = NULL;
    if (cwba_dataset_open(spec, &pp, &d, &err) != CWBA_OK) {
        fail_msg("dataset_open: %s", err.msg);
    }
    int n = card.num_ref_logits, k = card.num_classes;
    size_t per = 3 * (size_t)pp.size * (size_t)pp.size;
    float *in = xmalloc((size_t)n * per * sizeof(float));          /* (n, 3, S, S) */
    float *logits = xmalloc((size_t)n * (size_t)k * sizeof(float)); /* (n, K) */
    for (int i = 0; i < n; i++) {
        if (cwba_dataset_get(d, i, in + (size_t)i * per, NULL, &err) != CWBA_OK) {
            fail_msg("dataset_get %d: %s", i, err.msg);
        }
    }
    if (cwba_model_forward(m, in, n, logits, &err) != CWBA_OK) {
        fail_msg("forward: %s", err.msg);
    }
    double maxdiff = 0.0;
    for (size_t i = 0; i < (size_t)n * (size_t)k; i++) {
        double diff = fabs((double)logits[i] - card.ref_logits[i]);
        maxdiff = diff > maxdiff ? diff : maxdiff;
    }
    print_message("%s card: max |C logits - reference_logits_first16| = %.3g (%d images)\n",
                  cwba_arch_name(arch), maxdiff, n);
    assert_true(maxdiff <= CARD_ATOL);
    free(in);
    free(logits);
    cwba_dataset_free(d);
    cwba_model_free(m);
    cwba_card_free(&card);
    json_decref(ref);
    free(spec);
}

static void test_alexnet_card(void **state) {
    (void)state;
    check_card(CWBA_ARCH_ALEXNET);
}
static void test_vgg16_card(void **state) {
    (void)state;
    check_card(CWBA_ARCH_VGG16);
}
static void test_resnet18_card(void **state) {
    (void)state;
    check_card(CWBA_ARCH_RESNET18);
}

/* The same checks with Winograd arithmetic where it applies (AlexNet at
 * 64 px has only 3x3 planes, too small for it). */
static void test_winograd(void **state) {
    (void)state;
    g_algo = CWBA_CONV_WINOGRAD;
    check_fmnist(CWBA_ARCH_VGG16);
    check_fmnist(CWBA_ARCH_RESNET18);
    check_card(CWBA_ARCH_VGG16);
    check_card(CWBA_ARCH_RESNET18);
    check_synth(CWBA_ARCH_ALEXNET);
    check_synth(CWBA_ARCH_VGG16);
    check_synth(CWBA_ARCH_RESNET18);
    g_algo = CWBA_CONV_DIRECT;
}

/* The networks without a trained reference model: synthetic weights at
 * 224 px against torchvision (64 samples per split point). */
static void test_resnet34_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_RESNET34);
}
static void test_resnet50_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_RESNET50);
}
static void test_resnet101_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_RESNET101);
}
static void test_resnet152_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_RESNET152);
}
static void test_vgg11_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_VGG11);
    check_synth(CWBA_ARCH_VGG11_BN);
}
static void test_vgg13_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_VGG13);
    check_synth(CWBA_ARCH_VGG13_BN);
}
static void test_vgg16_bn_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_VGG16_BN);
}
static void test_vgg19_synth224(void **state) {
    (void)state;
    check_synth(CWBA_ARCH_VGG19);
    check_synth(CWBA_ARCH_VGG19_BN);
}

/* No argument: the three reference networks. "resnet" / "vgg": the other
 * networks of that family (tests/CMakeLists.txt runs them as their own
 * tests, so that ctest -j spreads them). */
int main(int argc, char **argv) {
    const struct CMUnitTest resnets[] = {
        cmocka_unit_test(test_resnet34_synth224),
        cmocka_unit_test(test_resnet50_synth224),
        cmocka_unit_test(test_resnet101_synth224),
        cmocka_unit_test(test_resnet152_synth224),
    };
    const struct CMUnitTest vggs[] = {
        cmocka_unit_test(test_vgg11_synth224),
        cmocka_unit_test(test_vgg13_synth224),
        cmocka_unit_test(test_vgg16_bn_synth224),
        cmocka_unit_test(test_vgg19_synth224),
    };
    if (argc > 1 && strcmp(argv[1], "resnet") == 0) {
        return cmocka_run_group_tests(resnets, NULL, NULL);
    }
    if (argc > 1 && strcmp(argv[1], "vgg") == 0) {
        return cmocka_run_group_tests(vggs, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmnist_preprocessing),
        cmocka_unit_test(test_alexnet_fmnist64),
        cmocka_unit_test(test_vgg16_fmnist64),
        cmocka_unit_test(test_resnet18_fmnist64),
        cmocka_unit_test(test_alexnet_card),
        cmocka_unit_test(test_vgg16_card),
        cmocka_unit_test(test_resnet18_card),
        cmocka_unit_test(test_alexnet_synth224),
        cmocka_unit_test(test_vgg16_synth224),
        cmocka_unit_test(test_resnet18_synth224),
        cmocka_unit_test(test_winograd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
