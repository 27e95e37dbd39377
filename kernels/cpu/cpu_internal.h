/* Shared by the CPU backend's files; not part of any public interface. */
#ifndef SRP_CPU_INTERNAL_H
#define SRP_CPU_INTERNAL_H

#include <math.h>

#include "backend.h"
#include "cpu_blas.h"

typedef struct cpu_backend {
    srp_backend base;
    int n_threads;
    srp_sgemm_fn sgemm;
    srp_batch batch; /* the current step's batch (arrays owned by the caller) */
} cpu_backend;

static inline cpu_backend *cpu_of(srp_backend *be) {
    return (cpu_backend *)be;
}

static inline float *cpu_row(srp_mat m, int64_t r) {
    return (float *)m.data + r * m.ld;
}

/* Below this many multiply-adds a loop stays on the calling thread: waking the pool costs more
 * than it saves (decode steps of small models are made of such loops). */
#define CPU_PAR_MIN (1 << 16)

static inline float cpu_silu(float x) {
    return x / (1.0f + expf(-x));
}

/* torch.nn.functional.softplus with beta 1 and threshold 20 */
static inline float cpu_softplus(float x) {
    return x > 20.0f ? x : log1pf(expf(x));
}

static inline float srp_cpu_act(srp_act act, float v) {
    switch (act) {
    case SRP_ACT_RELU2:
        return v > 0 ? v * v : 0.0f;
    case SRP_ACT_RELU:
        return v > 0 ? v : 0.0f;
    case SRP_ACT_GELU:
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case SRP_ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case SRP_ACT_SILU:
        return cpu_silu(v);
    }
    return v;
}

int srp_cpu_check_f32(const char *op, srp_mat m, srp_err *e);

int srp_cpu_conv1d(srp_backend *be, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                   int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e);
int srp_cpu_ssd(srp_backend *be, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
                srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e);
int srp_cpu_selective_scan(srp_backend *be, const srp_s6_params *p, srp_mat x, srp_mat dt,
                           srp_mat B, srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y,
                           srp_err *e);
int srp_cpu_rope(srp_backend *be, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e);
int srp_cpu_rmsnorm_gate(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                         float eps, srp_mat out, srp_err *e);
int srp_cpu_add(srp_backend *be, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e);
int srp_cpu_attention(srp_backend *be, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                      const srp_kv_layer *kv, srp_mat out, srp_err *e);
int srp_cpu_moe_route(srp_backend *be, const srp_moe_route_params *p, srp_mat logits,
                      const srp_moe_routing *r, srp_err *e);
int srp_cpu_moe_experts(srp_backend *be, const srp_moe_experts_params *p, const srp_moe_routing *r,
                        srp_mat x, srp_mat out, float alpha, int accumulate, srp_err *e);

#endif
