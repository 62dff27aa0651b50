/* `nanovl serve` with many clients at once (the nanovl binary, the tiny f32 VL checkpoint):
 *   - 20 questions asked one after another on one connection give the reference answers;
 *   - the same 20 from 20 connections at once (--max-batch 8, so some wait for a slot): every
 *     one answered exactly once ("done", none lost), each answer (token text and the done
 *     event's ids) equal to its reference, and the token events of different requests
 *     interleave on the wire (their decodes run together);
 *   - a request cancelled by its client mid-decode ends with "cancelled" while the others of
 *     the same wave still answer equal to their references;
 *   - status reports the requests running together;
 *   - fairness (a second server, --max-batch 1): a client with four requests queued does not
 *     starve a client that asks once: its request runs as soon as the running one ends, not
 *     after the other three.
 * Greedy decoding, reasoning off, no kept prefix (each request prefilled whole, in the chunks
 * it would get alone). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sock_util.h"
#include "test_util.h"

#define N 20

static char g_sock[100], g_log[512]; /* sun_path holds 108 bytes */

typedef struct conn {
    int fd;
    char buf[1 << 16];
    size_t n;
} conn;

/* The next complete line of c as JSON, reading what is there (non-blocking poll of 0 when
 * wait is 0); NULL when none is complete yet (or the peer closed: *closed = 1). */
static cJSON *take_line(conn *c, int wait_ms, int *closed) {
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->n);
        if (nl) {
            cJSON *ev = cJSON_ParseWithLength(c->buf, (size_t)(nl - c->buf));
            const size_t used = (size_t)(nl - c->buf) + 1;
            memmove(c->buf, c->buf + used, c->n - used);
            c->n -= used;
            TEST_CHECK(ev != NULL, "the server sent a line that is not JSON");
            return ev;
        }
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, wait_ms) <= 0) return NULL;
        ssize_t r = read(c->fd, c->buf + c->n, sizeof c->buf - c->n);
        if (r <= 0) {
            *closed = 1;
            return NULL;
        }
        c->n += (size_t)r;
    }
}

static const char *k_questions[] = {"What is in this picture?", "Describe the colours.", "Is there any text?",
                                    "What shape stands out?", "Summarize it in one line.", "Count the objects."};

static void request_json(char *buf, size_t cap, int i, const char *img) {
    if (i % 3 == 2) /* some without media */
        snprintf(buf, cap,
                 "{\"v\":1,\"id\":\"r%d\",\"messages\":[{\"role\":\"user\",\"content\":\"%s (%d)\"}],"
                 "\"params\":{\"max_tokens\":%d,\"think\":false,\"no_cache\":true}}",
                 i, k_questions[i % 6], i, 10 + i % 7);
    else
        snprintf(buf, cap,
                 "{\"v\":1,\"id\":\"r%d\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"path\":\"%s\"},"
                 "{\"type\":\"text\",\"text\":\"%s (%d)\"}]}],\"params\":{\"max_tokens\":%d,\"think\":false,\"no_cache\":true}}",
                 i, img, k_questions[i % 6], i, 10 + i % 7);
}

typedef struct answer {
    char text[4096];
    size_t n;
    char ids[2048]; /* the done event's usage + answer, as a comparable string */
    int done, errors, tokens;
    char code[64];
} answer;

static void absorb(answer *a, const cJSON *ev) {
    const char *e = str(ev, "event");
    if (!strcmp(e, "token")) {
        const char *t = str(ev, "text");
        const size_t tl = strlen(t);
        if (a->n + tl < sizeof a->text) {
            memcpy(a->text + a->n, t, tl + 1);
            a->n += tl;
        }
        a->tokens++;
    } else if (!strcmp(e, "done")) {
        a->done++;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
        char *us = u ? cJSON_PrintUnformatted(u) : NULL;
        snprintf(a->ids, sizeof a->ids, "%s|%s", str(ev, "answer"), us ? us : "");
        free(us);
    } else if (!strcmp(e, "error")) {
        a->errors++;
        snprintf(a->code, sizeof a->code, "%s", str(ev, "code"));
    }
}

