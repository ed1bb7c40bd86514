/* cwba — channel-wise bit allocation for deep visual feature quantization.
 *
 * A CNN (torchvision AlexNet, VGG16, ResNet18) is split at an intermediate
 * layer; the feature there is quantized with a different number of intervals
 * per channel, chosen so that the channels that matter most to the back end's
 * output get the most precision at a fixed average bit budget.
 *
 * Worked example (error handling shortened):
 *
 *   cwba_error err;
 *   cwba_weights *w;   cwba_weights_load("models/resnet18_fmnist64.safetensors", &w, &err);
 *   cwba_model *m;     cwba_model_create(CWBA_ARCH_RESNET18, w, 64, &m, &err);
 *   int split;         cwba_model_find_split(m, "layer3", &split, &err);
 *   cwba_model_forward_front(m, split, image, 1, feature, &err);   // (256,4,4)
 *   ... cwba_calibrate_image / cwba_evaluate_image with a cwba_backend that
 *       calls cwba_model_forward_back(m, split, ...) ...
 *
 * Modules: core (status, files), io (weights, data, npy), nn (models),
 * quant (quantizers, allocation), codec (bitstream). Every function returns a
 * cwba_status and fills an optional cwba_error with one line; the library
 * never prints or exits. Ownership is stated at each declaration. */
#ifndef CWBA_H
#define CWBA_H

#include "cwba/core.h"
#include "cwba/io.h"
#include "cwba/nn.h"
#include "cwba/quant.h"
#include "cwba/codec.h"
#include "cwba/rd.h"

#endif
