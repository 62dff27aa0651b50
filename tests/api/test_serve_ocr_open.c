/* `nanovl serve` lists an OCR request's pages (each PDF opened in its renderer and its pages
 * selected) off the thread that steps every client's requests: opening a large damaged PDF can
 * take Poppler seconds (up to --page-timeout), and it held every other client's answer. The
 * renderer's knob NVL_TEST_RENDERER_SLOW_OPEN makes opening a document whose path holds
 * "slow-open" take 3 s more. These are liveness checks with a wide margin, not timings: before,
 * the stepping thread waited the whole 3 s.
 *   - a client streaming a long answer keeps receiving tokens while another client's OCR
 *     document opens: no silence of 1.5 s between its tokens from that request's "accepted" to
 *     its first "page" (the tokens already buffered are not what is counted: the gap is);
 *   - the OCR request is then answered as usual (two pages, done);
 *   - a cancel while such a document opens stops the opening: the request ends "cancelled" with
 *     no "cannot be interrupted" note (that note comes when a step does not stop within 1 s);
 *   - a question sent while an OCR document opens is answered within 2.5 s, not after it
 *     and that OCR request then reads its two pages;
 *   - a question about such a document (its opening in the engine's media stage): a cancel
 *     stops the opening there too;
 *   - four OCR requests of such documents at once (--max-batch 8) open at most two at a time
 *     (each renderer may take --page-memory): no more than 3 renderer processes (two opening,
 *     the spare started ahead) in the first 2.7 s, status's pdf_renderers counts those opening,
 *     and all four read their pages. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sock_util.h"
#include "test_util.h"

static char g_sock[100], g_log[512];

typedef sock_conn conn;
#define next_event sock_next_event

static int readable(conn *c) {
    if (memchr(c->buf, '\n', c->n)) return 1;
    struct pollfd pf = {c->fd, POLLIN, 0};
    return poll(&pf, 1, 0) > 0;
}

/* Children of pid named nanovl-pdf (the PDF renderers) that are alive. */
static int renderers(pid_t pid) { return sock_children(pid, "nanovl-pdf", NULL); }

static void ask_long(conn *c, const char *id, const char *img) {
    char line[1024];
    snprintf(line, sizeof line,
             "{\"v\":1,\"id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"path\":\"%s\"},"
             "{\"type\":\"text\",\"text\":\"What is in this picture?\"}]}],\"params\":{\"max_tokens\":4000,\"think\":true}}",
             id, img);
    send_line(c->fd, line);
}

