/* `nanovl serve --socket PATH`: newline-delimited JSON over a Unix socket (docs/api.md).
 *
 * Threads: the main thread owns every socket (poll loop: accept, read, parse, write); one worker
 * thread owns the engine: it moves requests from the server's queue into the engine while fewer
 * than max_batch run (fairly: the next one comes from the client with the fewest running, then
 * the one served longest ago, round robin), and steps the engine, whose scheduler runs them together (api.h).
 * The worker never touches a socket: callbacks append event lines to the client's output buffer
 * under the lock and wake the main thread through a pipe. So a slow client only grows its own
 * buffer (and is dropped past a limit, its requests cancelled), a vanished client has its
 * requests cancelled, and other clients are never blocked by either.
 *
 * Shutdown: SIGTERM, SIGINT or SIGHUP stops accepting (the socket file is removed, if it is still
 * this server's), answers queued requests with "shutting_down", lets the running requests finish
 * and flushes their output (closing each connection once nothing more is due to it; a client
 * that does not read is given 30 s), then returns. A second signal cancels the running requests. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "base/alloc.h"
#include "evloop.h"
#include "media.h"
#include "wire.h"
#include "base/clock.h"

api_server_opts api_server_opts_default(void) {
    api_server_opts o;
    memset(&o, 0, sizeof o);
    o.socket_mode = 0600;
    o.max_request_bytes = 64u << 20;
    o.max_queue = 64;
    o.max_per_client = 4;
    o.rate_per_min = 600;
    o.max_pending_output = 16u << 20;
    o.max_clients = 64;
    o.idle_timeout_s = 300;
    o.max_batch = 16;
    return o;
}

typedef struct client client;

typedef struct server server;

#define CANCEL_SHUTDOWN 2 /* job.cancel: a second signal ended it (1: its client, or a client gone) */

typedef struct job {
    struct job *next;      /* queue, then the running list */
    client *cl;            /* NULL once the client is gone (under the lock) */
    char *id;              /* the client's id, or "req-N" */
    api_request rq;
    volatile int cancel;
    int running;
    int sim_taken;         /* picked in queue_position's replay */
    double t_accept;
    double last_progress;
    server *s;
    api_ask_params ocr_p;  /* OCR: the request's parameters as OCR runs them */
    api_media *media;      /* OCR: the inputs */
    api_pages *pg;         /* OCR: the page-by-page run */
    api_pages_planner *planner; /* OCR: lists the pages off the worker thread (opening PDFs may take
                              up to --page-timeout each; the worker steps every client's requests);
                              NULL once begun (worker thread) */
    api_ask_result res;    /* ask: the answer */
    int ended;             /* the engine is done with it (worker thread only) */
    double t_cancel;       /* when its client cancelled it (0: not), main thread under the lock */
    int answered;          /* its final event went out already (a cancel answered early, under the
                              lock): nothing more is sent, its id is free, it still counts against
                              its client's and the server's limits until it leaves */
    nvl_status end_st;
    cJSON *end_ev;         /* the final event */
    char end_msg[NVL_ERR_MSG_MAX];
    const char *fail_code; /* the error's code when no status names it ("forbidden"), or NULL */
    char **pins;           /* (n_pins) "/proc/self/fd/N" of each media file opened when the job began */
    int n_pins;
} job;

struct client {
    int fd;
    uint64_t serial;
    char *in;              /* bytes read, not yet a full line */
    size_t n_in, cap_in;
    int discarding;        /* dropping an oversize line up to its newline */
    char *held;            /* bytes read but not yet split into lines: reading stopped at a line
                              whose answer left the client backlogged (client_backlogged) */
    size_t n_held, held_off;
    api_buf out;           /* event lines not yet written (under the lock) */
    size_t out_off;
    double t_out;          /* when its unsent output last shrank or appeared (under the lock) */
    int overflow;          /* output passed the limit: drop the client */
    int rd_closed;         /* the client shut down its writing side: answer, then close */
    int half_told;         /* told its half-sent line was not read (tell_half_line) */
    int n_jobs;            /* queued + running */
    int n_running;         /* running (fair admission) */
    double t_last_start;   /* when its last request started (0: never) */
    int sim_running;       /* n_running and t_last_start as queue_position replays the picks */
    double sim_last_start;
    double t_active;       /* last byte read or written */
    double t_line;         /* when the unfinished line (n_in > 0 or discarding) began */
    double tokens;         /* rate limit bucket */
    double t_tokens;
    double t_log;          /* refusals logged: the second they were counted in, how many, and how
                              many more went unlogged (log_refusal) */
    int n_log;
    int64_t n_log_skipped;
    client *next;
};

struct server {
    const api_server_opts *o;
    api_engine *e;
    int lfd;
    evloop *loop;          /* the main thread's event loop; its wake handle wakes it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;      /* queue */
    int n_queued;
    job *running;          /* in the engine (list through next) */
    int n_running;
    int stop_worker;
    client *clients;
    int n_clients;
    uint64_t serial, req_serial;
    int draining;
    double drain_t0;
    dev_t sock_dev;     /* the socket file this server bound (unlinked at exit only if still it) */
    ino_t sock_ino;
    int sock_known;
    int spare_fd;       /* a descriptor held back: freed to accept and refuse a client when none is left */
    int max_conns;      /* --max-clients, or fewer where the open-file limit is low (raise_fd_limit) */
    double t_emfile_log;/* when running out of descriptors was last logged */
    int handled_signals;
    int64_t n_done, n_failed;
    int worker_threads; /* the CPU threads the worker's ops use (NVL_THREADS applied there) */
};

#define REFUSALS_LOGGED_PER_S 20 /* log_refusal */
#define BACKLOG_BYTES (256u << 10) /* client_backlogged */
#define SEND_PIECE 4096u /* client_write */
#define QUEUE_REPLAY_MAX 512 /* queue_position */

static volatile sig_atomic_t g_signals;
static int g_sigpipe[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    g_signals++;
    if (g_sigpipe[1] >= 0) {
        int saved = errno;
        ssize_t w = write(g_sigpipe[1], "s", 1);
        (void)w;
        errno = saved;
    }
}

static void vslog(const server *s, const char *fmt, va_list ap) {
    if (s->o->quiet) return;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    /* one line per entry: a client's id, path or question may hold a newline (it would forge a
       line) or terminal escapes (api_buf_line_text) */
    api_buf b = {0};
    api_buf_line_text(&b, line, 0);
    fprintf(stderr, "%s nanovl serve: %s\n", ts, b.p ? b.p : "");
    api_buf_free(&b);
}

static void slog(const server *s, const char *fmt, ...) NVL_PRINTF(2, 3);
static void slog(const server *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vslog(s, fmt, ap);
    va_end(ap);
}

/* The count of a connection's refusals left out of the log, logged (and reset) when there is one. */
static void log_refusals_skipped(server *s, client *cl) {
    if (cl->n_log_skipped > 0)
        slog(s, "%lld more request lines refused on this connection were not logged (at most %d a second are)",
             (long long)cl->n_log_skipped, REFUSALS_LOGGED_PER_S);
    cl->n_log_skipped = 0;
}

/* Logs a refused request line, at most REFUSALS_LOGGED_PER_S in each second per connection: one
 * client sending junk in a loop wrote 20-30 MB of log a second (a review). The others are
 * counted, and the count is logged before the next refusal logged or when the connection ends. */
static void log_refusal(server *s, client *cl, const char *fmt, ...) NVL_PRINTF(3, 4);
static void log_refusal(server *s, client *cl, const char *fmt, ...) {
    const double t = floor(nvl_now());
    if (t != cl->t_log) {
        cl->t_log = t;
        cl->n_log = 0;
    }
    if (cl->n_log >= REFUSALS_LOGGED_PER_S) {
        cl->n_log_skipped++;
        return;
    }
    cl->n_log++;
    log_refusals_skipped(s, cl);
    va_list ap;
    va_start(ap, fmt);
    vslog(s, fmt, ap);
    va_end(ap);
}

static void wake(server *s) {
    evloop_wake(s->loop); /* a pipe write: any thread */
}

// ---------------------------------------------------------------------------
// Events (caller holds the lock when cl may be shared with the worker)

