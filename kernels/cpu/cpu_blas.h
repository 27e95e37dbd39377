/* OpenBLAS, loaded at run time so that serpent can choose its CPU kernels first.
 *
 * Debian's OpenBLAS 0.3.21 picks its kernels once, when the library is loaded, from the CPU id;
 * on some virtual machines it sees a generic "Prescott" and runs sgemm 4x slower than it can.
 * Loading it with dlopen lets us set OPENBLAS_CORETYPE from the instruction sets the CPU really
 * has (unless the user set it), before the library initialises. */
#ifndef SRP_CPU_BLAS_H
#define SRP_CPU_BLAS_H

#include "status.h"

enum { SRP_CBLAS_ROW_MAJOR = 101, SRP_CBLAS_NO_TRANS = 111, SRP_CBLAS_TRANS = 112 };

typedef void (*srp_sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta, float *c,
                             int ldc);

/* Loads the library once per process and sets its thread count; returns the sgemm entry. */
int srp_cpu_blas_load(int n_threads, srp_sgemm_fn *sgemm, srp_err *e);

/* The kernel set OpenBLAS chose, e.g. "SkylakeX" (after a successful load). */
const char *srp_cpu_blas_core(void);

#endif
