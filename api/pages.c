/* Page by page (wire.h): OCR and --per-page. The pages of every input are listed first (so
 * progress knows the total; an input that cannot be read fails as a whole and the others go
 * on), then submitted to the engine as separate requests, up to `window` at once, and reported
 * strictly in page order whatever order they end in. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "media.h"
#include "wire.h"
#include "base/clock.h"
#include "engine_impl.h"

enum unit_state { U_WAIT = 0, U_RUNNING, U_ENDED, U_REPORTED };

typedef struct unit {
    int m;    /* the input */
    int page; /* 0-based, -1 for an image */
    int qi;   /* its prompt (hooks.prompts), 0 with one */
    enum unit_state state;
    api_part parts[2];
    api_message msg;
    char pg[16];
    api_ask_result res;
    nvl_status st;
    char *msg_err;
    uint64_t id;
    struct api_pages *owner;
} unit;

struct api_pages {
    api_engine *e;
    api_ask_params p;
    api_pages_hooks h;
    api_callbacks cb; /* h.cb's, with on_done ours */
    const char *prompt;
    api_media *local; /* the inputs (bytes of a PDF as a private temporary file) */
    char **tmp;
    int n_media;
    unit *units;
    int n_units;
    int next_submit, next_report, running;
    int n_failed;
    int window;
    int stopped;
    nvl_status st; /* the run's own end: stopped by a hook, cancelled, out of memory */
    char err[NVL_ERR_MSG_MAX];
    int finished;
};

static void pump(api_pages *pg);

static void unit_done(nvl_status st, const char *msg, void *user) {
    unit *u = user;
    api_pages *pg = u->owner;
    u->state = U_ENDED;
    u->st = st;
    if (st != NVL_OK && msg) {
        size_t n = strlen(msg) + 1;
        u->msg_err = nvl_malloc(n);
        if (u->msg_err) memcpy(u->msg_err, msg, n);
    }
    pg->running--;
    pump(pg);
}

static void stop(api_pages *pg, nvl_status st, const char *msg) {
    if (pg->stopped) return;
    pg->stopped = 1;
    pg->st = st;
    snprintf(pg->err, sizeof pg->err, "%s", msg);
    for (int i = 0; i < pg->n_units; i++)
        if (pg->units[i].state == U_RUNNING) api_engine_cancel(pg->e, pg->units[i].id);
}

static void report(api_pages *pg, unit *u, int index) {
    const int page1 = u->page >= 0 ? u->page + 1 : 0;
    const char *name = pg->local[u->m].name;
    /* the page's message, or (its copy could not be allocated) what is known without it */
    char lost[160];
    if (u->st != NVL_OK && !u->msg_err)
        snprintf(lost, sizeof lost, "%s: page %d: %s (the error's message was lost: out of memory)", name, page1,
                 nvl_status_str(u->st));
    const char *msg = u->msg_err ? u->msg_err : lost;
    if (u->st == NVL_OK) {
        if (!pg->stopped && pg->h.on_page && pg->h.on_page(index, pg->n_units, name, page1, &u->res, pg->h.user))
            stop(pg, NVL_ERR_CANCELLED, "ocr: stopped");
    } else if (u->st == NVL_ERR_CANCELLED) {
        if (!pg->stopped) stop(pg, NVL_ERR_CANCELLED, u->msg_err ? u->msg_err : "cancelled");
    } else {
        pg->n_failed++;
        if (!pg->stopped && pg->h.on_page_error &&
            pg->h.on_page_error(index, pg->n_units, name, page1, u->st, msg, pg->h.user))
            stop(pg, NVL_ERR_CANCELLED, "ocr: stopped");
    }
    api_ask_result_free(&u->res);
    nvl_free(u->msg_err);
    u->msg_err = NULL;
    u->state = U_REPORTED;
    /* the input's last unit reported (units of an input follow each other) */
    if (!pg->stopped && pg->h.on_input_done && (index + 1 == pg->n_units || pg->units[index + 1].m != u->m) &&
        pg->h.on_input_done(name, pg->h.user))
        stop(pg, NVL_ERR_CANCELLED, "ocr: stopped");
}

/* Reports what ended in order, submits what the window allows, and ends the run when nothing
 * is left. */