static void emit_locked(server *s, client *cl, cJSON *ev) {
    if (!cl || cl->overflow || !ev) {
        cJSON_Delete(ev);
        return;
    }
    size_t n = 0;
    char *line = api_json_print(ev, &n); /* valid UTF-8 whatever the request held */
    cJSON_Delete(ev);
    if (!line) {
        cl->overflow = 1;
        return;
    }
    if (cl->out.n == cl->out_off) cl->t_out = nvl_now(); /* (the stall clock of serve_tick) */
    api_buf_put(&cl->out, line, n);
    api_buf_put(&cl->out, "\n", 1);
    nvl_free(line);
    if (cl->out.oom || cl->out.n - cl->out_off > s->o->max_pending_output) cl->overflow = 1;
}

static cJSON *event(const char *id, const char *name) {
    cJSON *ev = cJSON_CreateObject();
    if (!ev) return NULL;
    cJSON_AddNumberToObject(ev, "v", API_PROTOCOL_VERSION);
    if (id) cJSON_AddStringToObject(ev, "id", id);
    else cJSON_AddNullToObject(ev, "id");
    cJSON_AddStringToObject(ev, "event", name);
    return ev;
}

static cJSON *error_event(const char *id, const char *code, const char *msg) {
    cJSON *ev = event(id, "error");
    if (ev) {
        cJSON_AddStringToObject(ev, "code", code);
        cJSON_AddStringToObject(ev, "message", msg);
    }
    return ev;
}

/* From the worker: append under the lock and wake the main thread. */
static void job_emit(server *s, job *j, cJSON *ev) {
    pthread_mutex_lock(&s->mu);
    if (j->cl && !j->answered) {
        emit_locked(s, j->cl, ev);
        if (j->cl->overflow) __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
    } else {
        cJSON_Delete(ev);
    }
    pthread_mutex_unlock(&s->mu);
    wake(s);
}

// ---------------------------------------------------------------------------
// Worker

static int w_on_text(const char *t, size_t n, int reasoning, void *user) {
    job *j = user;
    cJSON *ev = event(j->id, "token");
    if (ev) {
        char *z = nvl_malloc(n + 1);
        if (z) {
            memcpy(z, t, n);
            z[n] = 0;
            cJSON_AddItemToObject(ev, "text", api_json_text(z, n)); /* (a NUL byte as \u0000) */
            nvl_free(z);
        }
        cJSON_AddBoolToObject(ev, "reasoning", reasoning);
    }
    job_emit(j->s, j, ev);
    return __atomic_load_n(&j->cancel, __ATOMIC_RELAXED);
}

static void w_on_progress(const api_progress *p, void *user) {
    job *j = user;
    const double t = nvl_now();
    if (t - j->last_progress < 0.2 && p->stage == API_STAGE_GENERATE) return;
    j->last_progress = t;
    cJSON *ev = event(j->id, "progress");
    if (ev) {
        cJSON_AddStringToObject(ev, "stage", api_stage_name(p->stage));
        if (p->item) cJSON_AddStringToObject(ev, "item", p->item);
        cJSON_AddNumberToObject(ev, "done", (double)p->done);
        cJSON_AddNumberToObject(ev, "total", (double)p->total);
        cJSON_AddNumberToObject(ev, "elapsed_s", round(p->elapsed_s * 1000) / 1000);
    }
    job_emit(j->s, j, ev);
}

static void w_on_notice(const char *msg, void *user) {
    job *j = user;
    cJSON *ev = event(j->id, "notice");
    if (ev) cJSON_AddStringToObject(ev, "message", msg);
    job_emit(j->s, j, ev);
}

static int w_on_page(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    job *j = user;
    cJSON *ev = event(j->id, "page");
    if (ev) cJSON_AddNumberToObject(ev, "index", index);
    if (ev) cJSON_AddNumberToObject(ev, "total", n_total);
    job_emit(j->s, j, api_json_merge(ev, api_page_to_json(name, page, r, "text")));
    return __atomic_load_n(&j->cancel, __ATOMIC_RELAXED);
}

static int w_on_page_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    job *j = user;
    cJSON *ev = event(j->id, "page");
    if (ev) cJSON_AddNumberToObject(ev, "index", index);
    if (ev) cJSON_AddNumberToObject(ev, "total", n_total);
    job_emit(j->s, j, api_json_merge(ev, api_page_error_to_json(name, page, st, msg)));
    return __atomic_load_n(&j->cancel, __ATOMIC_RELAXED);
}

/* The engine ended an ask (on the worker thread): the final event, sent when the job is reaped. */
static void w_on_done(nvl_status st, const char *msg, void *user) {
    job *j = user;
    j->ended = 1;
    j->end_st = st;
    snprintf(j->end_msg, sizeof j->end_msg, "%s", msg ? msg : "");
    if (st == NVL_OK) j->end_ev = api_json_merge(event(j->id, "done"), api_result_to_json(&j->res));
    api_ask_result_free(&j->res);
}

static void w_on_finish(nvl_status st, int n_failed, const char *msg, void *user) {
    job *j = user;
    j->ended = 1;
    j->end_st = st;
    snprintf(j->end_msg, sizeof j->end_msg, "%s", msg ? msg : "");
    if (st == NVL_OK && (j->end_ev = event(j->id, "done"))) cJSON_AddNumberToObject(j->end_ev, "failed_pages", n_failed);
}

/* An OCR job's pages are listed (api_pages_plan_async's thread, after api_pages_planned says so):
 * the worker, perhaps waiting for it, begins its run. The signal under the lock cannot be lost:
 * the worker looks at api_pages_planned under it before it waits. */
static void on_planned(void *user) {
    job *j = user;
    pthread_mutex_lock(&j->s->mu);
    pthread_cond_signal(&j->s->cv);
    pthread_mutex_unlock(&j->s->mu);
}

static void job_failed(job *j, nvl_status st, const char *msg) {
    j->ended = 1;
    j->end_st = st;
    snprintf(j->end_msg, sizeof j->end_msg, "%s", msg);
}

static int under_allowed(const server *s, const char *rp);

static void job_unpin(job *j) {
    for (int i = 0; i < j->n_pins; i++) api_tmp_release(j->pins[i]); /* (closes N) */
    nvl_free(j->pins);
    j->pins = NULL;
    j->n_pins = 0;
}

/* The files a job holds open at most (one per distinct path; a request naming a thousand files
 * ran out of descriptors). */
#define JOB_MAX_PINS 64

/* The media files of an OCR job, and of every job under --allow, are opened as it begins and
 * read through that descriptor ("/proc/self/fd/N", the part named by its path as given): every
 * page of an OCR request comes from the one file, though it is replaced or removed meanwhile (each
 * page opened the path again: a replaced PDF's later pages came from the new one); and --allow is
 * checked on the file opened, not on a path resolved earlier (a symbolic link swapped between the
 * check and the open read a file outside; a review). Only regular files are opened (a FIFO's
 * writer was released by the open). A path named twice is opened once; past JOB_MAX_PINS distinct
 * files an OCR job reads the rest by path, and a job under --allow is refused. Without --allow
 * a path that cannot be opened is left to the engine's own message; with it, it fails here (the
 * engine would open the path again). 0, or an error in err. */
