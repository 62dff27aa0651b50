/* Shared by the tests of the media helper processes (test_pdf_sandbox, test_video_sandbox;
 * header-only): a cancel flag raised from another thread after 300 ms, and whether any
 * child is left unreaped. */
#ifndef TESTS_MEDIA_HELPER_TEST_H
#define TESTS_MEDIA_HELPER_TEST_H

#include <errno.h>
#include <sys/wait.h>
#include <time.h>

static volatile int g_cancel;
/* A media cancel callback reading the flag ctx points at (&g_cancel). */
static inline int cancelled(void *ctx) { return *(volatile int *)ctx; }
/* A thread's body: g_cancel = 1 after 300 ms. */
static inline void *cancel_later(void *arg) {
    (void)arg;
    const struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    g_cancel = 1;
    return NULL;
}

/* 1 while a child process is still unreaped (every helper must be reaped). */
static inline int children_left(void) {
    const pid_t r = waitpid(-1, NULL, WNOHANG);
    return !(r < 0 && errno == ECHILD);
}

#endif
