/* A helper process for work a hostile file can make unbounded (media_impl.h, media_proc): the
 * running executable started again with one argument, talking over a socket pair on its fd 3.
 * The parent waits with poll() in MEDIA_PROC_TICK_S slices and, between slices, checks a
 * deadline, a cancel callback and the helper's resident memory (/proc/PID/statm), killing it
 * (SIGKILL) when one is passed: the time and memory a page can take are then bounded, and a
 * crash in the library it runs (Poppler) ends the helper, not the caller.
 * Anchors: Chromium's and pdf.js-in-Firefox's separate renderer processes; the protocol is ours. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "media_impl.h"
#include "base/clock.h"

extern char **environ;

#define MEDIA_PROC_TICK_MS 50

nvl_status media_proc_spawn(media_proc *p, const char *exe, const char *arg, nvl_err *err) {
    p->pid = 0;
    p->fd = -1;
    int sv[2];
    /* both ends close-on-exec: a helper started at the same time by another thread must not hold
       this one's ends (the parent would then not see this helper's end of file); the dup2 onto fd 3
       below gives the child its end without the flag */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return nvl_err_set(err, NVL_ERR_IO, "cannot start %s %s: socketpair: %s", exe, arg, strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, sv[1], MEDIA_PROC_FD);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO); /* stray prints go to stderr */
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGSEGV);
    sigaddset(&dflt, SIGABRT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dflt);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"nanovl", (char *)arg, NULL}; /* ps shows "nanovl --pdf-render-worker" */
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        return nvl_err_set(err, NVL_ERR_IO, "cannot start %s %s: %s", exe, arg, strerror(rc));
    }
    p->pid = pid;
    p->fd = sv[0];
    return NVL_OK;
}

static size_t g_helpers_hwm; /* media_helpers_peak_rss (atomic max) */

