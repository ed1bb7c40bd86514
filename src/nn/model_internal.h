/* Internal interfaces of the models (src/nn/model_*.c): the structure every
 * network is described by, shared by the files that build it from the family
 * tables (model_build.c), load and pack its weights (model_load.c), run it
 * (model_run.c) and generate synthetic weights for it (model_synth.c).
 *
 * A network is a chain of "units", one per split point (features[K] for
 * AlexNet/VGG; conv1, bn1, relu, maxpool and the residual blocks for
 * ResNet), followed by a head (adaptive average pool, flatten, linear
 * layers). The front end runs units 0..u, the back end units u+1.. and the
 * head. Fusing a batch norm / ReLU into the preceding convolution's epilogue
 * performs the very same float operations on the very same values as running
 * them separately, so a cut between them changes nothing. */
#ifndef CWBA_NN_MODEL_INTERNAL_H
#define CWBA_NN_MODEL_INTERNAL_H

#include "cwba/nn.h"
#include "nn/nn_internal.h"

#include <stdint.h>

#define BN_EPS 1e-5f
#define MAX_INPUT_SIZE 8192
#define MAX_CLASSES 1000000
#define MAX_UNITS 64    /* ResNet152: 54, VGG19 with batch norm: 53 */
#define MAX_SPLITS 64   /* ResNet152: 58 */
#define MAX_SPECS 1024  /* ResNet152: 777 float tensors */
#define MAX_LINEAR 3
#define NN_UNIT_CONVS 4 /* conv, conv2, conv3, down */
#define NN_CONV_PATHS 8 /* entries of CONV_PATHS (model_run.c) */

/* ------------------------------------------------------------ structure */

typedef enum unit_kind { U_CONV, U_BN, U_RELU, U_MAXPOOL, U_BLOCK } unit_kind;

typedef struct conv_layer {
    int cin, cout, k, stride, pad, has_bias;
    char prefix[48];  /* torchvision module path, e.g. "layer2.0.downsample.0" */
    float *apack;     /* packed (cout, cin*k*k) */
    float *tpack;     /* the same packed for nn_gemm_direct_t_run, or NULL */
    float *upack;     /* Winograd F(2x2, 3x3) weights (nn_wino_pack), or NULL */
    float *bias;      /* (cout) or NULL */
    int use_taps;     /* small plane with much padding: run through taps */
    nn_tapconv taps;
    nn_conv_geom geom; /* at the model's input size */
} conv_layer;

typedef struct bn_layer {
    int c;
    char prefix[48];
    float *alpha, *beta; /* (c) folded eval-mode constants */
} bn_layer;

typedef struct unit {
    unit_kind kind;
    char name[24];             /* split name */
    int in_c, in_h, in_w;      /* per sample */
    int out_c, out_h, out_w;
    conv_layer conv;           /* U_CONV; block conv1 */
    bn_layer bn;               /* U_BN; block bn1 */
    int pk, ps, pp;            /* U_MAXPOOL kernel, stride, padding */
    conv_layer conv2, down;    /* U_BLOCK */
    bn_layer bn2, down_bn;
    conv_layer conv3;          /* U_BLOCK, Bottleneck */
    bn_layer bn3;
    int has_down;
    int bottleneck;            /* conv1 1x1, conv2 3x3 (the stride), conv3 1x1 */
    int out_pb;                /* border of the output in the blocked layout */
} unit;

typedef struct linear_layer {
    int in, out, relu;
    char prefix[48];
    float *apack; /* packed (out, in) */
    float *bias;  /* (out) */
} linear_layer;

typedef struct split_point {
    char name[24];
    int unit;
} split_point;

struct cwba_model {
    cwba_arch arch;
    int input_size, num_classes;
    unit units[MAX_UNITS];
    int nunits;
    split_point splits[MAX_SPLITS];
    int nsplits;
    int pool_out; /* adaptive average pool output side */
    linear_layer lin[MAX_LINEAR];
    int nlin;
    int pool_folded; /* lin[0] reads the unpooled (C, h, w) feature (fold_pool) */
    size_t max_act;      /* floats per sample of the largest activation */
    size_t max_blk;      /* the same in the blocked layout (with borders) */
    int blk_ok;          /* every convolution can run on blocked activations */
    long max_cols;       /* largest GEMM width per sample (output plane) */
    size_t scratch_floats;
    size_t tap_floats;   /* per sample, of tapbuf */
    int max_kdim;        /* largest cin*k*k of a convolution */
    /* workspace, grown on demand */
    float *tapbuf;
    float *dirbuf;       /* padded input of the direct convolutions */
    size_t dir_floats;   /* its size */
    int *offbuf;         /* (max_kdim) their tap offsets */
    cwba_conv_algo conv_algo;
    float *wbuf;         /* Winograd transforms (nn_wino_tmp_floats) */
    size_t wbuf_floats;
    int *woff;           /* (threads, max cin) Winograd channel offsets */
    int ws_batch;
    float *buf[4];
    nn_pool *pool;
    int pool_threads;
    float **scratch;
    long conv_calls[NN_CONV_PATHS]; /* per path of CONV_PATHS (model_run.c), for tests */
};


/* ---------------------------------------------------------- tensor specs */

typedef enum tkind { T_WEIGHT, T_BIAS, T_BN_WEIGHT, T_BN_BIAS, T_BN_MEAN, T_BN_VAR } tkind;

typedef struct tspec {
    char name[64];
    int ndim;
    int64_t shape[4];
    tkind kind;
} tspec;

typedef struct speclist {
    tspec v[MAX_SPECS];
    int n;
} speclist;

/* model_build.c */
int nn_model_valid_arch(cwba_arch a);
/* The last linear layer's tensor name and input features (num_classes is
 * read from it before the model is built). */
void nn_model_last_layer(cwba_arch a, const char **name, int *in);
int nn_model_is_resnet(cwba_arch a);
void nn_model_build(cwba_model *m, cwba_arch arch, int num_classes);
/* The float tensors of m in torchvision's state_dict order. */
void nn_model_specs(const cwba_model *m, speclist *s);
const char *nn_model_shape_str(char *buf, size_t len, int ndim, const int64_t *shape);
cwba_status nn_model_check_weights(const cwba_weights *w, const speclist *s, const char *arch,
                                   cwba_error *err);
/* Propagates the spatial sizes; fails with CWBA_E_ARG when a layer's output
 * would be empty. */
cwba_status nn_model_shapes(cwba_model *m, int s, cwba_error *err);
/* Borders and sizes of the blocked layout (see model_build.c). */
void nn_model_blocked(cwba_model *m);
/* The convolutions of a unit (cs holds NN_UNIT_CONVS); returns their count. */
int nn_model_unit_convs(const unit *u, const conv_layer **cs);
/* The model's i-th convolution slot (NN_UNIT_CONVS per unit; unused slots
 * are zeroed, without a t-pack). */
conv_layer *nn_model_conv_slot(cwba_model *m, int i);

/* model_run.c */
void nn_model_free_workspace(cwba_model *m);
/* Convolutions run through the named path ("taps", "direct", "gemm-1x1",
 * "gemm-im2col", "winograd", "blocked", "blocked-image", "image-via-plain")
 * since the last reset (-1: no such path); tests check which path layers take. */
long nn_model_conv_calls(const cwba_model *m, const char *path);
void nn_model_conv_calls_reset(cwba_model *m);

#endif
