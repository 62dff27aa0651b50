/* Compute backends: devices, memory and copies. The ops the models run are in kernels/ops.h.
 *
 * A backend owns its device, streams and library handles. The CPU backend is always built and
 * is the reference and the fallback; the CUDA backend is built when nvcc is found and is chosen
 * at run time when a device exists. Selection: kern_backend_init(&be, NULL, &err) reads
 * NVL_BACKEND (cpu | cuda | auto, default auto): auto tries CUDA, then CPU.
 *
 *   kern_backend *be = NULL;
 *   if (kern_backend_init(&be, "auto", &err) != NVL_OK) ...;
 *   kern_matmul(be, &y, &x, &w, &err);      // kernels/ops.h
 *   kern_backend_free(be);
 *
 * Tensors handed to ops live in the backend's memory space: host memory for the CPU backend,
 * device memory (kern_buffer_alloc) for CUDA. A backend object is used by one thread at a time.
 */
#ifndef KERNELS_BACKEND_H
#define KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"
#include "base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kern_backend kern_backend;

enum kern_backend_kind { KERN_BACKEND_KIND_CPU = 0, KERN_BACKEND_KIND_CUDA = 1 };

/* Ops a backend may or may not implement for a given weight dtype (kern_backend_supports). */
enum kern_op {
    KERN_OP_MATMUL = 0,
    KERN_OP_RMSNORM,
    KERN_OP_COUNT
};

/* name: "cpu", "cuda", "auto" or NULL (= NVL_BACKEND env, default auto).
 * @return NVL_OK; NVL_ERR_NO_DEVICE when "cuda" was asked and no device (or no CUDA build) is
 * there; NVL_ERR_INVALID_ARG for an unknown name. */
nvl_status kern_backend_init(kern_backend **out, const char *name, nvl_err *err);
void kern_backend_free(kern_backend *be); /* NULL-tolerant */
enum kern_backend_kind kern_backend_kind_of(const kern_backend *be);
const char *kern_backend_name(const kern_backend *be);
/* One line: "CPU: 2 threads, avx512_bf16" / "CUDA: NVIDIA H100 80GB HBM3, sm_90, 79 GiB". */
const char *kern_backend_description(const kern_backend *be);
int kern_backend_supports(const kern_backend *be, enum kern_op op, nvl_dtype weight_dtype);
/* Free and total bytes of the backend's memory (a device's; the CPU backend answers
 * NVL_ERR_UNSUPPORTED: host memory is the caller's to ask the OS about). */
nvl_status kern_backend_mem_info(kern_backend *be, size_t *free_bytes, size_t *total_bytes, nvl_err *err);

/* Per-op profile. With it on (kern_backend_profile(be, 1), or NVL_PROFILE_OPS=1 when a backend
 * starts) every op call of kernels/ops.h is timed in the backend's own order (a device's events,
 * so kernels queued behind others are timed alone; the CPU's clock) and summed by key: the op's
 * name, and for matmul also its weight's name with numbers folded to '#' ("matmul
 * backbone.layers.#.mixer.in_proj.weight"). Ops captured into a graph are not timed (profile
 * with graphs off). The marks cost a few microseconds of host time per op: the step times of a
 * profiled run are not the product's. kern_backend_profile_report prints the keys (calls, total
 * and mean milliseconds, share of the total) by total time, to out under label, then starts
 * again; it waits for the device. @return the number of keys printed (0 with profiling off). */
void kern_backend_profile(kern_backend *be, int on); /* (off and on again: starts over) */
int kern_backend_profiling(const kern_backend *be);  /* 1 while on */
int kern_backend_profile_report(kern_backend *be, FILE *out, const char *label);

/* The backend the models (llm/, vision/, api/engine) run on. NVL_BACKEND unset or auto: the GPU
 * when the driver reports a device and the CUDA backend starts (every GPU test passed on an H200,
 * bench/RESULTS.md 2026-12-04), else the CPU (a backend that fails to start is a warning);
 * NVL_BACKEND=cpu: the CPU; NVL_BACKEND=cuda: the GPU, and without a device it is an error that
 * says why, never a silent CPU run. */
nvl_status kern_backend_init_models(kern_backend **out, nvl_err *err);
/* 1 when be is a device that auto chose (NVL_BACKEND unset or auto). */
int kern_backend_auto_device(const kern_backend *be);
/* After loading `what` (a model folder) on a backend ended with st: 1 when that backend was a
 * device auto chose and st is NVL_ERR_NOMEM (the model does not fit it: kern_weights_place, or the
 * caches after it), having warned with err's message that it runs on the CPU instead; the caller
 * then loads it again on a CPU backend. 0 otherwise (NVL_BACKEND=cuda keeps it an error). */
