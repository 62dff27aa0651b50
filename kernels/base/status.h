/* Status codes and error details shared by every nanovl module.
 *
 * Design: fallible functions return an nvl_status (0 = OK, negative = error) and put the
 * human-readable detail into an optional nvl_err that the caller owns. Passing NULL for the
 * nvl_err is always allowed; the code alone is then the whole answer.
 *
 *   nvl_err err = {0};
 *   nvl_status st = nvl_safetensors_open(&st_file, "model.safetensors", &err);
 *   if (st != NVL_OK) fprintf(stderr, "%s: %s\n", nvl_status_str(st), err.msg);
 */
#ifndef KERNELS_BASE_STATUS_H
#define KERNELS_BASE_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one table of codes: X(name, value, short description). Keep values stable: they are
 * part of the socket API's error replies. */
#define NVL_STATUS_TABLE(X)                                                                \
    X(NVL_OK, 0, "ok")                                                                     \
    X(NVL_ERR_NOMEM, -1, "out of memory")              /* an allocation failed */          \
    X(NVL_ERR_INVALID_ARG, -2, "invalid argument")     /* caller broke a documented rule */ \
    X(NVL_ERR_FORMAT, -3, "malformed input")           /* bytes do not follow the format */ \
    X(NVL_ERR_IO, -4, "i/o error")                     /* open/read/write/mmap failed */    \
    X(NVL_ERR_NOT_FOUND, -5, "not found")              /* a named file/tensor/key is absent */ \
    X(NVL_ERR_UNSUPPORTED, -6, "unsupported")          /* valid but not handled (codec, dtype, build option) */ \
    X(NVL_ERR_SHAPE, -7, "shape mismatch")             /* tensor shape differs from expected */ \
    X(NVL_ERR_DTYPE, -8, "dtype mismatch")             /* tensor dtype differs from expected */ \
    X(NVL_ERR_LIMIT, -9, "limit exceeded")             /* a configured cap (size, pixels, pages, frames, tokens) */ \
    X(NVL_ERR_ENCRYPTED, -10, "encrypted")             /* encrypted document, no or wrong password */ \
    X(NVL_ERR_NO_DEVICE, -11, "no device")             /* backend requested but no device found */ \
    X(NVL_ERR_DEVICE, -12, "device error")             /* the accelerator runtime reported a failure */ \
    X(NVL_ERR_CANCELLED, -13, "cancelled")             /* stopped on request between steps */ \
    X(NVL_ERR_TRUNCATED, -14, "truncated input")       /* data ends before the format says it should */ \
    X(NVL_ERR_CONFIG, -15, "bad configuration")        /* config.json value missing or inconsistent */ \
    X(NVL_ERR_INTERNAL, -16, "internal error")         /* a bug in nanovl */ \
    X(NVL_ERR_BUSY, -17, "busy")                       /* resource in use (live socket, lock) */ \
    X(NVL_ERR_TIMEOUT, -18, "timed out")               /* a deadline passed */

typedef enum nvl_status {
#define NVL_STATUS_ENUM_(name, value, desc) name = value,
    NVL_STATUS_TABLE(NVL_STATUS_ENUM_)
#undef NVL_STATUS_ENUM_
} nvl_status;

/* Static string for a code ("out of memory"); "unknown status" for values not in the table. */
const char *nvl_status_str(nvl_status s);
/* Static identifier for a code ("NVL_ERR_NOMEM"); "NVL_ERR_UNKNOWN" for values not in the table. */
const char *nvl_status_name(nvl_status s);

#define NVL_ERR_MSG_MAX 1024

/* Error detail. Zero-initialise; nvl_err_set overwrites code and msg. */
typedef struct nvl_err {
    nvl_status code;
    char msg[NVL_ERR_MSG_MAX];
} nvl_err;

#if defined(__GNUC__) || defined(__clang__)
#define NVL_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define NVL_PRINTF(fmt_idx, arg_idx)
#endif

/* Records code and a printf-formatted message in err (may be NULL) and returns code, so
 * `return nvl_err_set(err, NVL_ERR_FORMAT, "%s: ...", __func__, ...);` works. */
nvl_status nvl_err_set(nvl_err *err, nvl_status code, const char *fmt, ...) NVL_PRINTF(3, 4);

/* Prepends "prefix: " to an existing message (used at module edges to name the input). */
void nvl_err_prefix(nvl_err *err, const char *fmt, ...) NVL_PRINTF(2, 3);

/* Clears err (may be NULL). */
void nvl_err_clear(nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_STATUS_H