/* Notes pid's peak resident memory (its VmHWM) in g_helpers_hwm. */
static void note_peak_rss(pid_t pid) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lu kB", &kb) == 1) break;
    fclose(f);
    const size_t b = (size_t)kb * 1024;
    size_t cur = __atomic_load_n(&g_helpers_hwm, __ATOMIC_RELAXED);
    while (b > cur && !__atomic_compare_exchange_n(&g_helpers_hwm, &cur, b, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

size_t media_helpers_peak_rss(void) { return __atomic_load_n(&g_helpers_hwm, __ATOMIC_RELAXED); }

void media_proc_kill(media_proc *p) {
    if (p->pid > 0) {
        note_peak_rss(p->pid);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (p->fd >= 0) close(p->fd);
    p->pid = 0;
    p->fd = -1;
}

/* Helpers killed by media_proc_release, reaped later (the kernel's teardown of a process took 5-12
 * ms, which a caller waiting in waitpid paid for every image). */
#define REAP_MAX 64
static pthread_mutex_t g_reap_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t g_reap[REAP_MAX];
static int g_n_reap;

/* Reaps the released helpers that have ended (all of them, waiting, when wait). g_reap_mu held. */
static void reap_locked(int wait) {
    int k = 0;
    for (int i = 0; i < g_n_reap; i++) {
        pid_t r;
        while ((r = waitpid(g_reap[i], NULL, wait ? 0 : WNOHANG)) < 0 && errno == EINTR) {}
        if (r == 0) g_reap[k++] = g_reap[i]; /* (r < 0: ECHILD, reaped elsewhere) */
    }
    g_n_reap = k;
}

void media_proc_reap(int wait) {
    pthread_mutex_lock(&g_reap_mu);
    reap_locked(wait);
    pthread_mutex_unlock(&g_reap_mu);
}

void media_helpers_reap(void) { media_proc_reap(0); }

void media_proc_release(media_proc *p) {
    if (p->pid > 0) {
        note_peak_rss(p->pid);
        kill(p->pid, SIGKILL);
        pthread_mutex_lock(&g_reap_mu);
        reap_locked(0);
        if (g_n_reap == REAP_MAX) reap_locked(1); /* (64 killed helpers still ending: wait for them) */
        g_reap[g_n_reap++] = p->pid;
        pthread_mutex_unlock(&g_reap_mu);
    }
    if (p->fd >= 0) close(p->fd);
    p->pid = 0;
    p->fd = -1;
}

/* Resident bytes of pid, 0 if unknown. */
static size_t proc_rss(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long size = 0, res = 0;
    const int n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return n == 2 ? (size_t)res * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The bounds' verdict at time t. */
static enum media_proc_end bounds_check(const media_proc *p, const media_proc_bounds *b, double t) {
    if (b->cancelled && b->cancelled(b->ctx)) return MEDIA_PROC_CANCELLED;
    if (b->deadline > 0 && t > b->deadline) return MEDIA_PROC_TIMEOUT;
    if (b->max_rss > 0 && proc_rss(p->pid) > b->max_rss) return MEDIA_PROC_MEMORY;
    return MEDIA_PROC_OK;
}

/* Moves exactly n bytes to (out) or from the helper, waiting in MEDIA_PROC_TICK_MS polls and
 * checking the bounds (NULL: none) every tick, data flowing or not (a helper trickling bytes, or
 * one that stopped reading, would otherwise never be checked). */
static enum media_proc_end proc_io(media_proc *p, char *d, size_t n, const media_proc_bounds *b, int out) {
    double next_check = 0;
    while (n) {
        struct pollfd pf = {.fd = p->fd, .events = out ? POLLOUT : POLLIN};
        const int r = poll(&pf, 1, MEDIA_PROC_TICK_MS);
        if (r < 0 && errno != EINTR) return MEDIA_PROC_GONE;
        if (r > 0) {
            if (out && (pf.revents & (POLLHUP | POLLERR | POLLNVAL))) return MEDIA_PROC_GONE;
            const ssize_t k = out ? send(p->fd, d, n, MSG_DONTWAIT | MSG_NOSIGNAL) : recv(p->fd, d, n, MSG_DONTWAIT);
            if (k == 0 && !out) return MEDIA_PROC_GONE;
            if (k < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return MEDIA_PROC_GONE;
            if (k > 0) {
                d += k;
                n -= (size_t)k;
            }
        }
        if (!b || !n) continue;
        const double t = nvl_now();
        if (t < next_check) continue;
        next_check = t + MEDIA_PROC_TICK_MS * 1e-3;
        const enum media_proc_end end = bounds_check(p, b, t);
        if (end != MEDIA_PROC_OK) return end;
    }
    return MEDIA_PROC_OK;
}

enum media_proc_end media_proc_write(media_proc *p, const void *buf, size_t n) {
    return proc_io(p, (char *)buf, n, NULL, 1);
}

enum media_proc_end media_proc_send(media_proc *p, const void *buf, size_t n, const media_proc_bounds *b) {
    return proc_io(p, (char *)buf, n, b, 1);
}

enum media_proc_end media_proc_read(media_proc *p, void *buf, size_t n, const media_proc_bounds *b) {
    return proc_io(p, buf, n, b, 0);
}

int media_proc_death(media_proc *p, char *buf, size_t cap) {
    int ws = 0;
    pid_t r = -1;
    int fault = 0;
    /* its end closed, it is ending: a second at most (a helper that closed its end and lives on, or
       one that broke the protocol, is killed; nothing waits on it for ever) */
    for (int i = 0; p->pid > 0 && i < 100; i++) {
        if ((r = waitpid(p->pid, &ws, WNOHANG)) != 0) break;
        const struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (p->pid > 0 && r == 0) {
        kill(p->pid, SIGKILL);
        while ((r = waitpid(p->pid, &ws, 0)) < 0 && errno == EINTR) {}
    }
    if (r > 0 && r == p->pid) {
        p->pid = 0; /* reaped: media_proc_kill must not signal a reused id */
        const int sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
        if (sig == SIGKILL) /* not a signal a crash raises */
            snprintf(buf, cap, "was killed (signal 9: by the system's out-of-memory killer, or by hand)");
        else if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGABRT || sig == SIGTRAP ||
                 sig == SIGSYS) {
            snprintf(buf, cap, "crashed (signal %d, %s)", sig, strsignal(sig));
            fault = 1;
        } else if (sig)
            snprintf(buf, cap, "was stopped from outside (signal %d, %s)", sig, strsignal(sig));
        else if (WIFEXITED(ws))
            snprintf(buf, cap, "exited with status %d", WEXITSTATUS(ws));
        else
            snprintf(buf, cap, "ended");
    } else {
        snprintf(buf, cap, "ended");
    }
    return fault;
}

/* A helper that said hello within MEDIA_PROC_START_S (and the caller's bounds b, may be NULL). */
static nvl_status proc_hello(media_proc *p, const char *exe, const char *arg, uint32_t hello, const char *what,
                             const media_proc_bounds *b, nvl_err *err) {
    media_proc_bounds start = {.deadline = nvl_now() + MEDIA_PROC_START_S};
    if (b) {
        start.cancelled = b->cancelled;
        start.ctx = b->ctx;
        if (b->deadline > 0 && b->deadline < start.deadline) start.deadline = b->deadline;
    }
    uint32_t h = 0;
    const enum media_proc_end end = media_proc_read(p, &h, sizeof h, &start);
    if (end == MEDIA_PROC_OK && h == hello) return NVL_OK;
    media_proc_kill(p);
    if (end == MEDIA_PROC_CANCELLED) return nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled while the %s started", what);
    if (end == MEDIA_PROC_TIMEOUT && b && b->deadline > 0 && nvl_now() >= b->deadline)
        return nvl_err_set(err, NVL_ERR_TIMEOUT, "the time limit passed while the %s started", what);
    return nvl_err_set(err, NVL_ERR_IO, "%s %s did not start as the %s", exe, arg, what);
}

nvl_status media_proc_take(media_proc_spare *s, const char *exe, const char *arg, uint32_t hello, const char *what,
                           int use_spare, const void *first, size_t first_n, const media_proc_bounds *b,
                           media_proc *p, nvl_err *err) {
    p->pid = 0;
    p->fd = -1;
    media_proc_reap(0);
    if (use_spare) {
        pthread_mutex_lock(&s->mu);
        *p = s->p;
        s->p.pid = 0;
        s->p.fd = -1;
        pthread_mutex_unlock(&s->mu);
    }
    nvl_status st = NVL_OK;
    /* a spare stopped from outside (before its hello, or after it: its end then refuses the first
       request) is replaced once by one started now */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!p->pid && (st = media_proc_spawn(p, exe, arg, err)) != NVL_OK) break;
        st = proc_hello(p, exe, arg, hello, what, b, err);
        if (st == NVL_ERR_CANCELLED || st == NVL_ERR_TIMEOUT) break;
        if (st != NVL_OK) continue;
        if (!first || media_proc_write(p, first, first_n) == MEDIA_PROC_OK) break;
        media_proc_kill(p);
        st = nvl_err_set(err, NVL_ERR_IO, "%s %s ended before the %s was given its work", exe, arg, what);
    }
    if (st != NVL_OK) return st;
    media_proc next;
    if (media_proc_spawn(&next, exe, arg, NULL) == NVL_OK) {
        pthread_mutex_lock(&s->mu);
        if (!s->p.pid) {
            s->p = next;
            next.pid = 0;
            next.fd = -1;
        }
        pthread_mutex_unlock(&s->mu);
        media_proc_kill(&next); /* another thread's spare came first */
    }
    return NVL_OK;
}

const char *media_proc_set_exe(media_proc_spare *s, char *buf, size_t cap, const char *cur, const char *exe) {
    if (!exe || !cur || strcmp(exe, cur)) media_proc_spare_end(s); /* another executable's, or none now */
    if (!exe || strlen(exe) >= cap) return NULL;
    if (exe != buf) memcpy(buf, exe, strlen(exe) + 1); /* (a get, changed, set passes the copy itself) */
    return buf;
}

int media_proc_decoding_status(int32_t status) {
    switch (status) {
    case NVL_OK: case NVL_ERR_FORMAT: case NVL_ERR_TRUNCATED: case NVL_ERR_UNSUPPORTED: case NVL_ERR_NOMEM:
    case NVL_ERR_LIMIT: case NVL_ERR_IO: case NVL_ERR_NOT_FOUND: case NVL_ERR_INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

int media_proc_names(const char *msg, const char *name) {
    const size_t nl = strlen(name);
    return !strncmp(msg, name, nl) && msg[nl] == ':';
}

void media_proc_spare_end(media_proc_spare *s) {
    pthread_mutex_lock(&s->mu);
    media_proc_kill(&s->p);
    pthread_mutex_unlock(&s->mu);
    media_proc_reap(1);
}

int media_proc_spare_running(media_proc_spare *s) {
    pthread_mutex_lock(&s->mu);
    const int n = s->p.pid > 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

// ---------------------------------------------------------------------------
// The helper's side

int media_proc_read_full(int fd, void *buf, size_t n) {
    char *d = buf;
    while (n) {
        const ssize_t k = read(fd, d, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        d += k;
        n -= (size_t)k;
    }
    return 1;
}

int media_proc_write_full(int fd, const void *buf, size_t n) {
    const char *b = buf;
    while (n) {
        const ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        b += k;
        n -= (size_t)k;
    }
    return 1;
}

/* One byte carrying one descriptor (SCM_RIGHTS). */
typedef struct fd_msg {
    char byte;
    struct iovec iov;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m;
} fd_msg;

static void fd_msg_init(fd_msg *f) {
    memset(f, 0, sizeof *f);
    f->byte = 'F';
    f->iov.iov_base = &f->byte;
    f->iov.iov_len = 1;
    f->m.msg_iov = &f->iov;
    f->m.msg_iovlen = 1;
    f->m.msg_control = f->u.buf;
    f->m.msg_controllen = sizeof f->u.buf;
}

enum media_proc_end media_proc_send_fd(media_proc *p, int fd) {
    fd_msg f;
    fd_msg_init(&f);
    struct cmsghdr *c = CMSG_FIRSTHDR(&f.m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t k;
    while ((k = sendmsg(p->fd, &f.m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    return k == 1 ? MEDIA_PROC_OK : MEDIA_PROC_GONE;
}

int media_proc_recv_fd(int sock) {
    fd_msg f;
    fd_msg_init(&f);
    ssize_t k;
    while ((k = recvmsg(sock, &f.m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (k != 1) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&f.m); c; c = CMSG_NXTHDR(&f.m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            return fd;
        }
    return -1;
}

/* Ends the helper when the parent's end closes, even in the middle of its work. */
static void *watch_parent(void *arg) {
    (void)arg;
    for (;;) {
        struct pollfd pf = {.fd = MEDIA_PROC_FD, .events = POLLRDHUP};
        if (poll(&pf, 1, -1) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) _exit(0);
    }
    return NULL;
}

int media_proc_worker_begin(const char *name, uint32_t hello) {
    /* the terminal's ^C, and a service manager's SIGTERM, reach the whole process group: the parent
       decides when to stop the helper (a serve being stopped finishes its running request) */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    const struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    prctl(PR_SET_NAME, name, 0, 0, 0); /* its name in ps and top (else "exe") */
    /* descriptors another thread of the parent opened without close-on-exec */
    if (close_range(MEDIA_PROC_FD + 1, ~0u, 0) != 0) {
        const long mx = sysconf(_SC_OPEN_MAX);
        for (long i = MEDIA_PROC_FD + 1; i < (mx > 0 && mx < 65536 ? mx : 65536); i++) close((int)i);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, watch_parent, NULL) != 0) return 0;
    return media_proc_write_full(MEDIA_PROC_FD, &hello, sizeof hello);
}
