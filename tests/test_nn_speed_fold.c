/* The adaptive average pool folded into the first linear layer (AlexNet at
 * 64 px: 256x1x1 -> 6x6 -> classifier.1): the folded head must agree with
 * "pool, flatten, linear" computed here in double from the weights file, to
 * the tolerance the PyTorch reference tests use (1e-5 of the logit range),
 * and every split's back end must still give exactly the forward's logits. */
#include "testutil.h"
#include "cwba.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float *tensor(const cwba_weights *w, const char *name)
{
    const cwba_tensor_entry *e = cwba_weights_find(w, name);
    assert_non_null(e);
    return e->data;
}

/* y (out) = W (out, in) x (in) + b in double, optional ReLU. */
static void linear_d(const float *wt, const float *b, int out, int in, const double *x, double *y,
                     int relu)
{
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int i = 0; i < in; i++) s += (double)wt[(size_t)o * in + i] * x[i];
        y[o] = relu && s < 0 ? 0 : s;
    }
}

static void test_alexnet_fold(void **state)
{
    (void)state;
    cwba_error err;
    cwba_weights *w;
    cwba_model *m;
    if (cwba_weights_load(tu_path("models/alexnet_fmnist64.safetensors"), &w, &err) != CWBA_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(cwba_model_create(CWBA_ARCH_ALEXNET, w, 64, &m, &err), CWBA_OK);
    int split, C, H, W;
    assert_int_equal(cwba_model_find_split(m, "features.12", &split, &err), CWBA_OK);
    cwba_model_split_shape(m, split, &C, &H, &W);
    assert_int_equal(C, 256);
    assert_int_equal(H * W, 1); /* the pool replicates one value 36 times */
    const int K = cwba_model_num_classes(m), batch = 3;
    float *in = malloc(sizeof(float) * batch * 3 * 64 * 64);
    float *feat = malloc(sizeof(float) * batch * C);
    float *lf = malloc(sizeof(float) * batch * K), *lb = malloc(sizeof(float) * batch * K);
    assert_true(in && feat && lf && lb);
    cwba_synthetic_fill("fold-input", 3, in, (size_t)batch * 3 * 64 * 64);
    assert_int_equal(cwba_model_forward(m, in, batch, lf, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward_front(m, split, in, batch, feat, &err), CWBA_OK);
    /* front + back == forward at every split, bit for bit */
    for (int s = 0; s < cwba_model_num_splits(m); s++) {
        int c, h, ww;
        cwba_model_split_shape(m, s, &c, &h, &ww);
        float *f = malloc(sizeof(float) * batch * c * h * ww);
        assert_non_null(f);
        assert_int_equal(cwba_model_forward_front(m, s, in, batch, f, &err), CWBA_OK);
        assert_int_equal(cwba_model_forward_back(m, s, f, batch, lb, &err), CWBA_OK);
        assert_memory_equal(lf, lb, sizeof(float) * batch * K);
        free(f);
    }
    /* the unfolded head in double */
    double *x = malloc(sizeof(double) * 9216), *h1 = malloc(sizeof(double) * 4096);
    double *h2 = malloc(sizeof(double) * 4096), *y = malloc(sizeof(double) * K);
    assert_true(x && h1 && h2 && y);
    double worst = 0;
    for (int n = 0; n < batch; n++) {
        for (int c = 0; c < C; c++)
            for (int q = 0; q < 36; q++) x[c * 36 + q] = feat[(size_t)n * C + c];
        linear_d(tensor(w, "classifier.1.weight"), tensor(w, "classifier.1.bias"), 4096, 9216, x, h1, 1);
        linear_d(tensor(w, "classifier.4.weight"), tensor(w, "classifier.4.bias"), 4096, 4096, h1, h2, 1);
        linear_d(tensor(w, "classifier.6.weight"), tensor(w, "classifier.6.bias"), K, 4096, h2, y, 0);
        double range = 0;
        for (int k = 0; k < K; k++) range = fmax(range, fabs(y[k]));
        for (int k = 0; k < K; k++) {
            double d = fabs((double)lf[(size_t)n * K + k] - y[k]) / range;
            if (d > worst) worst = d;
        }
    }
    print_message("alexnet 64 px folded head vs double reference: max rel diff %.3g\n", worst);
    assert_true(worst < 1e-5);
    free(x);
    free(h1);
    free(h2);
    free(y);
    free(in);
    free(feat);
    free(lf);
    free(lb);
    cwba_model_free(m);
    cwba_weights_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alexnet_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
