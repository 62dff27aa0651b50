/* Helpers of the socket tests (test_serve, test_serve_concurrent), header-only: connecting to a
 * Unix socket with retries, sending one request line (newline added), and a string field of an
 * event (nvl_now, base/clock.h, is their clock). */
#ifndef TESTS_API_SOCK_UTIL_H
#define TESTS_API_SOCK_UTIL_H

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"

/* A connected fd, retrying while the server comes up; -1 after timeout seconds. */
static inline int connect_to(const char *sock, double timeout) {
    const double t0 = nvl_now();
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        if (nvl_now() - t0 > timeout) return -1;
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

/* Children of ppid from /proc/N/stat ("pid (comm) state ppid ..."): how many are alive (named
 * comm, when comm is not NULL), and in *zombies (may be NULL) how many are zombies. */
static inline int sock_children(pid_t ppid, const char *comm, int *zombies) {
    int n = 0, z = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
        char p[300], buf[512];
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        const size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        const char *lp = strchr(buf, '('), *rp = strrchr(buf, ')'); /* the name may hold spaces and ')' */
        char state = 0;
        int pp = 0;
        if (!lp || !rp || sscanf(rp + 1, " %c %d", &state, &pp) != 2 || pp != (int)ppid) continue;
        if (state == 'Z') z++;
        else if (!comm || ((size_t)(rp - lp - 1) == strlen(comm) && !strncmp(lp + 1, comm, strlen(comm)))) n++;
    }
    if (d) closedir(d);
    if (zombies) *zombies = z;
    return n;
}

/* One connection's read buffer, and its next event (parsed; NULL after timeout_s or at EOF). */
typedef struct sock_conn {
    int fd;
    char buf[1 << 16];
    size_t n;
} sock_conn;

static inline cJSON *sock_next_event(sock_conn *c, double timeout_s) {
    const double t0 = nvl_now();
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->n);
        if (nl) {
            cJSON *ev = cJSON_ParseWithLength(c->buf, (size_t)(nl - c->buf));
            const size_t used = (size_t)(nl - c->buf) + 1;
            memmove(c->buf, c->buf + used, c->n - used);
            c->n -= used;
            return ev;
        }
        const double left = timeout_s - (nvl_now() - t0);
        if (left <= 0) return NULL;
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t r = read(c->fd, c->buf + c->n, sizeof c->buf - c->n);
        if (r <= 0) return NULL;
        c->n += (size_t)r;
    }
}

#endif // TESTS_API_SOCK_UTIL_H