int kern_backend_fall_back_to_cpu(int auto_device, nvl_status st, const char *what, const nvl_err *err);

/* Checks every environment variable the kernels read (NVL_BACKEND, NVL_THREADS, NVL_CPU_KERNEL,
 * NVL_CUDA_SYNC, NVL_CUDA_GRAPHS, NVL_LOG_LEVEL, NVL_FAIL_ALLOC_AFTER): a value that cannot be honoured is an
 * error naming the variable, its value and why. Applies NVL_THREADS to the calling thread.
 * nanovl calls it before any command runs. */
nvl_status kern_env_check(nvl_err *err);
/* Applies NVL_THREADS to the calling thread (once per thread; OpenMP's thread count is per
 * thread): called by kern_cpu backend creation, kern_env_check and every thread that runs ops. */
void kern_threads_apply(void);
/* OpenMP threads the CPU ops of the calling thread use (1 without OpenMP). */
int kern_cpu_threads(void);
/* The CPU's matrix features and the kernels the CPU ops take on them, one line, e.g.
 * "avx512_bf16 avx512f avx2 fma; matmul avx512f; bf16 avx512bf16 + oneDNN 2.6.3 >= 32 rows". */
const char *kern_cpu_kernels(void);

/* Whether this binary has the CUDA backend compiled in. */
int kern_cuda_built(void);
/* Number of CUDA devices visible (0 without a driver/device or without a CUDA build). Any
 * error from device discovery counts as no device; *why (may be NULL) gets the reason. */
int kern_cuda_device_count(const char **why);

/* Memory in the backend's space. */
nvl_status kern_buffer_alloc(kern_backend *be, size_t bytes, void **out, nvl_err *err);
void kern_buffer_free(kern_backend *be, void *p);
nvl_status kern_copy_to_backend(kern_backend *be, void *dst, const void *host_src, size_t bytes,
                                nvl_err *err);
nvl_status kern_copy_to_host(kern_backend *be, void *host_dst, const void *src, size_t bytes,
                             nvl_err *err);
nvl_status kern_synchronize(kern_backend *be, nvl_err *err);
/* Within the backend's memory: n bytes from src to dst (the ranges may overlap), or zeroed. */
nvl_status kern_copy_within(kern_backend *be, void *dst, const void *src, size_t bytes, nvl_err *err);
nvl_status kern_set_zero(kern_backend *be, void *dst, size_t bytes, nvl_err *err);

/* Rates a device reaches on its own, measured now, for benchmarks to state their figures as
 * fractions of (bench/bench_llm.c): copy_gbs, device-to-device copy of 1 GiB counting the bytes
 * read and written (the memory bandwidth a decode step is bound by); gemm_bf16_tflops, a cuBLAS
 * BF16 GEMM of 8192^3 with f32 accumulation on constant data. Takes about a second. The CPU
 * backend answers NVL_ERR_UNSUPPORTED (bench_llm measures host bandwidth itself). */
typedef struct kern_device_rates {
    double copy_gbs;
    double gemm_bf16_tflops;
} kern_device_rates;
nvl_status kern_backend_measure(kern_backend *be, kern_device_rates *out, nvl_err *err);

/* Graphs (CUDA graphs; design-gpu-batching.md §4.4, kernels.md §6). On a backend that can
 * capture, the ops called between kern_capture_begin and kern_capture_end are recorded into a
 * graph instead of run (nothing executes during capture; no op may synchronise or allocate
 * there), and kern_graph_launch runs the recorded work again. Ops read what changes from step to
 * step (sequence tables, token ids: kern_step_tables in kernels/ops.h) from fixed device buffers,
 * so one graph serves every step of its shape. A graph refers to device memory by address: once
 * the backend has moved memory it may have recorded (op scratch or the step tables grew),
 * kern_graph_current answers 0 and the caller captures anew (and frees the old one).
 * The CPU runs eagerly: kern_backend_can_capture answers 0 and the others NVL_ERR_UNSUPPORTED.
 * Errors: NVL_ERR_DEVICE with the CUDA error when capture or instantiation fails (an op that is not
 * capturable); capture is then ended and nothing was run. */
typedef struct kern_graph kern_graph;
int kern_backend_can_capture(const kern_backend *be);
nvl_status kern_capture_begin(kern_backend *be, nvl_err *err);
/* Ends the capture begun on be; *out receives the graph on success (NULL otherwise). */
nvl_status kern_capture_end(kern_backend *be, kern_graph **out, nvl_err *err);
nvl_status kern_graph_launch(kern_backend *be, kern_graph *g, nvl_err *err);
int kern_graph_current(const kern_backend *be, const kern_graph *g);
void kern_graph_free(kern_backend *be, kern_graph *g); /* NULL-tolerant */

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BACKEND_H