static void pump(api_pages *pg) {
    while (pg->next_report < pg->n_units && pg->units[pg->next_report].state == U_ENDED) {
        report(pg, &pg->units[pg->next_report], pg->next_report);
        pg->next_report++;
    }
    if (pg->cb.cancel && __atomic_load_n(pg->cb.cancel, __ATOMIC_RELAXED) && !pg->stopped) stop(pg, NVL_ERR_CANCELLED, "cancelled");
    while (!pg->stopped && pg->running < pg->window && pg->next_submit < pg->n_units) {
        unit *u = &pg->units[pg->next_submit];
        const int index = pg->next_submit++;
        /* an input that failed as a whole (ended, or already reported by the loop above): never
           submitted; the report loop gives it its place */
        if (u->state != U_WAIT) continue;
        u->parts[0] = (api_part){.kind = API_PART_MEDIA, .media = pg->local[u->m]};
        u->parts[1] = (api_part){.kind = API_PART_TEXT, .text = pg->h.n_prompts > 0 ? pg->h.prompts[u->qi] : pg->prompt};
        if (u->page >= 0) {
            snprintf(u->pg, sizeof u->pg, "%d", u->page + 1);
            u->parts[0].media.pages = u->pg;
        }
        u->msg = (api_message){"user", u->parts, 2};
        if (pg->h.on_page_start)
            pg->h.on_page_start(index, pg->n_units, pg->local[u->m].name, u->page >= 0 ? u->page + 1 : 0, pg->h.user);
        api_callbacks cb = pg->cb; /* the caller's, with on_done ours (its user the unit) */
        cb.on_done = unit_done;
        cb.done_user = u;
        nvl_err e2 = {0};
        u->state = U_RUNNING;
        pg->running++;
        nvl_status st = api_engine_submit(pg->e, &u->msg, 1, &pg->p, &cb, &u->res, &u->id, &e2);
        if (st != NVL_OK) {
            pg->running--;
            u->state = U_ENDED;
            u->st = st;
            size_t n = strlen(e2.msg) + 1;
            if ((u->msg_err = nvl_malloc(n))) memcpy(u->msg_err, e2.msg, n);
            pump(pg);
            return;
        }
    }
    if (!pg->finished && pg->running == 0 && (pg->stopped || pg->next_report == pg->n_units)) {
        /* stopped: units never submitted are dropped silently */
        pg->finished = 1;
        if (pg->h.on_finish) pg->h.on_finish(pg->st, pg->n_failed, pg->err, pg->h.user);
    }
}

/* media_pdf's cancel callback while the inputs are listed: the run's cancel flag */
static int plan_cancelled(void *flag) { return __atomic_load_n((const volatile int *)flag, __ATOMIC_RELAXED) != 0; }

/* api_pages_plan; report: each input's listing is told to h->cb->on_progress (stage media, done
 * of total inputs), on the caller's thread (api_pages_start: the CLI's progress line) */
