/* Status code table lookups and nvl_err formatting. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *nvl_status_str(nvl_status s) {
    switch (s) {
#define NVL_STATUS_STR_(name, value, desc) \
    case name: return desc;
        NVL_STATUS_TABLE(NVL_STATUS_STR_)
#undef NVL_STATUS_STR_
    }
    return "unknown status";
}

const char *nvl_status_name(nvl_status s) {
    switch (s) {
#define NVL_STATUS_NAME_(name, value, desc) \
    case name: return #name;
        NVL_STATUS_TABLE(NVL_STATUS_NAME_)
#undef NVL_STATUS_NAME_
    }
    return "NVL_ERR_UNKNOWN";
}

/* Formatting room: a message with a few paths of PATH_MAX (4096) fits whole before it is cut. */
#define ERR_WIDE 16384
/* The head kept of a message too long for NVL_ERR_MSG_MAX: it names the input; the rest of the
 * room keeps the end, where the cause is ("... No such file or directory"); a long path between
 * loses its middle. */
#define ERR_HEAD 320

/* A UTF-8 continuation byte: not where a cut may fall. */
static int utf8_cont(char c) { return ((unsigned char)c & 0xC0) == 0x80; }

/* dst (NVL_ERR_MSG_MAX) = src (len bytes), or its head and tail around "..." when too long. */
static void put_elided(char *dst, const char *src, size_t len) {
    if (len < NVL_ERR_MSG_MAX) {
        memcpy(dst, src, len);
        dst[len] = '\0';
        return;
    }
    size_t h = ERR_HEAD, t = NVL_ERR_MSG_MAX - 1 - ERR_HEAD - 3;
    while (h > 0 && utf8_cont(src[h])) h--;
    size_t ts = len - t;
    while (ts < len && utf8_cont(src[ts])) ts++;
    memcpy(dst, src, h);
    memcpy(dst + h, "...", 3);
    memcpy(dst + h + 3, src + ts, len - ts);
    dst[h + 3 + len - ts] = '\0';
}

nvl_status nvl_err_set(nvl_err *err, nvl_status code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    char wide[ERR_WIDE];
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(wide, sizeof wide, fmt, ap);
    va_end(ap);
    put_elided(err->msg, wide, n < 0 ? 0 : (size_t)n < sizeof wide ? (size_t)n : sizeof wide - 1);
    return code;
}

void nvl_err_prefix(nvl_err *err, const char *fmt, ...) {
    if (!err) return;
    char wide[ERR_WIDE];
    va_list ap;
    va_start(ap, fmt);
    int a = vsnprintf(wide, sizeof wide - NVL_ERR_MSG_MAX - 2, fmt, ap);
    va_end(ap);
    if (a < 0) a = 0;
    if ((size_t)a > sizeof wide - NVL_ERR_MSG_MAX - 3) a = (int)(sizeof wide - NVL_ERR_MSG_MAX - 3);
    size_t b = strnlen(err->msg, NVL_ERR_MSG_MAX - 1);
    memcpy(wide + a, ": ", 2);
    memcpy(wide + a + 2, err->msg, b);
    put_elided(err->msg, wide, (size_t)a + 2 + b);
}

void nvl_err_clear(nvl_err *err) {
    if (!err) return;
    err->code = NVL_OK;
    err->msg[0] = '\0';
}