static nvl_status job_pin(const server *s, job *j, nvl_err *err) {
    const int allow = s->o->n_allow > 0;
    if (!allow && j->rq.type != API_REQ_OCR) return NVL_OK; /* (an ask reads each file once) */
    int n = 0;
    for (int m = 0; m < j->rq.n_msgs; m++)
        for (int k = 0; k < j->rq.msgs[m].n_parts; k++) n += j->rq.msgs[m].parts[k].kind == API_PART_MEDIA;
    if (!n) return NVL_OK;
    j->pins = nvl_calloc((size_t)(n < JOB_MAX_PINS ? n : JOB_MAX_PINS), sizeof *j->pins);
    const char **given = nvl_calloc((size_t)(n < JOB_MAX_PINS ? n : JOB_MAX_PINS), sizeof *given);
    nvl_status st = j->pins && given ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    for (int m = 0; m < j->rq.n_msgs && st == NVL_OK; m++)
        for (int k = 0; k < j->rq.msgs[m].n_parts && st == NVL_OK; k++) {
            api_media *md = &((api_part *)j->rq.msgs[m].parts)[k].media;
            if (j->rq.msgs[m].parts[k].kind != API_PART_MEDIA || !md->path) continue;
            int p = 0;
            while (p < j->n_pins && strcmp(given[p], md->path)) p++;
            if (p == j->n_pins) { /* a path not opened yet */
                if (j->n_pins == JOB_MAX_PINS) {
                    if (!allow) continue;
                    j->fail_code = "limit_exceeded";
                    st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: a request names more than %d different files, the most "
                                     "one request may hold open under --allow", md->path, JOB_MAX_PINS);
                    break;
                }
                int fd = -1;
                nvl_err e2 = {0};
                if (media_open_regular(md->path, NULL, &fd, NULL, &e2) != NVL_OK) {
                    if (!allow) continue;
                    st = nvl_err_set(err, e2.code ? e2.code : NVL_ERR_IO, "%s", e2.msg);
                    break;
                }
                char proc[API_FD_PATH_MAX];
                if (!api_fd_path(fd, proc, sizeof proc) || !(j->pins[j->n_pins] = nvl_strdup(proc))) {
                    close(fd);
                    if (!allow) continue; /* (no /proc: read by its path, as before) */
                    st = nvl_err_set(err, NVL_ERR_IO, "%s: cannot hold the file open through /proc/self/fd", md->path);
                    break;
                }
                given[j->n_pins++] = md->path;
                if (allow) { /* where the file opened lies (not where its path led a moment ago) */
                    char where[PATH_MAX + 1];
                    const ssize_t l = readlink(proc, where, sizeof where - 1);
                    if (l > 0) where[l] = 0;
                    if (l <= 0 || where[0] != '/' || !under_allowed(s, where)) {
                        j->fail_code = "forbidden";
                        st = nvl_err_set(err, NVL_ERR_IO, "%s: outside the directories this server may read (--allow)",
                                         md->path);
                        break;
                    }
                }
            }
            if (!md->name) md->name = md->path;
            md->path = j->pins[p];
        }
    nvl_free(given);
    return st;
}

/* Hands a job to the engine (worker thread, lock not held); an OCR job's pages are listed on a
 * thread of its own first. */
static void start_job(server *s, job *j) {
    api_callbacks cb = {.on_text = w_on_text, .on_progress = w_on_progress, .on_notice = w_on_notice, .user = j,
                        .cancel = &j->cancel, .on_done = w_on_done};
    nvl_err err = {0};
    nvl_status st;
    j->s = s;
    if ((st = job_pin(s, j, &err)) != NVL_OK) {
        job_failed(j, st, err.msg);
        return;
    }
    if (j->rq.type == API_REQ_OCR) {
        j->ocr_p = api_ocr_params(&j->rq.params, api_request_has_param(&j->rq, "max_tokens"));
        const int n_media = j->rq.msgs[0].n_parts;
        j->media = nvl_calloc((size_t)n_media + 1, sizeof *j->media);
        if (!j->media) {
            st = nvl_err_set(&err, NVL_ERR_NOMEM, "out of memory");
        } else {
            for (int i = 0; i < n_media; i++) j->media[i] = j->rq.msgs[0].parts[i].media;
            cb.on_text = NULL; /* pages come whole in "page" events */
            cb.on_done = NULL;
            /* pages come whole, in order, so several may run at once (4: a long document does not
             * take every place from the other clients' requests) */
            const api_pages_hooks h = {.on_page = w_on_page, .on_page_error = w_on_page_error, .on_finish = w_on_finish,
                                       .cb = &cb, .user = j, .window = 4};
            if (api_pages_plan_async(s->e, j->media, n_media, j->rq.prompt, &j->ocr_p, &h, on_planned, j, &j->planner,
                                     &err) == NVL_OK)
                return;
            st = api_pages_start(s->e, j->media, n_media, j->rq.prompt, &j->ocr_p, &h, &j->pg, &err);
        }
    } else {
        st = api_engine_submit(s->e, j->rq.msgs, j->rq.n_msgs, &j->rq.params, &cb, &j->res, NULL, &err);
    }
    if (st != NVL_OK) job_failed(j, st, err.msg);
}

/* OCR jobs whose pages are listed begin their runs (worker thread, lock not held). Returns how
 * many still list theirs. */
static int begin_planned(server *s) {
    int n_planning = 0;
    for (;;) {
        job *j = NULL;
        n_planning = 0;
        pthread_mutex_lock(&s->mu);
        for (job *r = s->running; r; r = r->next)
            if (r->planner && api_pages_planned(r->planner)) j = r;
            else n_planning += r->planner != NULL;
        pthread_mutex_unlock(&s->mu);
        if (!j) return n_planning;
        nvl_err err = {0};
        const nvl_status st = api_pages_plan_finish(j->planner, &j->pg, &err);
        j->planner = NULL;
        if (st != NVL_OK) job_failed(j, st, err.msg);
    }
}

/* Jobs the engine is done with: their last event goes out, they leave (worker thread). */
static void reap_jobs(server *s) {
    for (;;) {
        pthread_mutex_lock(&s->mu);
        job *j = s->running;
        while (j && !j->ended) j = j->next;
        pthread_mutex_unlock(&s->mu);
        if (!j) return;
        cJSON *ev = j->end_ev;
        j->end_ev = NULL;
        if (j->end_st != NVL_OK) {
            cJSON_Delete(ev);
            const int why = j->end_st == NVL_ERR_CANCELLED ? __atomic_load_n(&j->cancel, __ATOMIC_RELAXED) : 0;
            ev = error_event(j->id, j->fail_code && !why ? j->fail_code : api_status_code(j->end_st),
                             why == CANCEL_SHUTDOWN ? "cancelled: the server is shutting down (a second signal); retry on "
                                                      "another server"
                             : why ? "cancelled"
                                   : j->end_msg);
        }
        pthread_mutex_lock(&s->mu);
        const int gone = j->cl == NULL, answered = j->answered;
        pthread_mutex_unlock(&s->mu);
        slog(s, "%s %s: %s%s%s%s (%.2f s)", api_request_type_name(j->rq.type), j->id,
             j->end_st == NVL_OK ? "done" : j->fail_code ? j->fail_code : api_status_code(j->end_st),
             j->end_st == NVL_OK ? "" : ": ",
             j->end_st == NVL_OK ? "" : j->end_msg,
             gone ? " (client gone)" : answered ? " (answered cancelled earlier; result dropped)" : "", nvl_now() - j->t_accept);
        /* the job leaves the counts in the same locked section that queues its last event: a
           client that reads "done" and sends the same id (or its next request within
           --max-per-client) at once must find it gone, and "status" must count it done */
        pthread_mutex_lock(&s->mu);
        for (job **pp = &s->running; *pp; pp = &(*pp)->next)
            if (*pp == j) {
                *pp = j->next;
                break;
            }
        s->n_running--;
        if (j->cl) {
            j->cl->n_jobs--;
            j->cl->n_running--;
        }
        s->n_done++;
        if (j->answered) cJSON_Delete(ev);
        else emit_locked(s, j->cl, ev);
        pthread_mutex_unlock(&s->mu);
        api_pages_free(j->pg);
        nvl_free(j->media);
        job_unpin(j);
        api_ask_result_free(&j->res);
        api_request_free(&j->rq);
        nvl_free(j->id);
        nvl_free(j);
        wake(s);
    }
}

/* The queued job to run next (under the lock), round robin between clients: the client with the
 * fewest requests running, then the one whose last request started longest ago (or never), then
 * the oldest job. With sim, the same choice on each client's sim_running / sim_last_start, among
 * the jobs not sim_taken (queue_position). */
static job *pick_job_rule(server *s, job **prev_out, int sim) {
    job *best = NULL, *best_prev = NULL, *prev = NULL;
    for (job *j = s->head; j; prev = j, j = j->next) {
        if (sim && j->sim_taken) continue;
        int better = !best;
        if (!better && j->cl && best->cl && j->cl != best->cl) {
            const client *a = j->cl, *b = best->cl;
            const int ra = sim ? a->sim_running : a->n_running, rb = sim ? b->sim_running : b->n_running;
            const double ta = sim ? a->sim_last_start : a->t_last_start, tb = sim ? b->sim_last_start : b->t_last_start;
            better = ra < rb || (ra == rb && ta < tb);
        }
        if (better) {
            best = j;
            best_prev = prev;
        }
    }
    *prev_out = best_prev;
    return best;
}

static job *pick_job(server *s, job **prev_out) { return pick_job_rule(s, prev_out, 0); }