static nvl_status plan_inputs(api_engine *e, const api_media *media, int n_media, const char *prompt,
                              const api_ask_params *pp, const api_pages_hooks *h, int report, api_pages **out,
                              nvl_err *err) {
    *out = NULL;
    volatile int *cancel = h->cb ? h->cb->cancel : NULL;
    const int tell = report && h->cb && h->cb->on_progress;
    const double t0 = nvl_now();
    api_pages *pg = nvl_calloc(1, sizeof *pg);
    if (!pg) return nvl_err_set(err, NVL_ERR_NOMEM, "ocr: out of memory");
    pg->e = e;
    pg->p = *pp;
    pg->p.ocr_page = 1; /* (its messages speak of the page) */
    /* each page asked about once: nothing to keep; with several prompts its prefill is kept for
       the next (its units follow each other) */
    if (h->n_prompts <= 1) pg->p.no_cache = 1;
    pg->h = *h;
    pg->h.cb = h->cb ? &pg->cb : NULL; /* (h->cb need not outlive the listing) */
    if (h->cb) pg->cb = *h->cb;
    pg->cb.on_done = NULL;
    pg->prompt = prompt ? prompt : API_OCR_PROMPT; /* (an ocr request without "prompt": serve, batch) */
    pg->n_media = n_media;
    pg->window = h->window > 0 ? h->window : 1;
    pg->tmp = nvl_calloc((size_t)n_media + 1, sizeof *pg->tmp);
    pg->local = nvl_calloc((size_t)n_media + 1, sizeof *pg->local);
    nvl_status st = pg->tmp && pg->local ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "ocr: out of memory");
    int cap = 0;
    for (int m = 0; m < n_media && st == NVL_OK; m++) {
        if (cancel && plan_cancelled((void *)cancel)) {
            st = nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled");
            break;
        }
        pg->local[m] = media[m];
        const char *name = media[m].name ? media[m].name : media[m].path ? media[m].path : "bytes";
        pg->local[m].name = name;
        if (tell) {
            const api_progress pr = {.stage = API_STAGE_MEDIA, .item = name, .done = m, .total = n_media,
                                     .elapsed_s = nvl_now() - t0};
            h->cb->on_progress(&pr, h->cb->user);
        }
        enum media_kind k;
        nvl_status s2 = NVL_OK;
        nvl_err e2 = {0};
        if (media[m].path) s2 = media_sniff_file(media[m].path, &k, &e2);
        else k = media_sniff(media[m].data, media[m].size);
        if (s2 != NVL_OK) engine_unname_tmp(&e2, media[m].path, name);
        int *pages = NULL, np = 1;
        if (s2 == NVL_OK && k == MEDIA_KIND_UNKNOWN) /* (failed as a whole, never begun: it was begun as an image,
                                                       "<!-- image: notes.txt -->" before its error) */
            s2 = media_err_unrecognised(name, media[m].data, media[m].size, media[m].path, &e2);
        if (s2 == NVL_OK && k == MEDIA_KIND_VIDEO)
            s2 = nvl_err_set(&e2, NVL_ERR_UNSUPPORTED, "%s: page-by-page work (ocr, --per-page) reads images and PDF pages, not videos", name);
        if (s2 == NVL_OK && k == MEDIA_KIND_PDF) {
            const char *path = media[m].path;
            if (!path) { /* bytes: one private temporary file for all its pages */
                s2 = api_bytes_to_tmp(media[m].data, media[m].size, name, &pg->tmp[m], &e2);
                if (s2 == NVL_OK) {
                    path = pg->tmp[m];
                    pg->local[m].path = path;
                    pg->local[m].data = NULL;
                    pg->local[m].size = 0;
                }
            }
            media_pdf *pdf = NULL;
            /* pages go one pass each, so the per-request page cap does not apply to the document */
            media_limits lim = media_limits_default();
            lim.max_pages = 1 << 30;
            if (s2 == NVL_OK && path &&
                (s2 = media_pdf_open_cancellable(&pdf, path, media[m].password ? media[m].password : pg->p.password, &lim,
                                                 cancel ? plan_cancelled : NULL, (void *)cancel, &e2)) != NVL_OK)
                api_password_hint(s2, &e2);
            /* a cancel is the run's end, not this input's failure */
            if (s2 == NVL_ERR_CANCELLED && cancel && plan_cancelled((void *)cancel)) {
                nvl_free(pages);
                media_pdf_close(pdf);
                st = nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled");
                break;
            }
            if (s2 == NVL_OK && pdf)
                s2 = media_pdf_select_pages(pdf, media[m].pages ? media[m].pages : pg->p.pages, &pages, &np, &e2);
            if (s2 != NVL_OK && (!media[m].path || strcmp(media[m].path, name))) { /* named as the bytes (or the
                                                                                     named path) are, not by a path */
                int named = pg->tmp[m] && engine_unname_tmp(&e2, pg->tmp[m], name);
                if (!named && media[m].path) named = engine_unname_tmp(&e2, media[m].path, name);
                if (!named && (strncmp(e2.msg, name, strlen(name)) || strncmp(e2.msg + strlen(name), ": ", 2)))
                    nvl_err_prefix(&e2, "%s", name);
            }
            media_pdf_close(pdf);
        }
        /* an input that fails as a whole is one unit, already ended, reported in its place among
           the pages (its index its own, counted in the total); the others go on */
        if (s2 != NVL_OK) np = 1;
        const int nq = s2 == NVL_OK && h->n_prompts > 1 ? h->n_prompts : 1;
        for (int i = 0; i < np * nq; i++) {
            if (pg->n_units == cap) {
                cap = cap ? cap * 2 : 16;
                unit *nu = nvl_realloc(pg->units, (size_t)cap * sizeof *nu);
                if (!nu) {
                    st = nvl_err_set(err, NVL_ERR_NOMEM, "ocr: out of memory");
                    break;
                }
                pg->units = nu;
            }
            unit *u = &pg->units[pg->n_units++];
            *u = (unit){.m = m, .page = s2 == NVL_OK && k == MEDIA_KIND_PDF ? pages[i / nq] : -1, .qi = i % nq, .owner = pg};
            if (s2 != NVL_OK) {
                u->state = U_ENDED;
                u->st = s2;
                const size_t n = strlen(e2.msg) + 1;
                if ((u->msg_err = nvl_malloc(n))) memcpy(u->msg_err, e2.msg, n);
            }
        }
        nvl_free(pages);
    }
    if (st != NVL_OK) {
        api_pages_free(pg);
        return st;
    }
    *out = pg;
    return NVL_OK;
}

