/* Programmatic dependent launch (Hopper): a kernel launched with srp_cuda_launch_pdl may start
 * while the kernel before it on the stream is still running, so whatever it does before
 * pdl_wait() — the GEMV's first weight loads, which depend on nothing earlier in the step —
 * overlaps that kernel. pdl_wait() returns once every earlier kernel has finished and its writes
 * are visible; it is a no-op in a kernel launched the ordinary way. pdl_launch_dependents() lets
 * the next such kernel start as soon as every block of this one has run it; kernels on the
 * decode path call it first thing (it orders nothing: the dependent still waits in pdl_wait). */
#ifndef SRP_CUDA_PDL_CUH
#define SRP_CUDA_PDL_CUH

static __device__ __forceinline__ void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_launch_dependents(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

#endif
