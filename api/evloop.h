/* A small poll(2) event loop (in the manner of Redis's ae.c), used by `nanovl serve`. Internal to api/.
 *
 * One thread owns a loop: it registers file descriptors with an interest mask (EVLOOP_READ,
 * EVLOOP_WRITE) and a callback, and runs iterations; each iteration polls every registered fd
 * and calls the callback of each fd that is ready, once, with the conditions that hold. An fd
 * registered with mask 0 is still polled for EVLOOP_HUP / EVLOOP_ERR, which poll(2) always
 * reports. Callbacks may register, unregister or change any fd, including their own; an fd
 * unregistered (or unregistered and registered again) during an iteration gets no callback for
 * what that iteration's poll saw.
 *
 * Any other thread (or a signal handler) may call evloop_wake: a byte written to the loop's own
 * pipe makes the poll return; the loop drains the pipe and calls the wake callback on its thread.
 *
 *   evloop *l;
 *   if (evloop_new(&l, &err) != NVL_OK) ...
 *   evloop_add(l, fd, EVLOOP_READ, on_ready, ctx, &err);
 *   evloop_set_before_sleep(l, tick, ctx);  // before each poll: timers, state changes, stop
 *   evloop_set_max_wait(l, 1000);           // so tick runs at least once a second
 *   st = evloop_run(l, &err);               // until evloop_stop, or a poll error
 *   evloop_free(l);
 *
 * Not thread-safe apart from evloop_wake. */
#ifndef API_EVLOOP_H
#define API_EVLOOP_H

#include "base/status.h"

enum {
    EVLOOP_READ = 1,  /* interest and condition: readable (or end of input) */
    EVLOOP_WRITE = 2, /* interest and condition: writable */
    EVLOOP_HUP = 4,   /* condition only: the peer hung up */
    EVLOOP_ERR = 8,   /* condition only: an error on the fd, or it is not open */
};

typedef struct evloop evloop;

/* Called on the loop's thread for a ready fd; mask holds the conditions (EVLOOP_*). */
typedef void (*evloop_fn)(evloop *loop, int fd, int mask, void *user);
/* Called on the loop's thread: the wake callback and the before-sleep hook. */
typedef void (*evloop_hook)(evloop *loop, void *user);

/* Creates a loop with its wake pipe (non-blocking, close-on-exec) and no fds.
 * Errors: NVL_ERR_NOMEM; NVL_ERR_IO when the pipe cannot be made. *out is NULL on error. */
nvl_status evloop_new(evloop **out, nvl_err *err);
/* Frees the loop and closes its wake pipe; registered fds are not closed. NULL is allowed.
 * No other thread may call evloop_wake once this starts. */
void evloop_free(evloop *loop);

/* Registers fd (>= 0, not yet registered) with interest mask (EVLOOP_READ | EVLOOP_WRITE, or 0)
 * and its callback. Errors: NVL_ERR_INVALID_ARG (fd < 0, already registered, fn NULL, a mask
 * bit other than READ / WRITE); NVL_ERR_NOMEM. */
nvl_status evloop_add(evloop *loop, int fd, int mask, evloop_fn fn, void *user, nvl_err *err);
/* Changes a registered fd's interest mask. Errors: NVL_ERR_NOT_FOUND (fd not registered),
 * NVL_ERR_INVALID_ARG (a mask bit other than READ / WRITE). */
nvl_status evloop_set_mask(evloop *loop, int fd, int mask);
/* The interest mask of a registered fd, or -1 when fd is not registered. */
int evloop_mask(const evloop *loop, int fd);
/* Unregisters fd (call it before closing the fd); no callback for it after this. An fd that is
 * not registered is ignored. */
void evloop_del(evloop *loop, int fd);
/* The number of fds registered (the wake pipe not counted). */
int evloop_count(const evloop *loop);

/* Wakes the loop: its current or next poll returns and the wake callback runs on the loop's
 * thread. Safe from any thread and from a signal handler (one write(2) to a non-blocking pipe;
 * errno is preserved; a full pipe already wakes). */
void evloop_wake(evloop *loop);
/* Sets the callback run on the loop's thread after a wake (NULL: none; the pipe is drained). */
void evloop_set_wake(evloop *loop, evloop_hook fn, void *user);

/* Sets the hook evloop_run calls before each poll (NULL: none). */
void evloop_set_before_sleep(evloop *loop, evloop_hook fn, void *user);
/* Sets the longest evloop_run waits in one poll, in milliseconds (< 0: no limit; the default).
 * The before-sleep hook may change it; the next poll uses the new value. */
void evloop_set_max_wait(evloop *loop, int ms);
/* A pointer for callbacks that need the loop's owner (NULL until set). */
void evloop_set_data(evloop *loop, void *data);
void *evloop_data(const evloop *loop);

/* One iteration: polls the wake pipe and every registered fd for up to timeout_ms (< 0: until
 * something is ready; 0: does not wait), then drains the wake pipe and calls the wake callback
 * if it was woken, then the callback of each ready fd, in registration order. Returns the number
 * of ready fds handled (a wake counts as one), 0 when the time ran out or a signal interrupted
 * the poll (EINTR), or -1 with err set (NVL_ERR_IO, "poll: ...") when poll fails. */
int evloop_poll(evloop *loop, int timeout_ms, nvl_err *err);
/* Runs until evloop_stop: the before-sleep hook, then (unless that stopped the loop) one
 * evloop_poll with the maximum wait. Returns NVL_OK once stopped, or NVL_ERR_IO when poll fails.
 * The stop request is cleared when evloop_run starts. */
nvl_status evloop_run(evloop *loop, nvl_err *err);
/* Makes evloop_run return after the current callback / hook (loop's thread only). */
void evloop_stop(evloop *loop);

#endif
