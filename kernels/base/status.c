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

nvl_status nvl_err_set(nvl_err *err, nvl_status code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void nvl_err_prefix(nvl_err *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[NVL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[NVL_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    size_t a = strlen(prefix), b = strlen(old);
    if (a > NVL_ERR_MSG_MAX - 3) a = NVL_ERR_MSG_MAX - 3;
    if (b > NVL_ERR_MSG_MAX - 3 - a) b = NVL_ERR_MSG_MAX - 3 - a;
    memcpy(err->msg, prefix, a);
    memcpy(err->msg + a, ": ", 2);
    memcpy(err->msg + a + 2, old, b);
    err->msg[a + 2 + b] = '\0';
}

void nvl_err_clear(nvl_err *err) {
    if (!err) return;
    err->code = NVL_OK;
    err->msg[0] = '\0';
}