/* me's place in line (under the lock): 0 when a free place takes it now, else k when it is the k-th
 * to start as places free up. The worker's picks are replayed on the queue as it stands, no
 * request ending or arriving meanwhile: counting every request queued ahead told a client behind
 * another's four queued requests it was fourth, when it started second (a review). With more than
 * QUEUE_REPLAY_MAX queued (--max-queue raised) the replay, picks of scans of the queue under the
 * lock, took seconds: the queue's length is given instead, a bound. */
static int queue_position(server *s, const job *me) {
    const int mb = s->o->max_batch > 0 ? s->o->max_batch : 1;
    const int free_places = mb > s->n_running ? mb - s->n_running : 0;
    if (s->n_queued > QUEUE_REPLAY_MAX) /* (the replay is quadratic: past it, the queue's length, a bound) */
        return s->n_queued > free_places ? s->n_queued - free_places : 0;
    for (client *c = s->clients; c; c = c->next) {
        c->sim_running = c->n_running;
        c->sim_last_start = c->t_last_start;
    }
    for (job *j = s->head; j; j = j->next) j->sim_taken = 0;
    int ahead = 0;
    double t = nvl_now();
    for (job *prev, *j; (j = pick_job_rule(s, &prev, 1)) != NULL && j != me; ahead++) {
        j->sim_taken = 1;
        if (j->cl) {
            j->cl->sim_running++;
            j->cl->sim_last_start = t += 1e-6; /* (each start later than the one before) */
        }
    }
    return ahead + 1 > free_places ? ahead + 1 - free_places : 0;
}

