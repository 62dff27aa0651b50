/* Logging through a settable callback. Libraries log; only the CLI prints.
 *
 *   nvl_log_set(my_sink, my_ctx);          // or NULL to restore the stderr sink
 *   NVL_LOG_WARN("%s: falling back to CPU for %s\n", __func__, op);
 *
 * The default sink writes to stderr and filters by NVL_LOG_LEVEL (error|warn|info|debug,
 * default warn), read once at the first message.
 */
#ifndef KERNELS_BASE_LOG_H
#define KERNELS_BASE_LOG_H

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum nvl_log_level {
    NVL_LOG_LEVEL_ERROR = 0,
    NVL_LOG_LEVEL_WARN = 1,
    NVL_LOG_LEVEL_INFO = 2,
    NVL_LOG_LEVEL_DEBUG = 3,
};

typedef void (*nvl_log_fn)(enum nvl_log_level level, const char *msg, void *user_data);

/* Installs fn (NULL restores the default stderr sink). Not thread-safe against concurrent logging:
 * call it at start-up. */
void nvl_log_set(nvl_log_fn fn, void *user_data);
/* Sets the level the default sink passes (messages above it are dropped). */
void nvl_log_set_level(enum nvl_log_level level);
enum nvl_log_level nvl_log_get_level(void);

void nvl_log(enum nvl_log_level level, const char *fmt, ...) NVL_PRINTF(2, 3);

#define NVL_LOG_ERROR(...) nvl_log(NVL_LOG_LEVEL_ERROR, __VA_ARGS__)
#define NVL_LOG_WARN(...) nvl_log(NVL_LOG_LEVEL_WARN, __VA_ARGS__)
#define NVL_LOG_INFO(...) nvl_log(NVL_LOG_LEVEL_INFO, __VA_ARGS__)
#define NVL_LOG_DEBUG(...) nvl_log(NVL_LOG_LEVEL_DEBUG, __VA_ARGS__)

/* bytes for a message, in the largest binary unit it reaches: "512 B", "2.78 MiB", "23.68 GiB".
 * Writes buf (cap bytes) and returns it. */
const char *nvl_human_bytes(char *buf, size_t cap, double bytes);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_LOG_H
