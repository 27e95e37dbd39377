#include "dtype.h"

const char *srp_dtype_name(srp_dtype t) {
    switch (t) {
    case SRP_F32:
        return "F32";
    case SRP_F16:
        return "F16";
    case SRP_BF16:
        return "BF16";
    case SRP_I32:
        return "I32";
    default:
        return "other";
    }
}

/* src may be unaligned (it points into a mapped checkpoint), hence the memcpy loads. */
void srp_convert_to_f32(float *dst, const void *src, srp_dtype t, size_t n) {
    const unsigned char *b = src;
    uint16_t h;
    switch (t) {
    case SRP_F32:
        memcpy(dst, src, n * 4);
        break;
    case SRP_BF16:
        for (size_t i = 0; i < n; i++) {
            memcpy(&h, b + 2 * i, 2);
            dst[i] = srp_bf16_to_f32(h);
        }
        break;
    case SRP_F16:
        for (size_t i = 0; i < n; i++) {
            memcpy(&h, b + 2 * i, 2);
            dst[i] = srp_f16_to_f32(h);
        }
        break;
    default:
        break;
    }
}
