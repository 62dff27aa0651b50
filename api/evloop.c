/* A small poll(2) event loop (evloop.h).
 *
 * Layout: slots[] is indexed by fd (registered or not, its mask, callback, the serial of its
 * registration, its place in order[]); order[] lists the registered fds in registration order.
 * Each poll builds pf[] (the wake pipe first, then order[]) and records in ser[] the serial each
 * polled fd had; a callback is called only while the fd's registration is the one polled, so a
 * callback that closes an fd and another that registers a new fd with the same number never
 * sees stale conditions. pf[] and ser[] are grown by evloop_add, so polling does not allocate. */
#include "evloop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"

typedef struct {
    int used;
    int mask;
    evloop_fn fn;
    void *user;
    uint64_t serial;
    int pos; /* index in order[] */
} evloop_slot;

struct evloop {
    int wake[2];
    evloop_slot *slots;
    int n_slots;
    int *order;
    int n, cap; /* registered fds; capacity of order[] (pf[] and ser[] hold cap + 1) */
    struct pollfd *pf;
    uint64_t *ser;
    uint64_t serial;
    evloop_hook wake_fn, before_sleep;
    void *wake_user, *before_sleep_user;
    int max_wait;
    int stop;
    void *data;
};

static int set_flags(int fd) {
    const int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

nvl_status evloop_new(evloop **out, nvl_err *err) {
    *out = NULL;
    evloop *l = nvl_calloc(1, sizeof *l);
    if (!l) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    l->max_wait = -1;
    l->pf = nvl_calloc(1, sizeof *l->pf);
    l->ser = nvl_calloc(1, sizeof *l->ser);
    if (!l->pf || !l->ser) {
        evloop_free(l);
        return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    }
    l->wake[0] = l->wake[1] = -1;
    if (pipe(l->wake) != 0 || set_flags(l->wake[0]) != 0 || set_flags(l->wake[1]) != 0) {
        const int e = errno;
        evloop_free(l);
        return nvl_err_set(err, NVL_ERR_IO, "pipe: %s", strerror(e));
    }
    *out = l;
    return NVL_OK;
}

void evloop_free(evloop *l) {
    if (!l) return;
    if (l->wake[0] >= 0) close(l->wake[0]);
    if (l->wake[1] >= 0) close(l->wake[1]);
    nvl_free(l->slots);
    nvl_free(l->order);
    nvl_free(l->pf);
    nvl_free(l->ser);
    nvl_free(l);
}

nvl_status evloop_add(evloop *l, int fd, int mask, evloop_fn fn, void *user, nvl_err *err) {
    if (fd < 0 || !fn || (mask & ~(EVLOOP_READ | EVLOOP_WRITE)))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "evloop_add: fd %d, mask %d%s", fd, mask, fn ? "" : ", no callback");
    if (fd < l->n_slots && l->slots[fd].used)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "evloop_add: fd %d is already registered", fd);
    if (fd >= l->n_slots) {
        int ns = l->n_slots ? l->n_slots : 64;
        while (ns <= fd) ns *= 2;
        evloop_slot *s = nvl_realloc(l->slots, (size_t)ns * sizeof *s);
        if (!s) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        memset(s + l->n_slots, 0, (size_t)(ns - l->n_slots) * sizeof *s);
        l->slots = s;
        l->n_slots = ns;
    }
    if (l->n == l->cap) {
        const int nc = l->cap ? l->cap * 2 : 16;
        int *o = nvl_realloc(l->order, (size_t)nc * sizeof *o);
        if (!o) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        l->order = o;
        struct pollfd *pf = nvl_realloc(l->pf, (size_t)(nc + 1) * sizeof *pf);
        if (!pf) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        l->pf = pf;
        uint64_t *ser = nvl_realloc(l->ser, (size_t)(nc + 1) * sizeof *ser);
        if (!ser) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
        l->ser = ser;
        l->cap = nc;
    }
    evloop_slot *s = &l->slots[fd];
    s->used = 1;
    s->mask = mask;
    s->fn = fn;
    s->user = user;
    s->serial = ++l->serial;
    s->pos = l->n;
    l->order[l->n++] = fd;
    return NVL_OK;
}

nvl_status evloop_set_mask(evloop *l, int fd, int mask) {
    if (fd < 0 || fd >= l->n_slots || !l->slots[fd].used) return NVL_ERR_NOT_FOUND;
    if (mask & ~(EVLOOP_READ | EVLOOP_WRITE)) return NVL_ERR_INVALID_ARG;
    l->slots[fd].mask = mask;
    return NVL_OK;
}

