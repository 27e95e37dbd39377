/* Element types of checkpoint tensors and backend buffers, and scalar conversions. */
#ifndef SRP_DTYPE_H
#define SRP_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { SRP_F32, SRP_F16, SRP_BF16, SRP_I32, SRP_DTYPE_OTHER } srp_dtype;

static inline size_t srp_dtype_size(srp_dtype t) {
    switch (t) {
    case SRP_F32:
    case SRP_I32:
        return 4;
    case SRP_F16:
    case SRP_BF16:
        return 2;
    default:
        return 0;
    }
}

const char *srp_dtype_name(srp_dtype t);

static inline float srp_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t srp_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float srp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Converts n elements of type t at src to float. */
void srp_convert_to_f32(float *dst, const void *src, srp_dtype t, size_t n);

#endif