nvl_status api_pages_plan(api_engine *e, const api_media *media, int n_media, const char *prompt, const api_ask_params *pp,
                          const api_pages_hooks *h, api_pages **out, nvl_err *err) {
    return plan_inputs(e, media, n_media, prompt, pp, h, 0, out, err);
}

nvl_status api_pages_begin(api_pages *pg, nvl_err *err) {
    const api_pages_hooks *h = &pg->h;
    nvl_status st = NVL_OK;
    if (h->skip < 0 || h->skip > pg->n_units)
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "ocr: %d pages were done before, and the inputs now give %d", h->skip,
                         pg->n_units);
    for (int i = 0; st == NVL_OK && h->skip_check && i < h->skip; i++) {
        const unit *u = &pg->units[i];
        if (h->skip_check(i, pg->local[u->m].name, u->page >= 0 ? u->page + 1 : 0, h->user))
            st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "ocr: the inputs now give other pages than the run being resumed "
                             "(from its page %d of %d on)", i + 1, h->skip);
    }
    if (st != NVL_OK) return st;
    for (int i = 0; i < h->skip; i++) { /* done by an earlier run */
        nvl_freep(&pg->units[i].msg_err);
        pg->units[i].state = U_REPORTED;
    }
    pg->next_submit = pg->next_report = h->skip;
    pump(pg); /* the first pages go in (or the run ends at once: nothing to do, or stopped) */
    return NVL_OK;
}

nvl_status api_pages_start(api_engine *e, const api_media *media, int n_media, const char *prompt, const api_ask_params *pp,
                           const api_pages_hooks *h, api_pages **out, nvl_err *err) {
    nvl_status st = plan_inputs(e, media, n_media, prompt, pp, h, 1, out, err);
    if (st == NVL_OK && (st = api_pages_begin(*out, err)) != NVL_OK) {
        api_pages_free(*out);
        *out = NULL;
    }
    return st;
}

// ---------------------------------------------------------------------------
// Listing on a thread of its own (api_pages_plan_async)

struct api_pages_planner {
    api_engine *e;
    const api_media *media;
    int n_media;
    const char *prompt;
    api_ask_params p;
    api_pages_hooks h; /* h.cb points at cb */
    api_callbacks cb;
    void (*on_planned)(void *user);
    void *user;
    pthread_t thr;
    int done; /* (atomic) */
    api_pages *pg;
    nvl_status st;
    nvl_err err;
};

/* Planners listing inputs at once, process-wide: each PDF opens in a renderer that may take its
 * --page-memory, as each of the engine's two media threads' pages may; the others wait their turn
 * (a cancel, seen within 50 ms, ends the wait, and the listing then ends at once). */
#define PLANNERS_AT_ONCE 2
static pthread_mutex_t g_plan_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_plan_cv = PTHREAD_COND_INITIALIZER;
static int g_n_planning;

static void *planner_main(void *arg) {
    api_pages_planner *pl = arg;
    volatile int *cancel = pl->cb.cancel;
    pthread_mutex_lock(&g_plan_mu);
    while (g_n_planning >= PLANNERS_AT_ONCE && !(cancel && plan_cancelled((void *)cancel))) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_plan_cv, &g_plan_mu, &ts);
    }
    g_n_planning++;
    pthread_mutex_unlock(&g_plan_mu);
    pl->st = api_pages_plan(pl->e, pl->media, pl->n_media, pl->prompt, &pl->p, &pl->h, &pl->pg, &pl->err);
    pthread_mutex_lock(&g_plan_mu);
    g_n_planning--;
    pthread_cond_signal(&g_plan_cv);
    pthread_mutex_unlock(&g_plan_mu);
    __atomic_store_n(&pl->done, 1, __ATOMIC_RELEASE);
    if (pl->on_planned) pl->on_planned(pl->user);
    return NULL;
}

