/* bfloat16.c — float32 <-> bfloat16 (stored as uint16 bits) conversion for loading bf16
 * checkpoints without a NumPy bf16 dtype and for feeding bf16 GEMMs. */
#include "kernels/bfloat16.h"

#include <string.h>

/* src is (n,) bf16 bits, dst is (n,) float32: a bf16 is the top half of a float32. */
void
tf_bf16_to_f32(const uint16_t *src, float *dst, int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= 1 << 20)
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, sizeof(bits));
    }
}

void
tf_f32_to_bf16(const float *src, uint16_t *dst, int64_t n)
{
    /* round to nearest even on the dropped 16 bits (as oneDNN and torch do); inputs are
     * finite activations, so NaN payloads need no care */
#pragma omp parallel for schedule(static) if (n >= 1 << 18)
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, src + i, sizeof(bits));
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        dst[i] = (uint16_t)(bits >> 16);
    }
}

/* The level bfloat16 kernels run at now (show_config). */
tf_isa_level
tf_bfloat16_isa(void)
{
    return TF_ISA_REFERENCE;
}
