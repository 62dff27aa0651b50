/* Helpers of the socket tests (test_serve, test_serve_concurrent), header-only: a monotonic
 * clock, connecting to a Unix socket with retries, sending one request line (newline added),
 * and a string field of an event. */
#ifndef TESTS_API_SOCK_UTIL_H
#define TESTS_API_SOCK_UTIL_H

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A connected fd, retrying while the server comes up; -1 after timeout seconds. */
static inline int connect_to(const char *sock, double timeout) {
    const double t0 = now();
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        if (now() - t0 > timeout) return -1;
        usleep(20000);
    }
}

/* s and a newline (unless s ends with one); a peer gone is not a signal (MSG_NOSIGNAL). */
static inline void send_line(int fd, const char *s) {
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) return;
        off += (size_t)w;
    }
    if (n == 0 || s[n - 1] != '\n') {
        ssize_t w = send(fd, "\n", 1, MSG_NOSIGNAL);
        (void)w;
    }
}

/* ev's string field k, "" when absent or not a string. */
static inline const char *str(const cJSON *ev, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(ev, k);
    return cJSON_IsString(x) ? x->valuestring : "";
}

#endif // TESTS_API_SOCK_UTIL_H