nvl_status api_pages_plan_async(api_engine *e, const api_media *media, int n_media, const char *prompt,
                                const api_ask_params *p, const api_pages_hooks *h, void (*on_planned)(void *user),
                                void *user, api_pages_planner **out, nvl_err *err) {
    *out = NULL;
    api_pages_planner *pl = nvl_calloc(1, sizeof *pl);
    if (!pl) return nvl_err_set(err, NVL_ERR_NOMEM, "ocr: out of memory");
    *pl = (api_pages_planner){.e = e, .media = media, .n_media = n_media, .prompt = prompt, .p = *p, .h = *h,
                              .on_planned = on_planned, .user = user};
    if (h->cb) {
        pl->cb = *h->cb;
        pl->h.cb = &pl->cb;
    }
    if (pthread_create(&pl->thr, NULL, planner_main, pl) != 0) {
        nvl_free(pl);
        return nvl_err_set(err, NVL_ERR_IO, "ocr: cannot start a thread to list the inputs");
    }
    *out = pl;
    return NVL_OK;
}

int api_pages_planned(const api_pages_planner *pl) { return __atomic_load_n(&pl->done, __ATOMIC_ACQUIRE); }

nvl_status api_pages_plan_finish(api_pages_planner *pl, api_pages **out, nvl_err *err) {
    *out = NULL;
    pthread_join(pl->thr, NULL);
    nvl_status st = pl->st;
    if (st == NVL_OK) {
        *out = pl->pg;
        st = api_pages_begin(pl->pg, err);
    } else if (err) {
        *err = pl->err;
    }
    nvl_free(pl);
    return st;
}

int api_pages_finished(const api_pages *pg) { return pg->finished; }

void api_pages_cancel(api_pages *pg) { stop(pg, NVL_ERR_CANCELLED, "cancelled"); }

void api_pages_free(api_pages *pg) {
    if (!pg) return;
    for (int i = 0; i < pg->n_units; i++) {
        api_ask_result_free(&pg->units[i].res);
        nvl_free(pg->units[i].msg_err);
    }
    for (int m = 0; pg->tmp && m < pg->n_media; m++)
        api_tmp_release(pg->tmp[m]);
    nvl_free(pg->tmp);
    nvl_free(pg->local);
    nvl_free(pg->units);
    nvl_free(pg);
}

typedef struct run_wait {
    int done;
    nvl_status st;
    int n_failed;
    char msg[NVL_ERR_MSG_MAX];
    const api_pages_hooks *user_h;
} run_wait;

static void run_finish(nvl_status st, int n_failed, const char *msg, void *user) {
    run_wait *w = user;
    w->done = 1;
    w->st = st;
    w->n_failed = n_failed;
    snprintf(w->msg, sizeof w->msg, "%s", msg ? msg : "");
}

/* Hooks for the blocking run: the caller's, with on_finish ours (the caller's user travels in
 * the waiter). */
static void rw_start(int index, int n_total, const char *name, int page, void *user) {
    const run_wait *w = user;
    w->user_h->on_page_start(index, n_total, name, page, w->user_h->user);
}
static int rw_page(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    const run_wait *w = user;
    return w->user_h->on_page(index, n_total, name, page, r, w->user_h->user);
}
static int rw_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    const run_wait *w = user;
    return w->user_h->on_page_error(index, n_total, name, page, st, msg, w->user_h->user);
}
static int rw_skip_check(int index, const char *name, int page, void *user) {
    const run_wait *w = user;
    return w->user_h->skip_check(index, name, page, w->user_h->user);
}
static int rw_input_done(const char *name, void *user) {
    const run_wait *w = user;
    return w->user_h->on_input_done(name, w->user_h->user);
}

nvl_status api_pages_run(api_engine *e, const api_media *media, int n_media, const char *prompt, const api_ask_params *p,
                         const api_pages_hooks *h, int *n_failed, nvl_err *err) {
    run_wait w = {.user_h = h};
    api_pages_hooks hw = *h;
    hw.on_page_start = h->on_page_start ? rw_start : NULL;
    hw.on_page = h->on_page ? rw_page : NULL;
    hw.on_page_error = h->on_page_error ? rw_error : NULL;
    hw.skip_check = h->skip_check ? rw_skip_check : NULL;
    hw.on_input_done = h->on_input_done ? rw_input_done : NULL;
    hw.on_finish = run_finish;
    hw.user = &w;
    api_pages *pg = NULL;
    *n_failed = 0;
    nvl_status st = api_pages_start(e, media, n_media, prompt, p, &hw, &pg, err);
    if (st != NVL_OK) return st;
    while (!w.done) api_engine_step(e);
    api_pages_free(pg);
    *n_failed = w.n_failed;
    if (w.st != NVL_OK) nvl_err_set(err, w.st, "%s", w.msg);
    return w.st;
}
