/* cwba/nn.h — torchvision's AlexNet, VGG (11/13/16/19, with and without
 * batch norm) and ResNet (18/34/50/101/152) in eval mode, cut at any split
 * point into a front end (image -> feature) and a back end (feature -> logits). */
#ifndef CWBA_NN_H
#define CWBA_NN_H

#include "cwba/core.h"
#include "cwba/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cwba_arch {
    CWBA_ARCH_ALEXNET, CWBA_ARCH_VGG16, CWBA_ARCH_RESNET18,
    CWBA_ARCH_RESNET34, CWBA_ARCH_RESNET50, CWBA_ARCH_RESNET101, CWBA_ARCH_RESNET152,
    CWBA_ARCH_VGG11, CWBA_ARCH_VGG13, CWBA_ARCH_VGG19,
    CWBA_ARCH_VGG11_BN, CWBA_ARCH_VGG13_BN, CWBA_ARCH_VGG16_BN, CWBA_ARCH_VGG19_BN
} cwba_arch;

/* torchvision's names: "alexnet", "vgg11" .. "vgg19_bn", "resnet18" .. "resnet152". */
cwba_status cwba_arch_parse(const char *name, cwba_arch *out, cwba_error *err);
const char *cwba_arch_name(cwba_arch a);
/* Every architecture, i = 0 .. cwba_arch_count() - 1, in family order. */
int cwba_arch_count(void);
cwba_arch cwba_arch_at(int i);

typedef struct cwba_model cwba_model;

/* Builds the network from torchvision-named tensors. Every tensor is checked
 * for presence and shape (errors name the tensor); unknown float tensors are an
 * error; num_classes is read from the last layer. The model copies what it
 * needs: w may be freed afterwards. input_size is the square input side
 * (64 for the reference models, 224 for ImageNet). */
cwba_status cwba_model_create(cwba_arch arch, const cwba_weights *w, int input_size,
                              cwba_model **out, cwba_error *err);
void cwba_model_free(cwba_model *m); /* NULL accepted */

cwba_arch cwba_model_arch(const cwba_model *m);
int cwba_model_num_classes(const cwba_model *m);
int cwba_model_input_size(const cwba_model *m);

/* Split points in network order. Names follow torchvision module paths:
 * alexnet/vgg* "features.K"; resnet* "conv1" "bn1" "relu" "maxpool"
 * "layer1.0" "layer1.1" ... "layer1" ... "layer4" ("layerN" is the output
 * of layerN's last block, e.g. "layer1.1" in resnet18, "layer3.5" in resnet50). */
int cwba_model_num_splits(const cwba_model *m);
const char *cwba_model_split_name(const cwba_model *m, int split);
void cwba_model_split_shape(const cwba_model *m, int split, int *c, int *h, int *w);
cwba_status cwba_model_find_split(const cwba_model *m, const char *name, int *split,
                                  cwba_error *err);

/* Forward passes. Buffers are caller-owned; shapes:
 *   in (batch, 3, S, S) · feat (batch, C, H, W) of the split · logits (batch, K).
 * A model is not safe for concurrent calls (it owns its workspace). Results do
 * not depend on the thread count or on how a set of images is batched. */
cwba_status cwba_model_forward(cwba_model *m, const float *in, int batch, float *logits,
                               cwba_error *err);
cwba_status cwba_model_forward_front(cwba_model *m, int split, const float *in, int batch,
                                     float *feat, cwba_error *err);
cwba_status cwba_model_forward_back(cwba_model *m, int split, const float *feat, int batch,
                                    float *logits, cwba_error *err);

/* Convolution arithmetic.
 * CWBA_CONV_DIRECT (the default): every output is the fused-multiply-add
 *   chain of its im2col dot product, the same bits on every path, CPU and
 *   thread count.
 * CWBA_CONV_WINOGRAD: 3x3, stride-1, pad-1 convolutions on planes of 4x4
 *   or more, odd sides from 9 on (VGG16's; ResNet18's but for the 7x7
 *   layers at 224 px; AlexNet's 13x13 ones at 224 px) run as Winograd
 *   F(2x2, 3x3), 1.2-1.8x faster per layer, on CPUs
 *   with AVX-512 (elsewhere this setting changes nothing). Outputs differ
 *   from DIRECT by a few float32 roundings (relative ~1e-6 per layer,
 *   docs/architecture.md); they still do not depend on the thread count or
 *   on how images are batched. Switching builds (or frees) the transformed
 *   weights, 16/9 the size of those layers' weights. */
typedef enum cwba_conv_algo { CWBA_CONV_DIRECT = 0, CWBA_CONV_WINOGRAD = 1 } cwba_conv_algo;
cwba_status cwba_model_set_conv_algo(cwba_model *m, cwba_conv_algo algo, cwba_error *err);
cwba_conv_algo cwba_model_conv_algo(const cwba_model *m);
/* "direct" | "winograd" */
cwba_status cwba_conv_algo_parse(const char *s, cwba_conv_algo *out, cwba_error *err);
const char *cwba_conv_algo_name(cwba_conv_algo a);

/* Deterministic synthetic weights for arch with num_classes outputs, bit-identical
 * to tools/make_reference.py (docs/synthetic-weights.md defines the generator). */
cwba_status cwba_weights_synthetic(cwba_arch arch, int num_classes, uint64_t seed,
                                   cwba_weights **out, cwba_error *err);
/* Fills x (n floats) with the generator's stream for `name` mapped to [-1, 1). */
void cwba_synthetic_fill(const char *name, uint64_t seed, float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