int evloop_mask(const evloop *l, int fd) {
    return fd >= 0 && fd < l->n_slots && l->slots[fd].used ? l->slots[fd].mask : -1;
}

void evloop_del(evloop *l, int fd) {
    if (fd < 0 || fd >= l->n_slots || !l->slots[fd].used) return;
    const int pos = l->slots[fd].pos;
    memmove(l->order + pos, l->order + pos + 1, (size_t)(l->n - pos - 1) * sizeof *l->order);
    l->n--;
    for (int i = pos; i < l->n; i++) l->slots[l->order[i]].pos = i;
    memset(&l->slots[fd], 0, sizeof l->slots[fd]);
}

int evloop_count(const evloop *l) {
    return l->n;
}

void evloop_wake(evloop *l) {
    const int saved = errno;
    ssize_t w = write(l->wake[1], "w", 1); /* non-blocking: a full pipe already wakes */
    (void)w;
    errno = saved;
}

void evloop_set_wake(evloop *l, evloop_hook fn, void *user) {
    l->wake_fn = fn;
    l->wake_user = user;
}

void evloop_set_before_sleep(evloop *l, evloop_hook fn, void *user) {
    l->before_sleep = fn;
    l->before_sleep_user = user;
}

void evloop_set_max_wait(evloop *l, int ms) {
    l->max_wait = ms;
}

void evloop_set_data(evloop *l, void *data) {
    l->data = data;
}

void *evloop_data(const evloop *l) {
    return l->data;
}

static int to_mask(short revents) {
    return ((revents & POLLIN) ? EVLOOP_READ : 0) | ((revents & POLLOUT) ? EVLOOP_WRITE : 0) |
           ((revents & POLLHUP) ? EVLOOP_HUP : 0) | ((revents & (POLLERR | POLLNVAL)) ? EVLOOP_ERR : 0);
}

static short to_events(int mask) {
    return (short)(((mask & EVLOOP_READ) ? POLLIN : 0) | ((mask & EVLOOP_WRITE) ? POLLOUT : 0));
}

int evloop_poll(evloop *l, int timeout_ms, nvl_err *err) {
    const int k = l->n + 1;
    l->pf[0] = (struct pollfd){.fd = l->wake[0], .events = POLLIN};
    l->ser[0] = 0;
    for (int i = 0; i < l->n; i++) {
        const evloop_slot *s = &l->slots[l->order[i]];
        l->pf[i + 1] = (struct pollfd){.fd = l->order[i], .events = to_events(s->mask)};
        l->ser[i + 1] = s->serial;
    }
    const int r = poll(l->pf, (nfds_t)k, timeout_ms);
    if (r < 0) {
        if (errno == EINTR) return 0;
        nvl_err_set(err, NVL_ERR_IO, "poll: %s", strerror(errno));
        return -1;
    }
    if (r == 0) return 0;
    int handled = 0;
    if (l->pf[0].revents) {
        char drain[256];
        while (read(l->wake[0], drain, sizeof drain) > 0) {}
        handled++;
        if (l->wake_fn) l->wake_fn(l, l->wake_user);
    }
    /* l->pf may move while callbacks register fds: index it afresh each time */
    for (int i = 1; i < k; i++) {
        const int fd = l->pf[i].fd;
        const short rev = l->pf[i].revents;
        if (!rev) continue;
        if (fd >= l->n_slots || !l->slots[fd].used || l->slots[fd].serial != l->ser[i]) continue; /* gone since */
        const evloop_slot *s = &l->slots[fd];
        const int mask = to_mask(rev) & (s->mask | EVLOOP_HUP | EVLOOP_ERR);
        if (!mask) continue;
        handled++;
        s->fn(l, fd, mask, s->user);
    }
    return handled;
}

nvl_status evloop_run(evloop *l, nvl_err *err) {
    l->stop = 0;
    for (;;) {
        if (l->before_sleep) l->before_sleep(l, l->before_sleep_user);
        if (l->stop) return NVL_OK;
        if (evloop_poll(l, l->max_wait, err) < 0) return NVL_ERR_IO;
        if (l->stop) return NVL_OK;
    }
}

void evloop_stop(evloop *l) {
    l->stop = 1;
}