static void *worker_main(void *arg) {
    server *s = arg;
    kern_threads_apply(); /* NVL_THREADS: OpenMP's thread count is per thread */
    pthread_mutex_lock(&s->mu);
    s->worker_threads = kern_cpu_threads();
    const int max_batch = s->o->max_batch > 0 ? s->o->max_batch : 1;
    for (;;) {
        job *prev = NULL, *j;
        while (!s->stop_worker && s->n_running < max_batch && (j = pick_job(s, &prev)) != NULL) {
            if (prev) prev->next = j->next;
            else s->head = j->next;
            if (s->tail == j) s->tail = prev;
            s->n_queued--;
            j->next = s->running;
            s->running = j;
            j->running = 1;
            s->n_running++;
            if (j->cl) {
                j->cl->n_running++;
                j->cl->t_last_start = nvl_now();
            }
            pthread_mutex_unlock(&s->mu);
            start_job(s, j);
            pthread_mutex_lock(&s->mu);
        }
        if (s->stop_worker)
            for (job *r = s->running; r; r = r->next) __atomic_store_n(&r->cancel, 1, __ATOMIC_RELAXED);
        if (!s->n_running) {
            if (s->stop_worker) break;
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        const int n_planning = begin_planned(s);
        reap_jobs(s); /* a job can end as it starts (an input that cannot be read) */
        const int stepped = api_engine_pending(s->e) > 0;
        if (stepped) api_engine_step(s->e);
        reap_jobs(s);
        pthread_mutex_lock(&s->mu);
        /* nothing to step but pages being listed: wait for a plan thread, a new job or the stop */
        if (!stepped && n_planning > 0 && n_planning == s->n_running && !s->stop_worker &&
            !(s->head && s->n_running < max_batch)) {
            int ready = 0;
            for (job *r = s->running; r; r = r->next) ready |= r->planner && api_pages_planned(r->planner);
            if (!ready) pthread_cond_wait(&s->cv, &s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// ---------------------------------------------------------------------------
// Clients (main thread)

/* Closes a connection after reading (up to 64 KiB of) what its client sent and nobody read: a
 * Unix socket closed with unread bytes gives its peer ECONNRESET, after the last events, instead of
 * an end of file (a review saw a client refused busy fail its read; 100 of 100 did here). */
static void close_drained(int fd) {
    char junk[4096];
    for (int k = 0; k < 16 && recv(fd, junk, sizeof junk, MSG_DONTWAIT) > 0; k++) {
    }
    close(fd);
}

static void client_drop(server *s, client *cl) {
    pthread_mutex_lock(&s->mu);
    /* queued jobs of this client go; the running ones are cancelled and detached */
    job **pp = &s->head, *prev = NULL;
    while (*pp) {
        job *j = *pp;
        if (j->cl == cl) {
            *pp = j->next;
            if (s->tail == j) s->tail = prev;
            s->n_queued--;
            api_request_free(&j->rq);
            nvl_free(j->id);
            nvl_free(j);
        } else {
            prev = j;
            pp = &j->next;
        }
    }
    for (job *j = s->running; j; j = j->next)
        if (j->cl == cl) {
            __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
            j->cl = NULL;
        }
    pthread_mutex_unlock(&s->mu);
    for (client **cp = &s->clients; *cp; cp = &(*cp)->next)
        if (*cp == cl) {
            *cp = cl->next;
            break;
        }
    s->n_clients--;
    evloop_del(s->loop, cl->fd);
    close_drained(cl->fd);
    log_refusals_skipped(s, cl);
    nvl_free(cl->in);
    nvl_free(cl->held);
    api_buf_free(&cl->out);
    nvl_free(cl);
}

static void reply(server *s, client *cl, cJSON *ev) {
    pthread_mutex_lock(&s->mu);
    emit_locked(s, cl, ev);
    pthread_mutex_unlock(&s->mu);
}

static int rate_ok(server *s, client *cl) {
    if (s->o->rate_per_min <= 0) return 1;
    const double t = nvl_now(), burst = fmax(1.0, s->o->rate_per_min / 10.0);
    cl->tokens = fmin(burst, cl->tokens + (t - cl->t_tokens) * s->o->rate_per_min / 60.0);
    cl->t_tokens = t;
    if (cl->tokens < 1.0) return 0;
    cl->tokens -= 1.0;
    return 1;
}

static void status_reply(server *s, client *cl, const char *id) {
    cJSON *ev = event(id, "status");
    if (!ev) return;
    cJSON_AddStringToObject(ev, "version", NANOVL_VERSION);
    cJSON_AddNumberToObject(ev, "protocol", API_PROTOCOL_VERSION);
    if (s->o->model_name) cJSON_AddStringToObject(ev, "model", s->o->model_name);
    cJSON_AddStringToObject(ev, "backend", api_engine_backend_name(s->e));
    cJSON_AddStringToObject(ev, "device", api_engine_backend_description(s->e));
    pthread_mutex_lock(&s->mu);
    cJSON_AddNumberToObject(ev, "queued", s->n_queued);
    cJSON_AddBoolToObject(ev, "busy", s->running != NULL);
    cJSON_AddNumberToObject(ev, "running", s->n_running);
    cJSON_AddNumberToObject(ev, "max_batch", s->o->max_batch);
    cJSON_AddNumberToObject(ev, "clients", s->n_clients);
    cJSON_AddNumberToObject(ev, "completed", (double)s->n_done);
    cJSON_AddBoolToObject(ev, "draining", s->draining);
    if (s->worker_threads > 0) cJSON_AddNumberToObject(ev, "threads", s->worker_threads);
    if (media_supports(MEDIA_KIND_PDF)) { /* the PDF renderer processes and their bounds (media.h) */
        const media_pdf_sandbox sb = media_pdf_get_sandbox();
        cJSON_AddNumberToObject(ev, "pdf_renderers", media_pdf_renderers());
        cJSON_AddNumberToObject(ev, "page_timeout_s", sb.timeout_s > 0 ? sb.timeout_s : 0);
        cJSON_AddNumberToObject(ev, "page_memory_mib", sb.max_mb > 0 ? sb.max_mb : 0);
    }
    if (media_supports(MEDIA_KIND_VIDEO)) { /* the video decoder processes and their bounds */
        const media_video_sandbox vsb = media_video_get_sandbox();
        cJSON_AddNumberToObject(ev, "video_decoders", media_video_decoders());
        cJSON_AddNumberToObject(ev, "video_timeout_s", vsb.timeout_s > 0 ? vsb.timeout_s : 0);
        cJSON_AddNumberToObject(ev, "video_memory_mib", vsb.max_mb > 0 ? vsb.max_mb : 0);
    }
    { /* the image decoder processes and their bounds */
        const media_image_sandbox isb = media_image_get_sandbox();
        cJSON_AddNumberToObject(ev, "image_decoders", media_image_decoders());
        cJSON_AddNumberToObject(ev, "image_timeout_s", isb.timeout_s > 0 ? isb.timeout_s : 0);
        cJSON_AddNumberToObject(ev, "image_memory_mib", isb.max_mb > 0 ? isb.max_mb : 0);
    }
    cJSON_AddNumberToObject(ev, "max_megapixels", (double)media_limits_default().max_pixels / 1e6); /* (--max-megapixels) */
    emit_locked(s, cl, ev);
    pthread_mutex_unlock(&s->mu);
}

/* The id of a request that failed to parse, when the line is a JSON object with a string id. */
static char *salvage_id(const char *line, size_t n, int *ask_or_ocr) {
    cJSON *r = cJSON_ParseWithLength(line, n);
    const cJSON *id = r ? cJSON_GetObjectItemCaseSensitive(r, "id") : NULL;
    const cJSON *type = r ? cJSON_GetObjectItemCaseSensitive(r, "type") : NULL;
    /* an object read whole whose type is ask (the default) or ocr: a request of those, refused */
    *ask_or_ocr = cJSON_IsObject(r) && (!type || (cJSON_IsString(type) && (!strcmp(type->valuestring, "ask") ||
                                                                           !strcmp(type->valuestring, "ocr"))));
    char *out = NULL;
    if (cJSON_IsString(id) && strlen(id->valuestring) <= 256) {
        size_t l = strlen(id->valuestring) + 1;
        out = nvl_malloc(l);
        if (out) memcpy(out, id->valuestring, l);
    }
    cJSON_Delete(r);
    return out;
}

/* Whether a resolved path lies inside one of the --allow directories. */
static int under_allowed(const server *s, const char *rp) {
    for (int i = 0; i < s->o->n_allow; i++) {
        const size_t l = strlen(s->o->allow[i]);
        if (!strncmp(rp, s->o->allow[i], l) && (rp[l] == '/' || rp[l] == 0 || (l && s->o->allow[i][l - 1] == '/'))) return 1;
    }
    return 0;
}

/* realpath() of the nearest ancestor of path that exists: its directories from the deepest up,
 * then "/" (absolute) or the working directory (relative); NULL if none resolves. */
static char *resolve_ancestor(const char *path) {
    char *anc = nvl_strdup(path), *rp = NULL;
    if (!anc) return NULL;
    for (char *sl; !rp && (sl = strrchr(anc, '/')) != NULL && sl != anc;) {
        *sl = 0;
        rp = realpath(anc, NULL);
    }
    if (!rp) rp = realpath(anc[0] == '/' ? "/" : ".", NULL);
    nvl_free(anc);
    return rp;
}

/* With --allow DIR, each media path of a request: 1 it resolves inside an allowed directory;
 * 0 outside (forbidden); -1 it does not resolve and its nearest existing ancestor is inside
 * (not_found; why says so). A missing path outside is forbidden too: "not_found" there told a
 * client which paths exist outside (a review's find). */
static int path_allowed(const server *s, const char *path, char *why, size_t why_n) {
    if (!s->o->n_allow) return 1;
    char *rp = realpath(path, NULL);
    const int err_no = errno;
    int ok = 0;
    if (rp) {
        ok = under_allowed(s, rp);
    } else {
        rp = resolve_ancestor(path);
        ok = rp && under_allowed(s, rp) ? -1 : 0;
        if (ok < 0) snprintf(why, why_n, "%s: %s", path, strerror(err_no));
    }
    if (ok == 0) snprintf(why, why_n, "%s: outside the directories this server may read (--allow)", path);
    free(rp);
    return ok;
}

static void handle_line(server *s, client *cl, const char *line, size_t n) {
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
    if (n == 0) return;
    api_request rq;
    nvl_err err = {0};
    nvl_status st = api_request_parse(line, n, &rq, &err);
    if (st != NVL_OK) {
        int ask_or_ocr = 0;
        char *id = salvage_id(line, n, &ask_or_ocr);
        if (!id && ask_or_ocr && (id = nvl_malloc(32))) { /* (docs: an ask or ocr without an id is req-N, refused too) */
            pthread_mutex_lock(&s->mu);
            snprintf(id, 32, "req-%llu", (unsigned long long)++s->req_serial);
            pthread_mutex_unlock(&s->mu);
        }
        const char *code = api_request_error_code(st);
        reply(s, cl, error_event(id, code, err.msg));
        log_refusal(s, cl, "request %s: refused, %s: %s", id ? id : "(no id)", code, err.msg); /* (docs: every
                                                                                                  request logged) */
        nvl_free(id);
        return;
    }
    if (rq.type == API_REQ_STATUS) {
        status_reply(s, cl, rq.id);
        api_request_free(&rq);
        return;
    }
    if (rq.type == API_REQ_CANCEL) {
        int found = 0;
        pthread_mutex_lock(&s->mu);
        for (job *j = s->running; j && !found; j = j->next)
            if (j->cl == cl && !j->answered && !strcmp(j->id, rq.target)) {
                __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
                if (j->t_cancel == 0) j->t_cancel = nvl_now();
                found = 1;
            }
        for (job **pp = &s->head, *prev = NULL; *pp && !found; prev = *pp, pp = &(*pp)->next) {
            job *j = *pp;
            if (j->cl != cl || strcmp(j->id, rq.target)) continue;
            *pp = j->next;
            if (s->tail == j) s->tail = prev;
            s->n_queued--;
            cl->n_jobs--;
            emit_locked(s, cl, error_event(j->id, "cancelled", "cancelled before it started"));
            api_request_free(&j->rq);
            nvl_free(j->id);
            nvl_free(j);
            found = 1;
            break;
        }
        if (!found) {
            char msg[400];
            snprintf(msg, sizeof msg, "no queued or running request with id '%s' on this connection", rq.target);
            emit_locked(s, cl, error_event(rq.id, "not_found", msg));
        }
        pthread_mutex_unlock(&s->mu);
        api_request_free(&rq);
        return;
    }
    char msg[600];
    const char *code = NULL;
    for (int m = 0; m < rq.n_msgs && !code; m++)
        for (int k = 0; k < rq.msgs[m].n_parts && !code; k++) {
            const api_part *pt = &rq.msgs[m].parts[k];
            const int a = pt->kind == API_PART_MEDIA && pt->media.path ? path_allowed(s, pt->media.path, msg, sizeof msg) : 1;
            if (a < 0) code = "not_found";
            else if (a == 0) code = "forbidden";
        }
    if (code) {
    } else if (s->draining) {
        code = "shutting_down";
        snprintf(msg, sizeof msg, "the server is shutting down");
    } else if (!rate_ok(s, cl)) {
        code = "rate_limited";
        snprintf(msg, sizeof msg, "more than %g requests per minute on this connection", s->o->rate_per_min);
    }
    pthread_mutex_lock(&s->mu);
    if (!code && s->n_queued >= s->o->max_queue) {
        code = "queue_full";
        snprintf(msg, sizeof msg, "%d requests are already queued; retry later", s->n_queued);
    } else if (!code && cl->n_jobs >= s->o->max_per_client) {
        code = "too_many_requests";
        int ending = 0;
        for (job *j = s->running; j; j = j->next) ending += j->cl == cl && j->answered;
        snprintf(msg, sizeof msg, "this connection already has %d requests queued or running%s", cl->n_jobs,
                 ending ? " (counting cancelled ones whose uninterruptible step is still ending)" : "");
    }
    if (!code && rq.id) { /* ids must be unique among this client's live requests */
        int dup = 0;
        for (job *j = s->running; j && !dup; j = j->next) dup = j->cl == cl && !j->answered && !strcmp(j->id, rq.id);
        for (job *j = s->head; j && !dup; j = j->next) dup = j->cl == cl && !strcmp(j->id, rq.id);
        if (dup) {
            code = "duplicate_id";
            snprintf(msg, sizeof msg, "a request with this id is already queued or running");
        }
    }
    char gen[32]; /* (a request without an id gets one here, refused or not: its error names it) */
    snprintf(gen, sizeof gen, "req-%llu", (unsigned long long)++s->req_serial);
    const char *id = rq.id ? rq.id : gen;
    if (code) {
        emit_locked(s, cl, error_event(id, code, msg));
        pthread_mutex_unlock(&s->mu);
        log_refusal(s, cl, "%s %s: refused, %s: %s", api_request_type_name(rq.type), id, code, msg); /* (a blocked
                                                                                                  --allow path) */
        api_request_free(&rq);
        return;
    }
    job *j = nvl_calloc(1, sizeof *j);
    if (j) j->id = nvl_malloc(strlen(id) + 1);
    if (!j || !j->id) {
        if (j) nvl_free(j);
        emit_locked(s, cl, error_event(id, "out_of_memory", "out of memory"));
        pthread_mutex_unlock(&s->mu);
        api_request_free(&rq);
        return;
    }
    memcpy(j->id, id, strlen(id) + 1);
    j->rq = rq;
    j->cl = cl;
    j->t_accept = nvl_now();
    if (s->tail) s->tail->next = j;
    else s->head = j;
    s->tail = j;
    s->n_queued++;
    cl->n_jobs++;
    cJSON *ev = event(j->id, "accepted");
    if (ev) cJSON_AddNumberToObject(ev, "queue_position", queue_position(s, j));
    emit_locked(s, cl, ev);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Whether BACKLOG_BYTES (or half of --max-pending-output, if less) of the client's events wait to
 * be sent: its request lines are then left unread until it reads. A client that sent requests
 * without reading the answers (statuses, refusals, in a loop) kept the main thread in its read
 * loop: no other client was accepted or written to, signals went unanswered (a review). */
static int client_backlogged(server *s, client *cl) {
    const size_t lim = s->o->max_pending_output / 2 < BACKLOG_BYTES ? s->o->max_pending_output / 2 : BACKLOG_BYTES;
    pthread_mutex_lock(&s->mu);
    const int b = cl->out.n - cl->out_off >= lim;
    pthread_mutex_unlock(&s->mu);
    return b;
}

/* Splits bytes read into request lines and handles each, stopping after a line whose answer left
 * the client backlogged; returns the bytes taken (n unless it stopped), or (size_t)-1 when out of
 * memory. */
static size_t client_feed(server *s, client *cl, const char *buf, size_t n) {
    size_t off = 0;
    while (off < n) {
        const char *nl = memchr(buf + off, '\n', n - off);
        const size_t take = nl ? (size_t)(nl - (buf + off)) : n - off;
        if (cl->discarding) {
            if (nl) cl->discarding = 0;
            off += take + (nl ? 1 : 0);
            continue;
        }
        if (cl->n_in + take > s->o->max_request_bytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "a request line is longer than the limit of %zu bytes", s->o->max_request_bytes);
            reply(s, cl, error_event(NULL, "too_large", msg));
            cl->n_in = 0;
            cl->discarding = !nl;
            off += take + (nl ? 1 : 0);
        } else {
            if (cl->n_in + take + 1 > cl->cap_in) {
                size_t nc = cl->cap_in ? cl->cap_in * 2 : 4096;
                while (nc < cl->n_in + take + 1) nc *= 2;
                char *ni = nvl_realloc(cl->in, nc);
                if (!ni) return (size_t)-1;
                cl->in = ni;
                cl->cap_in = nc;
            }
            memcpy(cl->in + cl->n_in, buf + off, take);
            cl->n_in += take;
            off += take;
            if (!nl) continue;
            off++;
            handle_line(s, cl, cl->in, cl->n_in);
            cl->n_in = 0;
            cl->t_line = cl->t_active; /* the next line starts now */
        }
        if (cl->cap_in > (1u << 20) && cl->n_in == 0) { /* a long line's buffer is not kept for the small
                                                           ones after it (64 clients x 64 MiB) */
            nvl_free(cl->in);
            cl->in = NULL;
            cl->cap_in = 0;
        }
        if (client_backlogged(s, cl)) break;
    }
    return off;
}

/* Handles the lines read and held back, as far as the client's backlog allows; returns 0, or -1
 * when out of memory. Held bytes left mean the client is not read. */
static int client_feed_held(server *s, client *cl) {
    if (cl->held_off == cl->n_held || client_backlogged(s, cl)) return 0;
    const size_t k = client_feed(s, cl, cl->held + cl->held_off, cl->n_held - cl->held_off);
    if (k == (size_t)-1) return -1;
    cl->held_off += k;
    if (cl->held_off == cl->n_held) {
        nvl_free(cl->held);
        cl->held = NULL;
        cl->n_held = cl->held_off = 0;
    }
    return 0;
}

/* Reads once (up to 64 KiB: one client cannot hold the main thread) after the held lines, unless
 * the client is backlogged; returns 0 to keep the client, 1 at end of input, -1 on error. */
static int client_read(server *s, client *cl) {
    if (client_feed_held(s, cl) < 0) return -1;
    if (cl->n_held || client_backlogged(s, cl)) return 0;
    char buf[65536];
    ssize_t r;
    do r = read(cl->fd, buf, sizeof buf);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r < 0) return -1;
    if (r == 0) { /* end of input ends the last line, even without its newline */
        if (cl->n_in && !cl->discarding) handle_line(s, cl, cl->in, cl->n_in);
        cl->n_in = 0;
        cl->discarding = 0;
        return 1;
    }
    cl->t_active = nvl_now();
    if (!cl->n_in && !cl->discarding) cl->t_line = cl->t_active;
    const size_t k = client_feed(s, cl, buf, (size_t)r);
    if (k == (size_t)-1) return -1;
    if (k < (size_t)r) { /* backlogged: the rest waits */
        cl->held = nvl_malloc((size_t)r - k);
        if (!cl->held) return -1;
        memcpy(cl->held, buf + k, (size_t)r - k);
        cl->n_held = (size_t)r - k;
        cl->held_off = 0;
    }
    return 0;
}

/* Writes what can be written; returns -1 to drop the client. */
static int client_write(server *s, client *cl) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (cl->overflow) rc = -1;
    while (rc == 0 && cl->out_off < cl->out.n) {
        /* in pieces of SEND_PIECE: a Unix socket frees its sender's space when the reader has read
           a whole sent piece, so the stall rule of serve_tick sees a slow reader's progress (one
           send of 200 KiB, read at 1 KB/s, looked like no reading at all: a review) */
        const size_t piece = cl->out.n - cl->out_off < SEND_PIECE ? cl->out.n - cl->out_off : SEND_PIECE;
        ssize_t w = send(cl->fd, cl->out.p + cl->out_off, piece, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w <= 0) rc = -1;
        else {
            cl->out_off += (size_t)w;
            cl->t_active = cl->t_out = nvl_now();
        }
    }
    if (cl->out_off == cl->out.n) {
        cl->out.n = 0;
        cl->out_off = 0;
    } else if (cl->out_off > (1u << 20)) { /* compact */
        memmove(cl->out.p, cl->out.p + cl->out_off, cl->out.n - cl->out_off);
        cl->out.n -= cl->out_off;
        cl->out_off = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

// ---------------------------------------------------------------------------
// Socket

static nvl_status open_socket(server *s, const char *path, nvl_err *err) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: socket path longer than %zu bytes", path, sizeof a.sun_path - 1);
    memcpy(a.sun_path, path, strlen(path) + 1);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return nvl_err_set(err, NVL_ERR_BUSY, "%s: is a symbolic link; not replacing it (give the socket's own path)", path);
        if (!S_ISSOCK(sb.st_mode)) return nvl_err_set(err, NVL_ERR_BUSY, "%s: exists and is not a socket; not replacing it", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) return nvl_err_set(err, NVL_ERR_IO, "socket: %s", strerror(errno));
        int live = connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
        int e = errno;
        close(probe);
        if (live) return nvl_err_set(err, NVL_ERR_BUSY, "%s: a server is already listening there", path);
        if (e != ECONNREFUSED && e != ENOENT)
            return nvl_err_set(err, NVL_ERR_IO, "%s: cannot tell whether it is stale: %s", path, strerror(e));
        if (unlink(path) != 0 && errno != ENOENT)
            return nvl_err_set(err, NVL_ERR_IO, "%s: cannot remove the stale socket: %s", path, strerror(errno));
        slog(s, "replaced the stale socket %s", path);
    }
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->lfd < 0) return nvl_err_set(err, NVL_ERR_IO, "socket: %s", strerror(errno));
    mode_t old = umask(0177); /* created 0600: no window where others can connect */
    int b = bind(s->lfd, (struct sockaddr *)&a, sizeof a);
    int be = errno;
    umask(old);
    if (b != 0) return nvl_err_set(err, be == EADDRINUSE ? NVL_ERR_BUSY : NVL_ERR_IO, "%s: bind: %s", path, strerror(be));
    if (s->o->socket_mode != 0600 && chmod(path, (mode_t)s->o->socket_mode) != 0)
        return nvl_err_set(err, NVL_ERR_IO, "%s: chmod %o: %s", path, (unsigned)s->o->socket_mode, strerror(errno));
    if (listen(s->lfd, 64) != 0) return nvl_err_set(err, NVL_ERR_IO, "%s: listen: %s", path, strerror(errno));
    struct stat own;
    if (stat(path, &own) == 0) {
        s->sock_dev = own.st_dev;
        s->sock_ino = own.st_ino;
        s->sock_known = 1;
    }
    return NVL_OK;
}

/* Removes the socket file if it is still the one this server bound (a newer server may have
 * replaced it: a deploy script's rm -f, then a second start). */
static void unlink_own_socket(server *s) {
    struct stat sb;
    if (s->sock_known && lstat(s->o->socket_path, &sb) == 0 && sb.st_dev == s->sock_dev && sb.st_ino == s->sock_ino)
        unlink(s->o->socket_path);
}

/* The soft open-file limit raised to the hard one (each connection, each open PDF and video
 * holds a descriptor); a --max-clients past what is left is said at start. */
static void raise_fd_limit(server *s) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
        if (want > rl.rlim_cur) {
            struct rlimit nr = {want, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nr) == 0) rl.rlim_cur = want;
        }
    }
    /* what is open already (the model's files, the engine's threads' pipes, stdio), and a few
       for the socket, the spare and the files requests open */
    int n_open = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *de; (de = readdir(d));) n_open += de->d_name[0] != '.';
        closedir(d);
    } else {
        n_open = 16;
    }
    /* connections take at most half of what is left: the other half is the requests' (the media
       files a job holds open, the decoders' and renderer's pipes, temporary files). With every
       descriptor open to a client, requests failed with "Too many open files" (a review, ulimit -n
       40), though the server had warned only of busy connections */
    const rlim_t reserve = (rlim_t)n_open + 8;
    s->max_conns = s->o->max_clients;
    if (rl.rlim_cur != RLIM_INFINITY) {
        const rlim_t left = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 0;
        const int cap = left / 2 > 0 ? (int)(left / 2 < (rlim_t)INT_MAX ? left / 2 : INT_MAX) : 1;
        if (cap < s->max_conns) {
            s->max_conns = cap;
            slog(s, "--max-clients %d with an open-file limit of %llu (ulimit -n), %d open already: at most %d "
                    "connections, so that half of the %llu descriptors left stay for the requests' files%s",
                 s->o->max_clients, (unsigned long long)rl.rlim_cur, n_open, cap, (unsigned long long)left,
                 left < 64 ? "; too few for requests of many files or pages: raise the limit (ulimit -n 1024)" : "");
        }
    }
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// ---------------------------------------------------------------------------
// Event loop (main thread, evloop.h): the listening socket, the clients and the signal pipe are
// fds of s->loop; serve_tick runs before each poll (signals, drain, idle timeouts, interest masks)

