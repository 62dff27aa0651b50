/* Logging: default stderr sink with a level filter, replaceable callback. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nvl_log_fn g_fn = NULL;
static void *g_user = NULL;
static int g_level = -1; /* -1: not yet read from NVL_LOG_LEVEL */

static int level_from_env(void) {
    const char *s = getenv("NVL_LOG_LEVEL");
    if (!s) return NVL_LOG_LEVEL_WARN;
    if (!strcmp(s, "error")) return NVL_LOG_LEVEL_ERROR;
    if (!strcmp(s, "warn")) return NVL_LOG_LEVEL_WARN;
    if (!strcmp(s, "info")) return NVL_LOG_LEVEL_INFO;
    if (!strcmp(s, "debug")) return NVL_LOG_LEVEL_DEBUG;
    return NVL_LOG_LEVEL_WARN;
}

void nvl_log_set(nvl_log_fn fn, void *user_data) {
    g_fn = fn;
    g_user = user_data;
}

void nvl_log_set_level(enum nvl_log_level level) { g_level = (int)level; }

enum nvl_log_level nvl_log_get_level(void) {
    if (g_level < 0) g_level = level_from_env();
    return (enum nvl_log_level)g_level;
}

void nvl_log(enum nvl_log_level level, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_fn) {
        g_fn(level, buf, g_user);
        return;
    }
    if ((int)level > (int)nvl_log_get_level()) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    fprintf(stderr, "nanovl %s: %s", names[level], buf);
    size_t n = strlen(buf);
    if (n == 0 || buf[n - 1] != '\n') fputc('\n', stderr);
}

const char *nvl_human_bytes(char *buf, size_t cap, double b) {
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024.0 && i < 4) {
        b /= 1024.0;
        i++;
    }
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
    return buf;
}
