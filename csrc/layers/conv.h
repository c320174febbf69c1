/* conv.h — the Conv1d / Conv2d types' C-level API: a convolution over a batch of 1-D or 2-D
 * feature maps, y = act(conv(x, W) + b) [+ residual], one oneDNN convolution primitive.
 *
 * Shapes (torch.nn.Conv1d / Conv2d): W (OC, IC / G, k...) with G = groups; x (B, IC, sp...)
 * ("channels first", NCHW / NCW) or (B, sp..., IC) ("channels last", NHWC / NWC); y the same
 * layout with OC channels and out[i] = (in[i] + pad_l[i] + pad_r[i] - dilation[i] (k[i] - 1)
 * - 1) / stride[i] + 1 (floor) per spatial axis. Channels last is what the primitive runs on
 * (x and y used in place); channels first is reordered into and out of the calling thread's
 * scratch around it. */
#ifndef TFCORE_LAYERS_CONV_H
#define TFCORE_LAYERS_CONV_H

#include "tfcore.h"

#include <pthread.h>

typedef struct {
    PyObject_HEAD int nsp; /* spatial axes: 1 (Conv1d) or 2 (Conv2d) */
    int64_t in_channels;   /* IC */
    int64_t out_channels;  /* OC */
    int64_t groups;        /* G: IC and OC are multiples of it; G = IC = OC is depthwise */
    int64_t kernel[2];     /* k per spatial axis (unused axes 1) */
    int64_t stride[2];     /* >= 1 */
    int64_t dilation[2];   /* >= 1, torch's convention (1 = dense; oneDNN's is this - 1) */
    int64_t pad_l[2];      /* zero padding before / after each spatial axis */
    int64_t pad_r[2];
    int act;              /* tf_act, fused as an eltwise post-op */
    dnnl_data_type_t wdt; /* dnnl_f32, dnnl_bf16 or dnnl_s8 (how the weights are stored) */
    int bf16_emulated;    /* bf16 on a CPU without AVX512_BF16: bf16-rounded float32 weights
                              * and inputs, float32 convolution (same values as native bf16) */
    int qmax;             /* int8: effective weight range [-qmax, qmax]: 127, or 64 without VNNI */
    float wunpack;        /* int8: packed integer * wunpack = quantized weight (2 where oneDNN
                              * halves the packed weights: no VNNI), else 1 */
    dnnl_memory_desc_t wmd; /* packed weights layout chosen by oneDNN */
    void *weights;          /* packed weights, owned */
    float *bias;            /* (OC,) owned copy (BatchNorm folded in), or NULL */
    float *wscale;          /* (OC,) per-output-channel scales of int8 weights, else NULL */
    int64_t ngemm;          /* > 0: the convolution runs as GEMMs over im2col rows (conv.c says
                             * which shapes), one per group; 0: a oneDNN convolution */
    PyObject **gemm;        /* ngemm owned Linears (OC/G, k... IC/G): the group's weights in
                             * the (tap, channel) order of kernels/im2col.h's rows */
    /* float32 weights repacked, once, for input lengths whose kernel wants another layout
     * than wmd (see choose_kernel in conv.c); set once under repack_lock, then read-only */
    pthread_mutex_t repack_lock;
    dnnl_memory_desc_t repack_wmd; /* NULL until a call needs it */
    void *repacked;                /* owned */
} tf_conv;

/* The output extent of each spatial axis for input extents in_sp (nsp of them); -1 if some
 * axis would be empty (input smaller than the dilated kernel after padding). */
int tf_conv_out_size(const tf_conv *conv, const int64_t *in_sp, int64_t *out_sp);

/* x is (B, IC, sp...) or, channels_last, (B, sp..., IC), dense; y the same layout with OC
 * channels and tf_conv_out_size's extents; other (y's shape) is the residual for TF_POST_ADD,
 * NULL otherwise (TF_POST_ACCUM adds into y). Call without the GIL after tf_threads_begin().
 * 0 / -1 with err filled. */
int tf_conv_forward(const tf_conv *conv, const float *x, int channels_last, int64_t B,
                    const int64_t *in_sp, float *y, tf_post post, const float *other, tf_err *err);

#endif /* TFCORE_LAYERS_CONV_H */