/* The signal pipe is readable: drained here; the signals themselves are counted in g_signals
 * and handled by serve_tick. */
static void on_sigpipe(evloop *l, int fd, int mask, void *user) {
    (void)l;
    (void)mask;
    (void)user;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) {}
}

static void on_client(evloop *l, int fd, int mask, void *user);

/* The listening socket is readable: accepts every pending connection (refused with "busy" past
 * --max-clients). */
static void on_listen(evloop *l, int fd, int mask, void *user) {
    (void)mask;
    (void)user;
    server *s = evloop_data(l);
    const api_server_opts *o = s->o;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        int no_fd = 0;
        if (cfd < 0 && (errno == EMFILE || errno == ENFILE) && s->spare_fd >= 0) {
            /* no descriptor left: the one held back takes the connection to refuse it (left
               pending, it would make the listening socket readable again at once: a busy loop) */
            close(s->spare_fd);
            cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            no_fd = 1;
            if (nvl_now() - s->t_emfile_log > 10) {
                s->t_emfile_log = nvl_now();
                slog(s, "out of file descriptors (ulimit -n) with %d connections: new ones are answered busy", s->n_clients);
            }
        }
        if (cfd >= 0 && (no_fd || s->n_clients >= s->max_conns)) {
            const char *m = no_fd ? "{\"v\":1,\"id\":null,\"event\":\"error\",\"code\":\"busy\",\"message\":\"the server has no file "
                                    "descriptor left for a connection\"}\n"
                                  : "{\"v\":1,\"id\":null,\"event\":\"error\",\"code\":\"busy\",\"message\":\"too many connections\"}\n";
            ssize_t w = send(cfd, m, strlen(m), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            close_drained(cfd);
            cfd = -2; /* refused: the next one */
        }
        if (no_fd) s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* held back again */
        if (cfd == -2) continue;
        if (cfd < 0) break;
        client *c = nvl_calloc(1, sizeof *c);
        if (!c || evloop_add(l, cfd, EVLOOP_READ, on_client, c, NULL) != NVL_OK) {
            nvl_free(c);
            close(cfd);
            continue;
        }
        c->fd = cfd;
        c->serial = ++s->serial;
        c->tokens = fmax(1.0, o->rate_per_min / 10.0);
        c->t_tokens = nvl_now();
        c->t_active = c->t_line = c->t_tokens;
        pthread_mutex_lock(&s->mu);
        c->next = s->clients;
        s->clients = c;
        s->n_clients++;
        pthread_mutex_unlock(&s->mu);
    }
}