static int id_index(const cJSON *ev) {
    const char *id = str(ev, "id");
    return id[0] == 'r' ? atoi(id + 1) : -1;
}

int main(void) {
    char img[1024];
    snprintf(img, sizeof img, "%s", test_data_path("media/made/image.bmp"));
    snprintf(g_sock, sizeof g_sock, "%s/nvl-serve-conc-%d.sock", test_tmpdir(), (int)getpid());
    snprintf(g_log, sizeof g_log, "%s/nvl-serve-conc-%d.log", test_tmpdir(), (int)getpid());
    unlink(g_log);
    pid_t srv = fork();
    if (srv == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 2);
        execl(NANOVL_BIN, "nanovl", "serve", "--model", test_data_path("vl_tiny"), "--socket", g_sock, "--max-batch", "8",
              "--max-clients", "64", (char *)NULL);
        _exit(127);
    }
    signal(SIGPIPE, SIG_IGN);
    static answer ref[N], got[N];
    char line[2048];
    /* the references: one at a time */
    {
        conn c = {.fd = connect_to(g_sock, 60)};
        if (c.fd < 0) {
            kill(srv, SIGKILL);
            TEST_CHECK(0, "server did not come up (log %s)", g_log);
            return test_report();
        }
        for (int i = 0; i < N; i++) {
            request_json(line, sizeof line, i, img);
            send_line(c.fd, line);
            int closed = 0;
            const double t0 = nvl_now();
            while (!ref[i].done && !ref[i].errors && !closed && nvl_now() - t0 < 60) {
                cJSON *ev = take_line(&c, 1000, &closed);
                if (ev && id_index(ev) == i) absorb(&ref[i], ev);
                cJSON_Delete(ev);
            }
            TEST_CHECK(ref[i].done == 1 && ref[i].tokens > 0, "reference r%d answered (%s)", i, ref[i].code);
        }
        close(c.fd);
    }
    /* 20 connections at once */
    static conn cs[N];
    int order[8192], n_order = 0; /* request index of each token event, in arrival order */
    for (int i = 0; i < N; i++) cs[i].fd = connect_to(g_sock, 10);
    for (int i = 0; i < N; i++) {
        request_json(line, sizeof line, i, img);
        send_line(cs[i].fd, line);
    }
    {
        conn st = {.fd = connect_to(g_sock, 10)};
        send_line(st.fd, "{\"v\":1,\"id\":\"s\",\"type\":\"status\"}");
        int closed = 0, seen = 0;
        for (const double t0 = nvl_now(); !seen && !closed && nvl_now() - t0 < 30;) {
            cJSON *ev = take_line(&st, 1000, &closed);
            if (ev && !strcmp(str(ev, "event"), "status")) {
                /* never more than --max-batch in the engine (how many are in yet depends on timing) */
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(ev, "running");
                const cJSON *mb = cJSON_GetObjectItemCaseSensitive(ev, "max_batch");
                TEST_CHECK(cJSON_IsNumber(r) && r->valueint >= 0 && r->valueint <= 8 && cJSON_IsNumber(mb) && mb->valueint == 8,
                           "status: running %d of max_batch 8", cJSON_IsNumber(r) ? r->valueint : -1);
                seen = 1;
            }
            cJSON_Delete(ev);
        }
        TEST_CHECK(seen, "status answered while 20 requests are in");
        close(st.fd);
    }
    int left = N;
    for (const double t0 = nvl_now(); left > 0 && nvl_now() - t0 < 120;) {
        struct pollfd pf[N];
        for (int i = 0; i < N; i++) pf[i] = (struct pollfd){cs[i].fd, POLLIN, 0};
        if (poll(pf, N, 1000) <= 0) continue;
        for (int i = 0; i < N; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP))) continue;
            int closed = 0;
            cJSON *ev;
            while ((ev = take_line(&cs[i], 0, &closed)) != NULL) {
                const int k = id_index(ev);
                TEST_CHECK(k == i, "connection %d only hears its own request (got r%d)", i, k);
                if (k == i) {
                    const int was = got[i].done + got[i].errors;
                    absorb(&got[i], ev);
                    if (!strcmp(str(ev, "event"), "token") && n_order < 8192) order[n_order++] = i;
                    if (!was && got[i].done + got[i].errors) left--;
                }
                cJSON_Delete(ev);
            }
        }
    }
    TEST_CHECK(left == 0, "all 20 answered (%d left)", left);
    for (int i = 0; i < N; i++) {
        TEST_CHECK(got[i].done == 1 && got[i].errors == 0, "r%d: exactly one done (done %d, errors %d %s)", i, got[i].done,
                   got[i].errors, got[i].code);
        TEST_CHECK(!strcmp(got[i].text, ref[i].text), "r%d: streamed text equal to alone", i);
        TEST_CHECK(!strcmp(got[i].ids, ref[i].ids), "r%d: answer and usage equal to alone", i);
    }
    int switches = 0; /* consecutive token events of different requests */
    for (int k = 1; k < n_order; k++) switches += order[k] != order[k - 1];
    TEST_CHECK(switches >= 2 * N, "token events interleave (%d switches between requests over %d events)", switches, n_order);
    fprintf(stderr, "token events: %d, switches between requests: %d\n", n_order, switches);
    for (int i = 0; i < N; i++) close(cs[i].fd);

    /* a client cancels its request mid-decode; the others of the wave answer */
    {
        memset(got, 0, sizeof got);
        for (int i = 0; i < 6; i++) {
            cs[i].fd = connect_to(g_sock, 10);
            cs[i].n = 0;
            request_json(line, sizeof line, i, img);
            if (i == 0) { /* a long one to cancel */
                snprintf(line, sizeof line,
                         "{\"v\":1,\"id\":\"r0\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell a long story.\"}],"
                         "\"params\":{\"max_tokens\":400,\"think\":false,\"no_cache\":true}}");
            }
            send_line(cs[i].fd, line);
        }
        int cancelled_sent = 0, left6 = 6;
        for (const double t0 = nvl_now(); left6 > 0 && nvl_now() - t0 < 120;) {
            struct pollfd pf[6];
            for (int i = 0; i < 6; i++) pf[i] = (struct pollfd){cs[i].fd, POLLIN, 0};
            if (poll(pf, 6, 1000) <= 0) continue;
            for (int i = 0; i < 6; i++) {
                if (!(pf[i].revents & (POLLIN | POLLHUP))) continue;
                int closed = 0;
                cJSON *ev;
                while ((ev = take_line(&cs[i], 0, &closed)) != NULL) {
                    if (id_index(ev) == i) {
                        const int was = got[i].done + got[i].errors;
                        absorb(&got[i], ev);
                        if (!was && got[i].done + got[i].errors) left6--;
                        if (i == 0 && !cancelled_sent && got[0].tokens >= 2) {
                            send_line(cs[0].fd, "{\"v\":1,\"id\":\"c0\",\"type\":\"cancel\",\"target\":\"r0\"}");
                            cancelled_sent = 1;
                        }
                    }
                    cJSON_Delete(ev);
                }
            }
        }
        TEST_CHECK(cancelled_sent && got[0].errors == 1 && !strcmp(got[0].code, "cancelled") && got[0].done == 0,
                   "the cancelled request ends with error cancelled (code '%s', %d tokens)", got[0].code, got[0].tokens);
        TEST_CHECK(got[0].tokens < 400, "cancelled before its end (%d tokens)", got[0].tokens);
        for (int i = 1; i < 6; i++)
            TEST_CHECK(got[i].done == 1 && !strcmp(got[i].ids, ref[i].ids), "beside the cancel: r%d equal alone", i);
        for (int i = 0; i < 6; i++) close(cs[i].fd);
    }
    kill(srv, SIGTERM);
    int status = 0;
    waitpid(srv, &status, 0);
    TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exits 0 after SIGTERM");

    /* fairness: one place in the engine; A queues four, then B asks once */
    char sock2[100];
    snprintf(sock2, sizeof sock2, "%s/nvl-fair-%d.sock", test_tmpdir(), (int)getpid());
    pid_t s2 = fork();
    if (s2 == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 2);
        execl(NANOVL_BIN, "nanovl", "serve", "--model", test_data_path("vl_tiny"), "--socket", sock2, "--max-batch", "1",
              (char *)NULL);
        _exit(127);
    }
    conn a = {.fd = connect_to(sock2, 60)}, b = {.fd = -1};
    int fair[5], n_done = 0; /* 0..3: A's requests, 4: B's */
    if (a.fd >= 0) {
        for (int i = 0; i < 4; i++) {
            snprintf(line, sizeof line,
                     "{\"v\":1,\"id\":\"r%d\",\"messages\":[{\"role\":\"user\",\"content\":\"Story %d, please.\"}],"
                     "\"params\":{\"max_tokens\":200,\"think\":false,\"no_cache\":true}}",
                     i, i);
            send_line(a.fd, line);
        }
        int closed = 0, started = 0;
        for (const double t0 = nvl_now(); !started && !closed && nvl_now() - t0 < 30;) { /* A's first runs */
            cJSON *ev = take_line(&a, 1000, &closed);
            if (ev && !strcmp(str(ev, "event"), "token")) started = 1;
            if (ev && !strcmp(str(ev, "event"), "done")) fair[n_done++] = id_index(ev);
            cJSON_Delete(ev);
        }
        b.fd = connect_to(sock2, 10);
        send_line(b.fd, "{\"v\":1,\"id\":\"r4\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello?\"}],"
                        "\"params\":{\"max_tokens\":8,\"think\":false,\"no_cache\":true}}");
        for (const double t0 = nvl_now(); n_done < 5 && nvl_now() - t0 < 60;) {
            struct pollfd pf[2] = {{a.fd, POLLIN, 0}, {b.fd, POLLIN, 0}};
            if (poll(pf, 2, 1000) <= 0) continue;
            for (int k = 0; k < 2; k++) {
                conn *c = k ? &b : &a;
                cJSON *ev;
                while ((ev = take_line(c, 0, &closed)) != NULL) {
                    if (!strcmp(str(ev, "event"), "done") && n_done < 5) fair[n_done++] = id_index(ev);
                    cJSON_Delete(ev);
                }
            }
        }
    }
    TEST_CHECK(n_done == 5, "fairness: all five answered (%d)", n_done);
    /* first-come order would run it last (A's three queued first); the fewest-running rule runs it
     * as soon as A's first ends (second; later only if A's answers end before B's line is read: a
     * 200-token answer of the tiny model takes milliseconds, so on a loaded machine, where this
     * process may sleep through two of them, fourth of five is possible: still not last). First
     * is possible too, though the server runs it after A's first: the order is the one this
     * client reads the done events in, and while it sleeps A's socket fills with 200 token
     * events, so A's done waits in the server's buffer for A while B's reaches B at once (seen
     * here under load: 4 0 1 2 3). Not last is the property. */
    int pos = -1;
    for (int k = 0; k < n_done; k++)
        if (fair[k] == 4) pos = k;
    TEST_CHECK(n_done == 5 && pos >= 0 && pos <= 3, "fairness: the second client's request runs before A's last queued "
               "ones, not last (order %d %d %d %d %d)", fair[0], fair[1], fair[2], fair[3], fair[4]);
    fprintf(stderr, "fairness: order of answers %d %d %d %d %d (4: the second client's)\n", fair[0], fair[1], fair[2], fair[3],
            fair[4]);
    if (a.fd >= 0) close(a.fd);
    if (b.fd >= 0) close(b.fd);
    kill(s2, SIGTERM);
    waitpid(s2, &status, 0);
    const int rc = test_report();
    if (rc == 0) unlink(g_log);
    else fprintf(stderr, "server log: %s\n", g_log);
    return rc;
}
