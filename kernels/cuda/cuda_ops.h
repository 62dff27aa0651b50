/* What the CUDA backend (backend_cuda.cu) gives its op table (ops_cuda.cu): the stream, the
 * cuBLAS handle, op scratch, the launch check and weight placement. C-callable (only
 * <cuda_runtime_api.h> and cuBLAS's handle type are needed).
 *
 *   k<<<grid, block, 0, kern_cuda_stream(be)>>>(...);  return kern_cuda_after_launch(be, "op", err);
 */
#ifndef KERNELS_CUDA_CUDA_OPS_H
#define KERNELS_CUDA_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "../ops.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cublasContext;
cudaStream_t kern_cuda_stream(kern_backend *be);
struct cublasContext *kern_cuda_cublas(kern_backend *be);
/* cuBLASLt's handle and the workspace its matmuls get (fixed: captured matmuls never allocate). */
struct cublasLtContext;
struct cublasLtContext *kern_cuda_cublaslt(kern_backend *be, void **workspace, size_t *bytes);
/* Device scratch of at least `bytes`, valid until the next call (it waits for queued work
 * before growing). NULL with err set when the device is out of memory. */
void *kern_cuda_scratch(kern_backend *be, size_t bytes, nvl_err *err);
/* After a launch: the launch error, and with NVL_CUDA_SYNC=1 the kernel's own. */
nvl_status kern_cuda_after_launch(kern_backend *be, const char *op, nvl_err *err);
/* Whether a graph capture is running (ops must not upload tables or grow scratch then). */
int kern_cuda_capturing(kern_backend *be);
/* The device's largest dynamic shared memory per block a kernel may opt in to (227 KiB on
 * Hopper, less on other parts: kernels that need more take their simpler twins). */
size_t kern_cuda_smem_optin(kern_backend *be);
/* (ops_cuda.cu) Kernel attributes, once per backend on its device (the dynamic shared memory
 * opt-in of the tensor-core kernels, up to smem_optin bytes). */
cudaError_t kern_cuda_ops_init(size_t smem_optin);
/* The device's multiprocessors (work split to fill them). */
int kern_cuda_sm_count(kern_backend *be);
/* Device copies of the step's tables (kern_step_tables). */
typedef struct kern_cuda_tables {
    const kern_seq *seqs;   /* [n_seq] */
    const int32_t *row_seq; /* [n_rows] the sequence of each row (-1: none) */
    const uint8_t *dec;     /* [n_rows] 1 where the row's sequence is a decode sequence */
    const int32_t *ids;     /* [n_rows] token ids */
    const uint8_t *mask;    /* [n_rows] vision mask, or NULL */
    int64_t n_rows;
} kern_cuda_tables;
/* row_seq[r] = the sequence of row r (-1: none), dec[r] = 1 where that sequence decodes, for rows
 * [0, rows): the row tables of the step tables and of an op's own upload. */
void kern_cuda_row_tables(int32_t *row_seq, uint8_t *dec, int64_t rows, const kern_seq *seqs, int n_seq);
/* The step tables' entry of the op table (kern_step_tables). */
nvl_status kern_cuda_step_tables(kern_backend *be, const kern_seq *seqs, int n_seq, const int32_t *ids,
                                 const uint8_t *mask, int64_t n_rows, nvl_err *err);
/* 1 and the device seqs, row_seq, dec when seqs[0..n_seq) equals the step's table; else 0. */
int kern_cuda_step_seqs(kern_backend *be, const kern_seq *seqs, int n_seq, kern_cuda_tables *out);
/* 1 and the device ids (and mask when given) when they equal the step's; else 0. */
int kern_cuda_step_ids(kern_backend *be, const int32_t *ids, const uint8_t *mask, int64_t n_rows, kern_cuda_tables *out);
/* Uploads a host weight tensor once; t then describes the device copy (freed with be). */
nvl_status kern_cuda_place_weight(kern_backend *be, nvl_tensor *t, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_CUDA_CUDA_OPS_H