/* Draining: a client with a request line half sent is told it was not read, once; it was closed on
 * in silence (a review), also when the line came after lines held back at the signal. */
static void tell_half_line(server *s, client *c) {
    if (c->rd_closed || c->half_told || !(c->n_in > 0 || c->discarding)) return;
    c->half_told = 1;
    reply(s, c, error_event(NULL, "shutting_down", "the server is shutting down; the request line being "
                                                   "sent was not read (retry on another server)"));
    client_write(s, c); /* best effort: the socket does not block */
}

/* Drops a client, saying so when it is for not reading its events. */
static void client_drop_logged(server *s, client *c) {
    pthread_mutex_lock(&s->mu);
    const int overflow = c->overflow;
    pthread_mutex_unlock(&s->mu);
    if (overflow) slog(s, "dropping a client that does not read its events");
    client_drop(s, c);
}

/* A client's socket is ready: gone (its work is cancelled), readable (lines are handled; end of
 * input half-closes it: its answers still go out), then what can be written is written. */
static void on_client(evloop *l, int fd, int mask, void *user) {
    (void)fd;
    server *s = evloop_data(l);
    client *c = user;
    int drop = (mask & (EVLOOP_HUP | EVLOOP_ERR)) != 0;
    if (!drop && (mask & EVLOOP_READ)) {
        const int rr = client_read(s, c);
        if (rr < 0) drop = 1;
        else if (rr > 0) c->rd_closed = 1;
    }
    if (!drop) drop = client_write(s, c) < 0;
    if (drop) client_drop_logged(s, c);
}

/* A first signal: stop accepting (the socket file goes), answer the queued requests with
 * "shutting_down", let the running ones finish. A later one cancels the running requests. */
static void handle_signals(server *s) {
    if ((int)g_signals <= s->handled_signals) return;
    s->handled_signals = (int)g_signals;
    if (!s->draining) {
        s->draining = 1;
        s->drain_t0 = nvl_now();
        slog(s, "signal: finishing the running requests, then exiting (a second signal cancels them)");
        evloop_del(s->loop, s->lfd);
        close(s->lfd);
        s->lfd = -1;
        unlink_own_socket(s);
        pthread_mutex_lock(&s->mu);
        while (s->head) { /* queued requests are answered, not run */
            job *j = s->head;
            s->head = j->next;
            s->n_queued--;
            if (j->cl) {
                j->cl->n_jobs--;
                emit_locked(s, j->cl, error_event(j->id, "shutting_down", "the server is shutting down; retry on another server"));
            }
            api_request_free(&j->rq);
            nvl_free(j->id);
            nvl_free(j);
        }
        s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        for (client *c = s->clients; c; c = c->next) {
            /* what clients sent and was not read yet: whole lines are refused "shutting_down" (a
               line half sent, unread at the signal, was closed on in silence: a review) */
            if (!c->rd_closed && client_read(s, c) > 0) c->rd_closed = 1;
        }
        for (client *c = s->clients; c; c = c->next) tell_half_line(s, c);
    } else {
        pthread_mutex_lock(&s->mu);
        for (job *j = s->running; j; j = j->next) __atomic_store_n(&j->cancel, CANCEL_SHUTDOWN, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&s->mu);
    }
}

