#include "cpu_blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *lib;
static srp_sgemm_fn sgemm_fn;
static void (*set_threads_fn)(int);
static char *(*corename_fn)(void);

/* The OpenMP build shares serpent's OpenMP thread pool instead of spinning up its own. */
static const char *const candidates[] = {
    "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-openmp/libopenblas.so.0",
    "libopenblas.so.0",
    "libopenblas.so",
};

static void choose_coretype(void) {
    if (getenv("OPENBLAS_CORETYPE")) return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 0);
#endif
}

int srp_cpu_blas_load(int n_threads, srp_sgemm_fn *sgemm, srp_err *e) {
    pthread_mutex_lock(&lock);
    if (!lib) {
        choose_coretype();
        const char *forced = getenv("SERPENT_OPENBLAS");
        if (forced) {
            lib = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
        } else {
            for (size_t i = 0; !lib && i < sizeof candidates / sizeof candidates[0]; i++)
                lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        }
        if (lib) {
            sgemm_fn = (srp_sgemm_fn)dlsym(lib, "cblas_sgemm");
            set_threads_fn = (void (*)(int))dlsym(lib, "openblas_set_num_threads");
            corename_fn = (char *(*)(void))dlsym(lib, "openblas_get_corename");
        }
        if (!lib || !sgemm_fn) {
            if (lib) dlclose(lib);
            lib = NULL;
            pthread_mutex_unlock(&lock);
            return srp_err_set(e, SRP_EUNSUPPORTED,
                               "the CPU backend needs OpenBLAS (Debian package libopenblas0): "
                               "cannot load %s",
                               forced ? forced : "libopenblas.so.0");
        }
    }
    if (set_threads_fn && n_threads > 0) set_threads_fn(n_threads);
    *sgemm = sgemm_fn;
    pthread_mutex_unlock(&lock);
    return 0;
}

const char *srp_cpu_blas_core(void) {
    return corename_fn ? corename_fn() : "unknown";
}
