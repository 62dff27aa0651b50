/* api/evloop.c, the poll(2) event loop under `nanovl serve`: a readable pipe calls its callback
 * with EVLOOP_READ; an unregistered fd gets no more callbacks; evloop_wake from another thread
 * runs the wake callback on the loop's thread; write interest on a socketpair fires
 * EVLOOP_WRITE; a poll with nothing ready returns 0 after its timeout; a peer that closes is
 * EVLOOP_HUP even with no interest; a callback that unregisters another ready fd stops its
 * callback in the same iteration; evloop_run runs the before-sleep hook until evloop_stop. */
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "test_util.h"

typedef struct {
    int calls;
    int last_fd, last_mask;
    pthread_t thread;
    int del_fd; /* >= 0: the callback unregisters this fd */
} hits;

static void on_fd(evloop *l, int fd, int mask, void *user) {
    hits *h = user;
    h->calls++;
    h->last_fd = fd;
    h->last_mask = mask;
    h->thread = pthread_self();
    if (h->del_fd >= 0) evloop_del(l, h->del_fd);
}

static void on_wake(evloop *l, void *user) {
    (void)l;
    hits *h = user;
    h->calls++;
    h->thread = pthread_self();
}

static void *waker(void *arg) {
    usleep(50000); /* the loop is in poll by then */
    evloop_wake(arg);
    return NULL;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void tick(evloop *l, void *user) {
    int *n = user;
    if (++*n == 3) evloop_stop(l);
}

int main(void) {
    evloop *l = NULL;
    nvl_err err = {0};
    TEST_CHECK(evloop_new(&l, &err) == NVL_OK, "evloop_new: %s", err.msg);
    if (!l) return test_report();

    /* nothing registered, nothing ready: 0 events after about the timeout */
    double t0 = now_ms();
    TEST_EQ_INT(evloop_poll(l, 30, &err), 0);
    TEST_CHECK(now_ms() - t0 >= 25, "the poll waited %.1f ms of 30", now_ms() - t0);

    /* a pipe: nothing until a byte is written, then the callback with EVLOOP_READ */
    int p[2];
    TEST_CHECK(pipe(p) == 0, "pipe");
    hits h = {.del_fd = -1};
    TEST_EQ_INT(evloop_add(l, p[0], EVLOOP_READ, on_fd, &h, &err), NVL_OK);
    TEST_EQ_INT(evloop_add(l, p[0], EVLOOP_READ, on_fd, &h, NULL), NVL_ERR_INVALID_ARG); /* twice */
    TEST_EQ_INT(evloop_add(l, p[1], 16, on_fd, &h, NULL), NVL_ERR_INVALID_ARG);          /* bad bit */
    TEST_EQ_INT(evloop_count(l), 1);
    TEST_EQ_INT(evloop_poll(l, 0, &err), 0);
    TEST_EQ_INT(h.calls, 0);
    TEST_CHECK(write(p[1], "x", 1) == 1, "write");
    TEST_EQ_INT(evloop_poll(l, 1000, &err), 1);
    TEST_EQ_INT(h.calls, 1);
    TEST_EQ_INT(h.last_fd, p[0]);
    TEST_EQ_INT(h.last_mask, EVLOOP_READ);
    /* still readable (not read): interest 0 stops it, READ again brings it back */
    TEST_EQ_INT(evloop_set_mask(l, p[0], 0), NVL_OK);
    TEST_EQ_INT(evloop_mask(l, p[0]), 0);
    TEST_EQ_INT(evloop_poll(l, 0, &err), 0);
    TEST_EQ_INT(evloop_set_mask(l, p[0], EVLOOP_READ), NVL_OK);
    TEST_EQ_INT(evloop_poll(l, 0, &err), 1);
    TEST_EQ_INT(h.calls, 2);
    /* unregistered: no more callbacks though the byte is still there */
    evloop_del(l, p[0]);
    TEST_EQ_INT(evloop_count(l), 0);
    TEST_EQ_INT(evloop_mask(l, p[0]), -1);
    TEST_EQ_INT(evloop_set_mask(l, p[0], EVLOOP_READ), NVL_ERR_NOT_FOUND);
    TEST_EQ_INT(evloop_poll(l, 0, &err), 0);
    TEST_EQ_INT(h.calls, 2);

    /* a wake from another thread: the wake callback runs on this thread */
    hits w = {.del_fd = -1};
    evloop_set_wake(l, on_wake, &w);
    pthread_t th;
    TEST_CHECK(pthread_create(&th, NULL, waker, l) == 0, "pthread_create");
    t0 = now_ms();
    TEST_EQ_INT(evloop_poll(l, 5000, &err), 1);
    TEST_CHECK(now_ms() - t0 < 4000, "woken after %.0f ms", now_ms() - t0);
    pthread_join(th, NULL);
    TEST_EQ_INT(w.calls, 1);
    TEST_CHECK(w.calls && pthread_equal(w.thread, pthread_self()), "the wake callback ran on the loop's thread");
    TEST_EQ_INT(evloop_poll(l, 0, &err), 0); /* the pipe was drained */

    /* write interest on a socketpair fires EVLOOP_WRITE; read interest alone does not */
    int sp[2];
    TEST_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
    hits ws = {.del_fd = -1};
    TEST_EQ_INT(evloop_add(l, sp[0], EVLOOP_READ, on_fd, &ws, &err), NVL_OK);
    TEST_EQ_INT(evloop_poll(l, 0, &err), 0);
    TEST_EQ_INT(evloop_set_mask(l, sp[0], EVLOOP_READ | EVLOOP_WRITE), NVL_OK);
    TEST_EQ_INT(evloop_poll(l, 1000, &err), 1);
    TEST_EQ_INT(ws.calls, 1);
    TEST_EQ_INT(ws.last_mask, EVLOOP_WRITE);
    /* the peer closes: EVLOOP_HUP even with no interest */
    TEST_EQ_INT(evloop_set_mask(l, sp[0], 0), NVL_OK);
    close(sp[1]);
    TEST_EQ_INT(evloop_poll(l, 1000, &err), 1);
    TEST_EQ_INT(ws.calls, 2);
    TEST_CHECK(ws.last_mask & EVLOOP_HUP, "mask %d has EVLOOP_HUP", ws.last_mask);
    evloop_del(l, sp[0]);
    close(sp[0]);

    /* two ready fds; the first one's callback unregisters the second: only one callback */
    int q[2];
    TEST_CHECK(pipe(q) == 0, "pipe");
    hits a = {.del_fd = q[0]}, b = {.del_fd = -1};
    TEST_EQ_INT(evloop_add(l, p[0], EVLOOP_READ, on_fd, &a, &err), NVL_OK); /* p still holds a byte */
    TEST_EQ_INT(evloop_add(l, q[0], EVLOOP_READ, on_fd, &b, &err), NVL_OK);
    TEST_CHECK(write(q[1], "y", 1) == 1, "write");
    TEST_EQ_INT(evloop_poll(l, 1000, &err), 1);
    TEST_EQ_INT(a.calls, 1);
    TEST_EQ_INT(b.calls, 0);
    evloop_del(l, p[0]);

    /* evloop_run: the before-sleep hook before each poll, until it stops the loop */
    int n = 0;
    evloop_set_before_sleep(l, tick, &n);
    evloop_set_max_wait(l, 5);
    TEST_EQ_INT(evloop_run(l, &err), NVL_OK);
    TEST_EQ_INT(n, 3);

    evloop_free(l);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    return test_report();
}
