/* NVL_ASSERT's failure path: log file:line and abort. */
#include "assert.h"

#include <stdio.h>
#include <stdlib.h>

void nvl_abort(const char *file, int line, const char *msg) {
    fprintf(stderr, "nanovl: %s:%d: %s\n", file, line, msg);
    fflush(stderr);
    abort();
}