static void ocr(conn *c, const char *id, const char *pdf) {
    char line[1024];
    snprintf(line, sizeof line, "{\"v\":1,\"id\":\"%s\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"max_tokens\":3}}",
             id, pdf);
    send_line(c->fd, line);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *img = test_data_path("media/made/image.bmp");
    char slow_pdf[600];
    snprintf(g_sock, sizeof g_sock, "%s/nvl-ocr-open-%d.sock", test_tmpdir(), (int)getpid());
    snprintf(g_log, sizeof g_log, "%s/nvl-ocr-open-%d.log", test_tmpdir(), (int)getpid());
    snprintf(slow_pdf, sizeof slow_pdf, "%s/nvl-slow-open-%d.pdf", test_tmpdir(), (int)getpid());
    unlink(g_log);
    unlink(slow_pdf);
    { /* a copy (a link would be opened as the file it names, whose name lacks the knob's "slow-open") */
        char cp[1400];
        snprintf(cp, sizeof cp, "cp '%s' '%s'", test_data_path("media/made/two_pages.pdf"), slow_pdf);
        TEST_CHECK(system(cp) == 0, "made %s", slow_pdf);
    }
    pid_t srv = fork();
    if (srv == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 2);
        setenv("NVL_TEST_RENDERER_SLOW_OPEN", "slow-open:3000", 1);
        execl(NANOVL_BIN, "nanovl", "serve", "--model", test_data_path("vl_tiny"), "--socket", g_sock, "--max-batch", "8",
              (char *)NULL);
        _exit(127);
    }
    conn a = {.fd = connect_to(g_sock, 60)}, b = {.fd = connect_to(g_sock, 10)}, c = {.fd = connect_to(g_sock, 10)};
    if (a.fd < 0 || b.fd < 0 || c.fd < 0) {
        kill(srv, SIGKILL);
        waitpid(srv, NULL, 0);
        TEST_CHECK(0, "server did not come up (log %s)", g_log);
        return test_report();
    }

    /* 1: a long answer streams on while another client's document opens */
    ask_long(&a, "long", img);
    int a_tokens = 0, a_during = 0, ocr_sent = 0, ocr_opening = 0, pages = 0, ocr_done = 0, a_ended = 0;
    double t_last_token = 0, max_gap = 0; /* the longest silence of the answer while the document opened */
    const double t0 = nvl_now();
    while (!ocr_done && nvl_now() - t0 < 120) {
        if (readable(&b)) {
            cJSON *ev = next_event(&b, 1);
            const char *e = ev ? str(ev, "event") : "";
            if (!strcmp(e, "accepted")) {
                ocr_opening = 1;
                t_last_token = nvl_now();
            }
            if (!strcmp(e, "page")) {
                ocr_opening = 0;
                pages++;
                TEST_CHECK(!cJSON_GetObjectItemCaseSensitive(ev, "error"), "page %d read", pages);
            }
            if (!strcmp(e, "done")) ocr_done = 1;
            if (!strcmp(e, "error")) {
                TEST_CHECK(0, "ocr failed: %s", str(ev, "message"));
                ocr_done = 1;
            }
            cJSON_Delete(ev);
            continue;
        }
        if (a_ended || !readable(&a)) {
            struct pollfd pf[2] = {{a.fd, a_ended ? 0 : POLLIN, 0}, {b.fd, POLLIN, 0}};
            poll(pf, 2, 100);
            continue;
        }
        cJSON *ev = next_event(&a, 1);
        const char *e = ev ? str(ev, "event") : "";
        if (!strcmp(e, "token")) {
            a_tokens++;
            a_during += ocr_opening;
            if (ocr_opening) {
                const double t = nvl_now();
                if (t - t_last_token > max_gap) max_gap = t - t_last_token;
                t_last_token = t;
            }
            if (a_tokens == 20 && !ocr_sent) {
                ocr(&b, "o1", slow_pdf);
                ocr_sent = 1;
            }
        }
        if (!strcmp(e, "done") || !strcmp(e, "error")) a_ended = 1;
        cJSON_Delete(ev);
    }
    TEST_CHECK(ocr_done && pages == 2, "the OCR request read its two pages (%d) and ended", pages);
    fprintf(stderr, "long answer: %d tokens while the document opened, longest silence %.2f s, ended %d\n", a_during, max_gap, a_ended);
    TEST_CHECK(a_during > 0 && max_gap < 1.5,
               "the long answer went on while the OCR document opened: %d tokens then, the longest silence %.2f s", a_during,
               max_gap);
    /* the long answer is stopped: cancelled by its client */
    send_line(a.fd, "{\"v\":1,\"type\":\"cancel\",\"target\":\"long\"}");
    for (cJSON *ev; !a_ended && (ev = next_event(&a, 30));) {
        a_ended = !strcmp(str(ev, "id"), "long") && (!strcmp(str(ev, "event"), "done") || !strcmp(str(ev, "event"), "error"));
        cJSON_Delete(ev);
    }
    TEST_CHECK(a_ended, "the long answer ended");

    /* 2: a cancel stops the opening at once */
    ocr(&b, "o2", slow_pdf);
    cJSON *ev = next_event(&b, 30);
    TEST_CHECK(ev && !strcmp(str(ev, "event"), "accepted"), "o2 accepted");
    cJSON_Delete(ev);
    usleep(500000); /* the opening under way (a cancel before it is seen between inputs) */
    send_line(b.fd, "{\"v\":1,\"type\":\"cancel\",\"target\":\"o2\"}");
    const double t_c = nvl_now();
    int o2_end = 0;
    for (cJSON *e2; !o2_end && (e2 = next_event(&b, 30));) {
        if (!strcmp(str(e2, "id"), "o2") && !strcmp(str(e2, "event"), "error")) {
            o2_end = 1;
            TEST_CHECK(!strcmp(str(e2, "code"), "cancelled"), "o2 cancelled (%s)", str(e2, "code"));
            TEST_CHECK(!strstr(str(e2, "message"), "cannot be interrupted"),
                       "the opening stopped at the cancel (not answered early while it went on): '%s'", str(e2, "message"));
        } else if (!strcmp(str(e2, "id"), "o2") && !strcmp(str(e2, "event"), "done")) {
            o2_end = 1;
            TEST_CHECK(0, "o2 ended done, not cancelled");
        }
        cJSON_Delete(e2);
    }
    TEST_CHECK(o2_end, "o2 ended (%.2f s after its cancel)", nvl_now() - t_c);

    /* 3: a question is not held behind a document opening; that OCR request then reads it */
    ocr(&b, "o3", slow_pdf);
    ev = next_event(&b, 30);
    TEST_CHECK(ev && !strcmp(str(ev, "event"), "accepted"), "o3 accepted");
    cJSON_Delete(ev);
    char line[1024];
    snprintf(line, sizeof line,
             "{\"v\":1,\"id\":\"q\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"path\":\"%s\"},"
             "{\"type\":\"text\",\"text\":\"Read it.\"}]}],\"params\":{\"max_tokens\":4,\"think\":false}}",
             img);
    const double t_q = nvl_now();
    send_line(c.fd, line);
    int q_done = 0;
    for (cJSON *e2; !q_done && (e2 = next_event(&c, 60));) {
        q_done = !strcmp(str(e2, "event"), "done");
        if (!strcmp(str(e2, "event"), "error")) {
            TEST_CHECK(0, "q failed: %s", str(e2, "message"));
            q_done = -1;
        }
        cJSON_Delete(e2);
    }
    const double q_s = nvl_now() - t_q;
    TEST_CHECK(q_done == 1 && q_s < 2.5, "a question sent while an OCR document opens is answered in %.2f s (the opening "
               "takes 3 s)", q_s);
    int o3_pages = 0, o3_done = 0;
    for (cJSON *e2; !o3_done && (e2 = next_event(&b, 60));) {
        o3_pages += !strcmp(str(e2, "event"), "page");
        o3_done = !strcmp(str(e2, "event"), "done") || !strcmp(str(e2, "event"), "error");
        cJSON_Delete(e2);
    }
    TEST_CHECK(o3_done && o3_pages == 2, "o3 read its two pages (%d)", o3_pages);

    /* 4: a question about such a document: a cancel stops its opening too */
    snprintf(line, sizeof line,
             "{\"v\":1,\"id\":\"q2\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"pdf\",\"path\":\"%s\"},"
             "{\"type\":\"text\",\"text\":\"Read it.\"}]}],\"params\":{\"max_tokens\":4,\"think\":false}}",
             slow_pdf);
    send_line(c.fd, line);
    ev = next_event(&c, 30);
    TEST_CHECK(ev && !strcmp(str(ev, "event"), "accepted"), "q2 accepted");
    cJSON_Delete(ev);
    usleep(500000);
    send_line(c.fd, "{\"v\":1,\"type\":\"cancel\",\"target\":\"q2\"}");
    int q2_end = 0;
    for (cJSON *e2; !q2_end && (e2 = next_event(&c, 30));) {
        if (!strcmp(str(e2, "id"), "q2") && (!strcmp(str(e2, "event"), "error") || !strcmp(str(e2, "event"), "done"))) {
            q2_end = 1;
            TEST_CHECK(!strcmp(str(e2, "code"), "cancelled") && !strstr(str(e2, "message"), "cannot be interrupted"),
                       "q2's opening stopped at the cancel: %s '%s'", str(e2, "code"), str(e2, "message"));
        }
        cJSON_Delete(e2);
    }
    TEST_CHECK(q2_end, "q2 ended");

    /* 5: at most two OCR requests' documents open at once */
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%d", i);
        ocr(&b, id, slow_pdf);
    }
    int max_renderers = 0, p_pages = 0, p_done = 0, status_sent = 0;
    double status_renderers = -1;
    const double t5 = nvl_now();
    while (p_done < 4 && nvl_now() - t5 < 120) {
        if (!status_sent && nvl_now() - t5 > 1.5) { /* two documents opening: status counts their renderers */
            send_line(c.fd, "{\"v\":1,\"id\":\"st\",\"type\":\"status\"}");
            cJSON *st_ev = next_event(&c, 10);
            const cJSON *pr = st_ev ? cJSON_GetObjectItemCaseSensitive(st_ev, "pdf_renderers") : NULL;
            status_renderers = cJSON_IsNumber(pr) ? pr->valuedouble : -1;
            cJSON_Delete(st_ev);
            status_sent = 1;
        }
        /* the first 2.7 s: the documents open (3 s each) and no page has started yet (the pages'
           own openings, on the engine's media threads, come after) */
        const int n = nvl_now() - t5 < 2.7 ? renderers(srv) : 0;
        if (n > max_renderers) max_renderers = n;
        cJSON *e2 = next_event(&b, 0.1);
        if (!e2) continue;
        p_pages += !strcmp(str(e2, "event"), "page") && !cJSON_GetObjectItemCaseSensitive(e2, "error");
        p_done += !strcmp(str(e2, "event"), "done") || !strcmp(str(e2, "event"), "error");
        cJSON_Delete(e2);
    }
    TEST_CHECK(p_done == 4 && p_pages == 8, "four OCR requests of slow documents ended (%d) with their 8 pages (%d)", p_done,
               p_pages);
    TEST_CHECK(status_renderers >= 2, "status counts the renderers opening documents: pdf_renderers %g 1.5 s into their "
               "3 s openings (two opening, and the spare)", status_renderers);
    TEST_CHECK(max_renderers <= 3, "PDF renderers while four OCR requests' documents opened: at most %d (two opening, one spare)",
               max_renderers);
    close(a.fd);
    close(b.fd);
    close(c.fd);
    kill(srv, SIGTERM);
    int st = 0;
    waitpid(srv, &st, 0);
    TEST_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server exits 0 on SIGTERM (status %d; log %s)", st, g_log);
    unlink(slow_pdf);
    return test_report();
}