/* A running request its client cancelled ends at the engine's next step; a step that cannot be
 * interrupted (Poppler rendering one heavy page, tens of seconds for a dense vector drawing) held
 * the answer and the id until it ended. Past CANCEL_ANSWER_S the client is answered "cancelled"
 * and the job marked answered: it sends nothing more and its id is free, but it keeps its place
 * in --max-per-client and --max-batch until the step ends and its result is dropped. Returns
 * whether a cancel is still pending. */
#define CANCEL_ANSWER_S 1.0
static int answer_slow_cancels(server *s, double t_now) {
    int pending = 0;
    pthread_mutex_lock(&s->mu);
    for (job *j = s->running; j; j = j->next) {
        if (!j->cl || j->answered || j->t_cancel == 0) continue;
        if (t_now - j->t_cancel < CANCEL_ANSWER_S) {
            pending = 1;
            continue;
        }
        emit_locked(s, j->cl, error_event(j->id, "cancelled",
                                          "cancelled; the step it was in (a page being rendered, a file being read) "
                                          "cannot be interrupted and ends in the background"));
        slog(s, "%s %s: cancelled, answered before its step ended (it goes on in the background)",
             api_request_type_name(j->rq.type), j->id);
        j->answered = 1; /* (it keeps its place in --max-per-client and --max-batch: a client
                            cancelling slow requests in a loop would pile up uncounted work) */
    }
    pthread_mutex_unlock(&s->mu);
    return pending;
}

/* Before each poll: events appended by the worker since the last poll go out; half-closed
 * clients with nothing left, idle connections and unfinished lines past --idle-timeout are
 * closed; signals are handled; a drained server stops the loop; each client's interest is set
 * (read unless half-closed, write while output waits) and the poll's wait bounded so that the
 * timeouts are checked often enough. */
static void serve_tick(evloop *l, void *user) {
    server *s = user;
    const api_server_opts *o = s->o;
    const double t_now = nvl_now();
    const int cancel_pending = answer_slow_cancels(s, t_now);
    media_helpers_reap(); /* decoders killed after the last file, ended since */
    for (client *c = s->clients, *nx; c; c = nx) {
        nx = c->next;
        if (client_write(s, c) < 0 || client_feed_held(s, c) < 0) {
            client_drop_logged(s, c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        const int unsent = c->out.n > c->out_off, quiet = c->n_jobs == 0 && !unsent && !c->n_held;
        const double t_out = c->t_out;
        pthread_mutex_unlock(&s->mu);
        int drop = (c->rd_closed || s->draining) && quiet; /* draining: nothing more will come for it */
        if (drop && s->draining) tell_half_line(s, c); /* (one behind lines held back at the signal) */
        if (c->n_log_skipped && floor(t_now) != c->t_log) log_refusals_skipped(s, c); /* (not only at its close) */
        if (!drop && o->idle_timeout_s > 0 && unsent && t_now - t_out > o->idle_timeout_s) {
            /* (not told: it does not read) a client reading nothing held its place for ever, below
               --max-pending-output (a review: 8 such clients took every --max-clients place) */
            slog(s, "closing a connection: the client read under 4 KiB of its events in %g s (--idle-timeout)",
                 o->idle_timeout_s);
            drop = 1;
        } else if (!drop && o->idle_timeout_s > 0) {
            const int partial = c->n_in > 0 || c->discarding;
            const char *why = partial && t_now - c->t_line > o->idle_timeout_s ? "a request line was left unfinished"
                              : !partial && quiet && t_now - c->t_active > o->idle_timeout_s ? "the connection was idle"
                                                                                              : NULL;
            if (why) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s for more than %g s (--idle-timeout); closing it", why, o->idle_timeout_s);
                reply(s, c, error_event(NULL, "timeout", msg));
                client_write(s, c); /* best effort: the socket does not block */
                slog(s, "closing a connection: %s", msg);
                drop = 1;
            }
        }
        if (drop) client_drop(s, c);
    }
    handle_signals(s);
    if (s->draining) {
        pthread_mutex_lock(&s->mu);
        int idle = !s->running && !s->head;
        pthread_mutex_unlock(&s->mu);
        int pending = 0;
        for (client *c = s->clients; c; c = c->next) pending |= c->out.n > c->out_off;
        if (idle && (!pending || nvl_now() - s->drain_t0 > 30)) {
            evloop_stop(l);
            return;
        }
    }
    for (client *c = s->clients; c; c = c->next) { /* (a backlogged client is read once it reads) */
        const int rd = !c->rd_closed && !c->n_held && !client_backlogged(s, c);
        pthread_mutex_lock(&s->mu);
        evloop_set_mask(l, c->fd, (rd ? EVLOOP_READ : 0) | (c->out.n > c->out_off || c->overflow ? EVLOOP_WRITE : 0));
        pthread_mutex_unlock(&s->mu);
    }
    int poll_ms = s->draining ? 100 : 1000;
    if (o->idle_timeout_s > 0 && o->idle_timeout_s * 250 < poll_ms) poll_ms = (int)(o->idle_timeout_s * 250) + 1;
    if (cancel_pending && poll_ms > 100) poll_ms = 100;
    evloop_set_max_wait(l, poll_ms);
}

nvl_status api_serve(api_engine *e, const api_server_opts *o, nvl_err *err) {
    server s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.e = e;
    s.lfd = -1;
    s.spare_fd = -1;
    s.max_conns = o->max_clients; /* (lowered by raise_fd_limit where the open-file limit is low) */
    nvl_status st = evloop_new(&s.loop, err);
    if (st != NVL_OK) return st;
    if (pipe(g_sigpipe) != 0) {
        evloop_free(s.loop);
        return nvl_err_set(err, NVL_ERR_IO, "pipe: %s", strerror(errno));
    }
    for (int i = 0; i < 2; i++) {
        set_nonblock(g_sigpipe[i]);
        fcntl(g_sigpipe[i], F_SETFD, FD_CLOEXEC);
    }
    raise_fd_limit(&s);
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    st = open_socket(&s, o->socket_path, err);
    if (st == NVL_OK) st = evloop_add(s.loop, g_sigpipe[0], EVLOOP_READ, on_sigpipe, NULL, err);
    if (st == NVL_OK) st = evloop_add(s.loop, s.lfd, EVLOOP_READ, on_listen, NULL, err);
    if (st != NVL_OK) {
        if (s.lfd >= 0) close(s.lfd);
        if (s.spare_fd >= 0) close(s.spare_fd);
        evloop_free(s.loop);
        close(g_sigpipe[0]);
        close(g_sigpipe[1]);
        g_sigpipe[0] = g_sigpipe[1] = -1;
        return st;
    }
    evloop_set_data(s.loop, &s);
    evloop_set_before_sleep(s.loop, serve_tick, &s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_term, old_int, old_hup, old_pipe;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGHUP, NULL, &old_hup); /* a closed terminal or SSH session: the same orderly exit, */
    if (old_hup.sa_handler != SIG_IGN) sigaction(SIGHUP, &sa, NULL); /* unless ignored (nohup) */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
    g_signals = 0;
    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_main, &s) != 0) {
        st = nvl_err_set(err, NVL_ERR_INTERNAL, "cannot start the worker thread");
        goto out_socket;
    }
    if (o->on_ready) o->on_ready(o->socket_path, o->user);
    st = evloop_run(s.loop, err);
    pthread_mutex_lock(&s.mu);
    s.stop_worker = 1;
    for (job *j = s.running; j; j = j->next) __atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&s.cv);
    pthread_mutex_unlock(&s.mu);
    pthread_join(worker, NULL);
    while (s.clients) client_drop(&s, s.clients);
out_socket:
    if (s.lfd >= 0) {
        close(s.lfd);
        unlink_own_socket(&s);
    }
    if (s.spare_fd >= 0) close(s.spare_fd);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    evloop_free(s.loop);
    close(g_sigpipe[0]);
    close(g_sigpipe[1]);
    g_sigpipe[0] = g_sigpipe[1] = -1;
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return st;
}
