/* The engine's scheduler (api.h: submit / step / cancel) on the tiny f32 VL checkpoint:
 *   1. seven requests (an image, a two-page PDF with a video and an image, a video, text only, a
 *      second question about the image, one PDF page, a second text) submitted together on an
 *      engine of max_batch 8 all end NVL_OK with the same greedy ids as each alone
 *      (api_engine_run, one at a time), and their decode rows share steps (steps carrying tokens
 *      of several requests: the two text questions, admitted in the same turn, decode in
 *      lockstep whatever the media threads' pace; which media requests join them varies);
 *   1b. chunked prefill: a running answer keeps streaming while a long prompt (~1,500 tokens, six
 *      chunks of 256) is prefilled beside it: it gets tokens in the steps before the long
 *      request's first token (a whole-prompt prefill would give it one);
 *   2. cancel mid-decode with max_batch 2: the cancelled request ends NVL_ERR_CANCELLED with the
 *      tokens it had, and its slot goes at once: a queued third request is admitted (its first
 *      progress event) before the other running one ends; both answers equal alone;
 *   3. one request failing in the vision stage (a PDF page at 20000 dpi: the page is rendered
 *      there and refused, NVL_ERR_LIMIT naming the file) while two others go on, equal to alone;
 *   4. a sequence-memory budget too small for any request: NVL_ERR_LIMIT naming the MiB;
 *   5. a request whose file is slow to read (a long AV1 video from ../shared, skipped when
 *      absent) does not hold up another: files are read and frames decoded on the engine's
 *      media threads, so a text question submitted as the video enters the vision stage answers
 *      within the video's first 3 vision batches (decoding inline, on the stepping thread, would
 *      let 6 or more go by first: planted once, this check failed);
 *   6. a video streamed to the vision stage through a ring of 2 frames (video_ahead 2: the 20
 *      frames of a 10 fps clip wrap it 10 times, its media thread refilling it as RADIO empties it),
 *      with an image in the same request (the image's tiles and the video's frames are both
 *      jobs of the request's media thread), beside a second video request cancelled at its
 *      first vision progress event (its decoding job stops): the first answers as on an engine
 *      whose ring holds every frame (the same ids, frames, timestamps and kept tokens; logits
 *      within the bound below: the cancelled request's frames may share its vision batches),
 *      the second ends NVL_ERR_CANCELLED, and the engine answers after both; video_ahead out of
 *      0..4096 is refused;
 *   7. nothing leaks;
 *   8. questions about one image sent together run its vision and prefill once (below).
 * Bounds: ids exactly. A decode row batched with a prefill chunk (>= 32 rows a step) goes through
 * the packed GEMM instead of the register tiles: f32 rounding noise (tests/llm/test_step.c), far
 * below the tiny model's greedy margins. The logits after the prompt are compared with atol
 * 1e-5, rtol 1e-4 (test_step's f32 bound). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "base/alloc.h"
#include "test_util.h"
#include "gpu_skip.h"

#define NREQ 7

typedef struct req {
    api_part parts[5];
    api_message msg;
    api_ask_params p;
} req;

typedef struct track {
    api_engine *e;
    uint64_t id;
    int n_tok;
    int cancel_at;      /* cancel itself after this many tokens (0: never) */
    int cancel_in_vision; /* cancel itself at its first vision progress event */
    req *then;          /* submitted (with then_t, then_res) at this request's first media progress */
    struct track *then_t;
    api_ask_result *then_res;
    long first, last;   /* event serials of the first and last token */
    long first_progress;
    int n_vision;       /* vision progress events so far */
    struct track *watch; /* at this request's end, watch's vision events so far -> watched_vision */
    struct track *cancel_other; /* cancelled at this request's first media progress event */
    int watched_vision;
    long tok_serial[64]; /* serials of the first 64 tokens */
    long done_at;
    int done;
    nvl_status st;
    char msg[NVL_ERR_MSG_MAX];
} track;

static long g_serial;
static int g_step;               /* steps run by run_together */
static int g_step_tokens[20001]; /* tokens emitted in each of them */

static int on_token(int32_t tok, const float *logits, void *user) {
    (void)tok, (void)logits;
    track *t = user;
    if (g_step <= 20000) g_step_tokens[g_step]++;
    if (!t->n_tok++) t->first = ++g_serial;
    t->last = ++g_serial;
    if (t->n_tok <= 64) t->tok_serial[t->n_tok - 1] = t->last;
    if (t->cancel_at && t->n_tok == t->cancel_at) api_engine_cancel(t->e, t->id);
    return 0;
}

static void on_done(nvl_status st, const char *msg, void *user);

static void on_progress(const api_progress *p, void *user) {
    track *t = user;
    if (!t->first_progress) t->first_progress = ++g_serial;
    if (p->stage == API_STAGE_VISION) t->n_vision++;
    if (t->cancel_in_vision && p->stage == API_STAGE_VISION) api_engine_cancel(t->e, t->id);
    if (t->cancel_other && p->stage == API_STAGE_MEDIA) {
        api_engine_cancel(t->e, t->cancel_other->id);
        t->cancel_other = NULL;
    }
    if (t->then && p->stage == API_STAGE_MEDIA) { /* from the step's callback: admitted next turn */
        api_callbacks cb = {.on_token = on_token, .on_progress = on_progress, .on_done = on_done, .user = t->then_t};
        t->then_t->e = t->e;
        nvl_err err = {0};
        TEST_EQ_INT(api_engine_submit(t->e, &t->then->msg, 1, &t->then->p, &cb, t->then_res, &t->then_t->id, &err), NVL_OK);
        t->then = NULL;
    }
}

static void on_done(nvl_status st, const char *msg, void *user) {
    track *t = user;
    if (t->watch) t->watched_vision = t->watch->n_vision;
    t->done = 1;
    t->st = st;
    t->done_at = ++g_serial;
    snprintf(t->msg, sizeof t->msg, "%s", msg ? msg : "");
}

typedef struct reenter_state {
    api_engine *e;
    int calls;
    nvl_status inner_st;
    int pending_after_step;
    char inner_msg[NVL_ERR_MSG_MAX];
} reenter_state;

/* on_token that calls back into the engine it runs on (a step's callback). */
static int reenter_on_token(int32_t tok, const float *logits, void *user) {
    (void)tok;
    (void)logits;
    reenter_state *rs = user;
    if (rs->calls++ == 0) {
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 2;
        api_ask_result r;
        nvl_err err = {0};
        rs->inner_st = api_engine_ask(rs->e, NULL, 0, "Inner?", &p, NULL, NULL, &r, &err);
        snprintf(rs->inner_msg, sizeof rs->inner_msg, "%s", err.msg);
        if (rs->inner_st == NVL_OK || rs->inner_st == NVL_ERR_CANCELLED) api_ask_result_free(&r);
        rs->pending_after_step = api_engine_step(rs->e); /* not reentrant: returns what is pending */
    }
    return 0;
}

static void make_req(req *r, const char *media, const char *pages, const char *question, int max_tokens) {
    memset(r, 0, sizeof *r);
    int n = 0;
    if (media) {
        r->parts[n].kind = API_PART_MEDIA;
        r->parts[n].media.path = media;
        r->parts[n++].media.pages = pages;
    }
    r->parts[n].kind = API_PART_TEXT;
    r->parts[n++].text = question;
    r->msg = (api_message){"user", r->parts, n};
    r->p = api_ask_params_default();
    r->p.max_tokens = max_tokens;
    r->p.no_cache = 1; /* alone and together both prefill the whole prompt in the same chunks */
    r->p.think = 0;
}

static int same_ids(const api_ask_result *a, const api_ask_result *b) {
    return a->n_ids == b->n_ids && !memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof(int32_t));
}

/* Submits n requests, steps until every one ended. */
static void run_together(api_engine *e, req *rq, int n, track *t, api_ask_result *res) {
    for (int i = 0; i < n; i++) {
        api_callbacks cb = {.on_token = on_token, .on_progress = on_progress, .on_done = on_done, .user = &t[i]};
        t[i].e = e;
        nvl_err err = {0};
        TEST_EQ_INT(api_engine_submit(e, &rq[i].msg, 1, &rq[i].p, &cb, &res[i], &t[i].id, &err), NVL_OK);
    }
    int guard = 0; /* a leaked slot or budget would leave a request waiting for ever */
    memset(g_step_tokens, 0, sizeof g_step_tokens);
    for (g_step = 0; api_engine_step(e) > 0 && guard++ < 20000; g_step++) {
    }
    for (int i = 0; i < n; i++) TEST_CHECK(t[i].done, "request %d ended", i);
}

int main(void) {
    test_skip_without_device();
    nvl_err err = {0};
    const int64_t live0 = nvl_alloc_count();
    char img[1024], pdf[1024], vid[1024];
    snprintf(img, sizeof img, "%s", test_data_path("media/made/image.bmp"));
    snprintf(pdf, sizeof pdf, "%s", test_data_path("media/made/two_pages.pdf"));
    snprintf(vid, sizeof vid, "%s", test_data_path("media/made/clip_2s.mp4"));
    api_engine_opts o = api_engine_opts_default();
    o.max_batch = 8;
    /* the CPU's sizes on every backend (NVL_BACKEND=cuda runs this file too): the expectations below
       count prefill chunks of 256 and vision batches of 8 */
    o.vision_batch = 8;
    o.prefill_chunk = 256;
    api_engine *e = NULL;
    if (api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err) != NVL_OK) {
        TEST_CHECK(0, "open: %s", err.msg);
        return test_report();
    }
    const int64_t V = api_engine_n_vocab(e);

    /* 1. six together equal each alone */
    {
        req rq[NREQ];
        make_req(&rq[0], img, NULL, "What is in this picture?", 12);
        make_req(&rq[1], pdf, NULL, "Summarize the document.", 12);
        /* a PDF, a video and an image: past 256 prompt tokens, so its vision rows span prefill chunks */
        rq[1].parts[3] = rq[1].parts[1];
        rq[1].parts[1] = (api_part){.kind = API_PART_MEDIA, .media = {.path = vid}};
        rq[1].parts[2] = (api_part){.kind = API_PART_MEDIA, .media = {.path = img}};
        rq[1].msg.n_parts = 4;
        make_req(&rq[2], vid, NULL, "What happens in the video?", 12);
        make_req(&rq[3], NULL, NULL, "Write a short poem about the sea.", 12);
        make_req(&rq[4], img, NULL, "Which colours do you see?", 12);
        make_req(&rq[5], pdf, "2", "What is on this page?", 12);
        make_req(&rq[6], NULL, NULL, "Name three colours.", 12); /* text, admitted with rq[3]: their decodes share steps */
        api_ask_result alone[NREQ], tog[NREQ];
        for (int i = 0; i < NREQ; i++)
            TEST_EQ_INT(api_engine_run(e, &rq[i].msg, 1, &rq[i].p, NULL, &alone[i], &err), NVL_OK);
        track t[NREQ];
        memset(t, 0, sizeof t);
        run_together(e, rq, NREQ, t, tog);
        for (int i = 0; i < NREQ; i++) {
            TEST_CHECK(t[i].st == NVL_OK, "together %d: NVL_OK (%s)", i, t[i].msg);
            if (t[i].st != NVL_OK) continue;
            TEST_CHECK(tog[i].n_ids > 0 && same_ids(&tog[i], &alone[i]), "together %d: ids equal alone (%lld vs %lld)", i,
                       (long long)tog[i].n_ids, (long long)alone[i].n_ids);
            TEST_CHECK(!strcmp(tog[i].answer, alone[i].answer), "together %d: answer text equal alone", i);
            TEST_EQ_INT(tog[i].n_prompt, alone[i].n_prompt);
            if (i == 1) TEST_CHECK(tog[i].n_prompt > 256, "the PDF + video + image prompt spans two chunks (%lld)", (long long)tog[i].n_prompt);
            char what[64];
            snprintf(what, sizeof what, "together %d: logits after the prompt", i);
            test_compare_f32(what, tog[i].first_logits, alone[i].first_logits, (size_t)V, 1e-5, 1e-4, 1e-10);
            /* text alone: bit for bit on the CPU (the step keeps each request's rows as alone:
               llm/forward.c step_mm); with media the tiny checkpoint's tiles (under 32 rows each)
               are encoded with other requests' in one ViT pass, whose sums then take another order */
            if (tog[i].backend && !strcmp(tog[i].backend, "cpu") && alone[i].n_image_tokens == 0)
                TEST_CHECK(!memcmp(tog[i].first_logits, alone[i].first_logits, (size_t)V * sizeof(float)),
                           "together %d (text): logits after the prompt bit for bit as alone (the CPU)", i);
            TEST_CHECK(t[i].n_tok == tog[i].n_ids, "together %d: on_token for every id", i);
        }
        /* the decodes run together: steps that carried tokens of several requests (the media
         * threads read files at their own pace, so when each request starts decoding varies) */
        int shared = 0, most = 0;
        for (int k = 0; k <= g_step && k <= 20000; k++) {
            shared += g_step_tokens[k] >= 2;
            most = g_step_tokens[k] > most ? g_step_tokens[k] : most;
        }
        TEST_CHECK(shared >= 5 && most >= 2, "decode rows share steps (%d steps with >= 2 requests' tokens, at most %d)", shared,
                   most);
        for (int i = 0; i < NREQ; i++) {
            api_ask_result_free(&alone[i]);
            api_ask_result_free(&tog[i]);
        }
    }
    /* 1b. a long prompt prefilled in chunks beside a running answer */
    {
        static char longq[16384];
        size_t o2 = 0;
        for (int k = 0; k < 150 && o2 + 100 < sizeof longq; k++)
            o2 += (size_t)snprintf(longq + o2, sizeof longq - o2, "Line %d of the report says the total is %d. ", k, 17 * k);
        snprintf(longq + o2, sizeof longq - o2, "What is the total on line 42?");
        req rq[2];
        make_req(&rq[0], NULL, NULL, "Tell me about the sea.", 40);
        make_req(&rq[1], NULL, NULL, longq, 4);
        track t[2];
        memset(t, 0, sizeof t);
        api_ask_result res[2];
        run_together(e, rq, 2, t, res);
        TEST_CHECK(t[0].st == NVL_OK && t[1].st == NVL_OK, "long prompt beside an answer: both end (%s / %s)", t[0].msg, t[1].msg);
        TEST_CHECK(res[1].n_prompt > 5 * 256, "the long prompt spans six chunks (%lld tokens)", (long long)res[1].n_prompt);
        /* tokens of the short request emitted before the long one's first token */
        int before = 0;
        for (int k = 0; k < t[0].n_tok && k < 64; k++) before += t[0].tok_serial[k] < t[1].first;
        TEST_CHECK(before >= 4, "the running answer kept streaming during the long prefill (%d tokens before the long "
                   "request's first)", before);
        for (int i = 0; i < 2; i++) api_ask_result_free(&res[i]);
    }
    api_engine_close(e);
    e = NULL;

    /* 2. cancel mid-decode frees the slot at once (max_batch 2: the third waits for a slot) */
    o.max_batch = 2;
    TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
    if (e) {
        req rq[3];
        make_req(&rq[0], NULL, NULL, "Describe a picture of a harbour at dawn.", 64); /* text: starts with the next */
        make_req(&rq[1], NULL, NULL, "Tell me a long story about a lighthouse keeper.", 48);
        make_req(&rq[2], NULL, NULL, "What is the title of a report about weather?", 8);
        for (int i = 0; i < 3; i++) rq[i].p.sampler.temperature = 0;
        api_ask_result alone[3], tog[3];
        for (int i = 0; i < 3; i++) TEST_EQ_INT(api_engine_run(e, &rq[i].msg, 1, &rq[i].p, NULL, &alone[i], &err), NVL_OK);
        /* the story must still be decoding when the first request is cancelled after 3 tokens */
        TEST_CHECK(alone[1].n_ids > 8, "the long request generates more than 8 tokens alone (%lld)", (long long)alone[1].n_ids);
        track t[3];
        memset(t, 0, sizeof t);
        t[0].cancel_at = 3;
        run_together(e, rq, 3, t, tog);
        TEST_EQ_INT(t[0].st, NVL_ERR_CANCELLED);
        TEST_EQ_INT(tog[0].n_ids, 3);
        TEST_CHECK(tog[0].finish_reason && !strcmp(tog[0].finish_reason, "cancelled"), "cancelled: finish_reason");
        TEST_CHECK(tog[0].n_ids == 3 && !memcmp(tog[0].ids, alone[0].ids, 3 * sizeof(int32_t)),
                   "cancelled: the ids it had equal alone's first 3");
        TEST_CHECK(t[2].first > 0 && t[2].first < t[1].done_at,
                   "the queued request answers before the running one ends (slot freed at cancel: %ld < %ld)", t[2].first,
                   t[1].done_at);
        for (int i = 1; i < 3; i++) {
            TEST_CHECK(t[i].st == NVL_OK && same_ids(&tog[i], &alone[i]), "cancel run: request %d equal alone (%s)", i, t[i].msg);
        }

        /* cancelled requests give their slots and memory back: more cancels than the cache has
         * slots (max_batch + 4 kept prefixes), then a request still runs */
        for (int k = 0; k < 8; k++) {
            track tc = {.cancel_at = 2};
            api_ask_result rc;
            run_together(e, &rq[1], 1, &tc, &rc);
            TEST_CHECK(tc.st == NVL_ERR_CANCELLED && rc.n_ids == 2, "cancel %d: ended cancelled after 2 tokens", k);
            api_ask_result_free(&rc);
        }
        {
            track tc = {0};
            api_ask_result rc;
            run_together(e, &rq[2], 1, &tc, &rc);
            TEST_CHECK(tc.st == NVL_OK && same_ids(&rc, &alone[2]), "after 8 cancels a request still runs, equal alone");
            api_ask_result_free(&rc);
        }
        for (int i = 0; i < 3; i++) {
            api_ask_result_free(&alone[i]);
            api_ask_result_free(&tog[i]);
        }

        /* 3. one failing in vision while the others go on */
        make_req(&rq[0], img, NULL, "What is in this picture?", 10);
        make_req(&rq[1], pdf, "1", "What is the title?", 10);
        rq[1].p.dpi = 20000; /* opens (page size known); refused when rendered, in the vision stage */
        make_req(&rq[2], NULL, NULL, "Count to five.", 10);
        api_ask_result a0, a2;
        TEST_EQ_INT(api_engine_run(e, &rq[0].msg, 1, &rq[0].p, NULL, &a0, &err), NVL_OK);
        TEST_EQ_INT(api_engine_run(e, &rq[2].msg, 1, &rq[2].p, NULL, &a2, &err), NVL_OK);
        o.max_batch = 3;
        memset(t, 0, sizeof t);
        run_together(e, rq, 3, t, tog);
        TEST_EQ_INT(t[1].st, NVL_ERR_LIMIT);
        TEST_CHECK(strstr(t[1].msg, "two_pages.pdf") && strstr(t[1].msg, "page 1"), "vision failure names the file and page: %s",
                   t[1].msg);
        TEST_CHECK(t[1].first_progress > 0, "the failing request got to its media stage");
        TEST_CHECK(t[0].st == NVL_OK && same_ids(&tog[0], &a0), "beside a failure: image request equal alone");
        TEST_CHECK(t[2].st == NVL_OK && same_ids(&tog[2], &a2), "beside a failure: text request equal alone");
        api_ask_result_free(&a0);
        api_ask_result_free(&a2);
        for (int i = 0; i < 3; i++) api_ask_result_free(&tog[i]);
        api_engine_close(e);
        e = NULL;
    }

    /* 5. a slow file does not hold up the others: a long AV1 video (decoding its 128 sampled
     * frames takes a media thread a while) and a short text question submitted as the video
     * enters the vision stage (at its media progress event), which must end while the video's
     * frames are still coming. The same run without media threads (decoding on the stepping
     * thread, which then blocks every turn for the next frames) is the yardstick: there one
     * vision batch of 8 frames goes by in each of the text's ~7 turns, whatever the machine's
     * load; with media threads fewer (typically none: the text ends before the first batch of
     * frames is decoded; up to 5 seen on this 2-core machine with two busy loops beside it, where
     * an earlier fixed bound of 3 failed). */
    const char *longvid = test_shared_path("media/video/long_180p_av1.mp4");
    o.max_batch = 2;
    int watched[2] = {-1, -1}, n_vis[2] = {0, 0}; /* [0] media threads, [1] inline */
    for (int inl = 0; inl < 2 && longvid; inl++) {
        api_engine_opts ov = o;
        ov.media_threads = inl ? -1 : o.media_threads;
        if (api_engine_open_with(&e, test_data_path("vl_tiny"), &ov, &err) != NVL_OK) {
            TEST_CHECK(0, "%s", err.msg);
            break;
        }
        char lv[1024];
        snprintf(lv, sizeof lv, "%s", longvid);
        req rq[2];
        make_req(&rq[0], lv, NULL, "What happens?", 4);
        make_req(&rq[1], NULL, NULL, "Count to three.", 6);
        track t[2];
        memset(t, 0, sizeof t);
        api_ask_result res[2];
        t[1].watch = &t[0];
        t[0].then = &rq[1]; /* the text comes as the video enters the vision stage */
        t[0].then_t = &t[1];
        t[0].then_res = &res[1];
        run_together(e, rq, 1, t, res); /* (steps until the text, submitted on the way, ends too) */
        TEST_CHECK(t[1].done, "the text submitted on the way ended");
        TEST_CHECK(t[0].st == NVL_OK && t[1].st == NVL_OK, "video and text both answer (%s / %s)", t[0].msg, t[1].msg);
        watched[inl] = t[1].watched_vision;
        n_vis[inl] = t[0].n_vision;
        fprintf(stderr, "slow file (%s): the text ended after %d of the video's %d vision batches (%.3f s of media)\n",
                inl ? "no media threads" : "media threads", t[1].watched_vision, t[0].n_vision, res[0].t_media);
        for (int i = 0; i < 2; i++) api_ask_result_free(&res[i]);
        api_engine_close(e);
        e = NULL;
    }
    if (!longvid) {
        fprintf(stderr, "skip (5): ../shared/media/video/long_180p_av1.mp4 is absent\n");
    } else {
        TEST_CHECK(n_vis[0] >= 16 && n_vis[1] >= 16, "the video took 16 vision batches (%d, %d)", n_vis[0], n_vis[1]);
        TEST_CHECK(watched[1] >= 5, "without media threads the text waits for the video's batches (%d went by)", watched[1]);
        TEST_CHECK(watched[0] >= 0 && watched[0] < watched[1],
                   "the text answer ends while the video's frames are still coming: after %d vision batches with media "
                   "threads, %d without", watched[0], watched[1]);
    }

    /* 3b. a callback that re-enters its own engine: a blocking run is refused (its step would never
       come back), a step returns without running one; the answer is unharmed */
    TEST_EQ_INT(api_engine_open(&e, test_data_path("vl_tiny"), &err), NVL_OK);
    if (e) {
        reenter_state rs = {.e = e, .inner_st = NVL_OK};
        api_ask_params p = api_ask_params_default();
        p.max_tokens = 3;
        api_ask_result a, b;
        TEST_EQ_INT(api_engine_ask(e, NULL, 0, "Hello?", &p, NULL, NULL, &b, &err), NVL_OK);
        TEST_EQ_INT(api_engine_ask(e, NULL, 0, "Hello?", &p, reenter_on_token, &rs, &a, &err), NVL_OK);
        TEST_CHECK(rs.calls == 3, "on_token ran %d times", rs.calls);
        TEST_EQ_INT(rs.inner_st, NVL_ERR_INVALID_ARG);
        TEST_CHECK(strstr(rs.inner_msg, "from inside a step's callback") != NULL, "inner run refused: %s", rs.inner_msg);
        TEST_CHECK(rs.pending_after_step >= 1, "the inner step ran nothing (pending %d)", rs.pending_after_step);
        TEST_CHECK(same_ids(&a, &b), "the answer with a re-entering callback equals the plain one");
        api_ask_result_free(&a);
        api_ask_result_free(&b);
        api_engine_close(e);
        e = NULL;
    }

    /* 4. a memory budget no request fits */
    o.max_batch = 2;
    o.seq_mem_mb = 0.001;
    TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
    if (e) {
        req r;
        make_req(&r, NULL, NULL, "Hello?", 4);
        api_ask_result a;
        TEST_EQ_INT(api_engine_run(e, &r.msg, 1, &r.p, NULL, &a, &err), NVL_ERR_LIMIT);
        TEST_CHECK(strstr(err.msg, "MiB of sequence state") != NULL, "budget error names the memory: %s", err.msg);
        api_ask_result_free(&a);
        api_engine_close(e);
    }
    /* 6. a video through a ring of 2 frames, with an image; a video cancelled in vision */
    {
        req a, c, after;
        make_req(&a, vid, NULL, "What happens in the video and in the picture?", 6);
        a.parts[2] = a.parts[1];
        a.parts[1] = (api_part){.kind = API_PART_MEDIA, .media = {.path = img}};
        a.msg.n_parts = 3;
        a.p.fps = 10; /* clip_2s: its 20 frames (10 fps over 2 s) */
        a.p.evs = 0;
        make_req(&c, vid, NULL, "What happens?", 6);
        c.p.fps = 10;
        make_req(&after, vid, NULL, "And now?", 3);
        api_ask_result ref, res[2], ra;
        o.seq_mem_mb = 0;
        o.max_batch = 2;
        o.video_ahead = 64;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
        nvl_status st_ref = e ? api_engine_run(e, &a.msg, 1, &a.p, NULL, &ref, &err) : NVL_ERR_INVALID_ARG;
        TEST_CHECK(st_ref == NVL_OK, "video + image with every frame held: %s", st_ref == NVL_OK ? "ok" : err.msg);
        TEST_CHECK(st_ref != NVL_OK || (ref.n_media == 2 && ref.media[0].n_frames == 20),
                   "20 frames sampled (%d)", st_ref == NVL_OK && ref.n_media ? ref.media[0].n_frames : -1);
        api_engine_close(e);
        e = NULL;
        o.video_ahead = 2;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_OK);
        if (e && st_ref == NVL_OK) {
            req both[2] = {a, c};
            both[0].msg.parts = both[0].parts;
            both[1].msg.parts = both[1].parts;
            track t[2];
            memset(t, 0, sizeof t);
            t[1].cancel_in_vision = 1;
            run_together(e, both, 2, t, res);
            TEST_CHECK(t[0].st == NVL_OK && same_ids(&res[0], &ref), "ring of 2: ids equal the whole-video run (%s)", t[0].msg);
            if (t[0].st == NVL_OK) {
                test_compare_f32("ring of 2: logits after the prompt", res[0].first_logits, ref.first_logits, (size_t)V, 1e-5, 1e-4, 1e-10);
                int same_ts = res[0].n_media == 2 && res[0].media[0].n_frames == 20;
                for (int f = 0; same_ts && f < 20; f++)
                    same_ts = res[0].media[0].frame_ts[f] == ref.media[0].frame_ts[f] &&
                              res[0].media[0].frame_tokens[f] == ref.media[0].frame_tokens[f];
                TEST_CHECK(same_ts, "ring of 2: the same 20 frames, timestamps and tokens");
            }
            TEST_CHECK(t[1].st == NVL_ERR_CANCELLED, "the video cancelled in vision ends cancelled (%d: %s)", (int)t[1].st, t[1].msg);
            for (int i = 0; i < 2; i++) api_ask_result_free(&res[i]);
            TEST_EQ_INT(api_engine_run(e, &after.msg, 1, &after.p, NULL, &ra, &err), NVL_OK);
            api_ask_result_free(&ra);
        }
        if (st_ref == NVL_OK) api_ask_result_free(&ref);
        api_engine_close(e);
        e = NULL;
        o.video_ahead = -1;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);
        TEST_CHECK(strstr(err.msg, "video_ahead") != NULL, "the error names video_ahead: %s", err.msg);
        o.video_ahead = 0;
        o.vision_batch = 17;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);
        TEST_CHECK(strstr(err.msg, "vision_batch") != NULL, "the error names vision_batch: %s", err.msg);
        o.vision_batch = 8;
        o.prefill_chunk = 8;
        TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);
        TEST_CHECK(strstr(err.msg, "prefill_chunk") != NULL, "the error names prefill_chunk: %s", err.msg);
        o.prefill_chunk = 256;
    }

    /* 6b. two videos in one request, the second (10 frames) ending while the first (20) still
     * decodes, through rings of 4 without media threads: the second is finished once (it was
     * finished again at every later turn that reached it: EVS on freed rows), and the answer
     * equals the engine with media threads and rings holding every frame (ids; logits within the
     * bound above: RADIO batches group the frames differently) */
    {
        char rot[1024];
        snprintf(rot, sizeof rot, "%s", test_data_path("media/made/rotated.mp4"));
        req two;
        make_req(&two, vid, NULL, "What happens in these two videos?", 4);
        two.parts[2] = two.parts[1];
        two.parts[1] = (api_part){.kind = API_PART_MEDIA, .media = {.path = rot}};
        two.msg.n_parts = 3;
        two.p.fps = 10;
        two.p.evs = 0.5;
        api_ask_result ra, rb;
        nvl_status sa = NVL_ERR_INVALID_ARG, sb = NVL_ERR_INVALID_ARG;
        o.max_batch = 1;
        o.video_ahead = 64;
        o.media_threads = 0;
        if (api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err) == NVL_OK) {
            sa = api_engine_run(e, &two.msg, 1, &two.p, NULL, &ra, &err);
            api_engine_close(e);
            e = NULL;
        }
        TEST_CHECK(sa == NVL_OK, "two videos, every frame held: %s", sa == NVL_OK ? "ok" : err.msg);
        o.video_ahead = 4;
        o.media_threads = -1;
        if (api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err) == NVL_OK) {
            sb = api_engine_run(e, &two.msg, 1, &two.p, NULL, &rb, &err);
            api_engine_close(e);
            e = NULL;
        }
        TEST_CHECK(sb == NVL_OK, "two videos, rings of 4, no media threads: %s", sb == NVL_OK ? "ok" : err.msg);
        if (sa == NVL_OK && sb == NVL_OK) {
            TEST_CHECK(ra.n_media == 2 && rb.n_media == 2 && ra.media[0].n_frames == 20 && ra.media[1].n_frames == 10 &&
                           rb.media[0].n_frames == 20 && rb.media[1].n_frames == 10,
                       "20 and 10 frames both ways");
            TEST_CHECK(same_ids(&ra, &rb) && ra.n_prompt == rb.n_prompt, "two videos: the same prompt and answer both ways");
            test_compare_f32("two videos: logits after the prompt", rb.first_logits, ra.first_logits, (size_t)V, 1e-5, 1e-4, 1e-10);
        }
        if (sa == NVL_OK) api_ask_result_free(&ra);
        if (sb == NVL_OK) api_ask_result_free(&rb);
        o.video_ahead = 0;
        o.media_threads = 0;
    }

    /* 8. questions about one image sent together share its vision and prefill: files read one
     * request per turn (media_threads -1) and a few tiles per RADIO call, so the first request's
     * image is still being embedded when the next ones reach the vision stage:
     *   a. the first computes it; the second and third wait (t_wait > 0) and restore its kept
     *      prefix (n_cached, the same for both); the fourth has a system message before the image
     *      (another prefix) and neither waits nor restores; every answer equals the question
     *      asked alone without the kept state (ids; logits after the prompt within the f32 bound);
     *   b. the first is cancelled while the other two wait (at a later request's media event):
     *      the second computes it after all (n_cached 0, having waited), the third waits for the
     *      second and restores its prefix; both equal alone. */
    for (int run = 0; run < 4; run++) {
        /* c. (run 2) NANOVL_KEEP_MB=0 keeps nothing, so nothing is waited for: all compute at once
         * d. (run 3) a prefix kept earlier for the same image after a system message (another
         *    preamble) does not stop the plain questions sent together from sharing theirs */
        o.max_batch = 8;
        o.media_threads = -1;
        o.vision_batch = run == 1 ? 1 : 2;
        if (run == 2) setenv("NANOVL_KEEP_MB", "0", 1);
        const nvl_status ost = api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err);
        unsetenv("NANOVL_KEEP_MB");
        if (ost != NVL_OK) {
            TEST_CHECK(0, "open: %s", err.msg);
            break;
        }
        char tiff[1024];
        snprintf(tiff, sizeof tiff, "%s", test_data_path("media/made/image.tiff"));
        req rq[4];
        make_req(&rq[0], img, NULL, "What is in this picture?", 6);
        make_req(&rq[1], img, NULL, "Which colours do you see?", 6);
        make_req(&rq[2], img, NULL, "How many objects are there?", 6);
        api_message sys[2];
        api_part sys_text = {.kind = API_PART_TEXT, .text = "Answer in one word."};
        if (run != 1) {
            make_req(&rq[3], img, NULL, "What is in this picture?", 6);
            sys[0] = (api_message){"system", &sys_text, 1};
            sys[1] = rq[3].msg;
        } else {
            make_req(&rq[3], tiff, NULL, "And this one?", 6); /* its media event cancels the first */
        }
        const int with_sys = run != 1; /* rq[3] is the system-message question */
        for (int i = 0; i < 4; i++) rq[i].p.no_cache = 0;
        api_ask_result alone[4], tog[4];
        track t[4];
        memset(t, 0, sizeof t);
        for (int i = 0; i < 4; i++) {
            api_ask_params nc = rq[i].p;
            nc.no_cache = 1;
            const api_message *m = with_sys && i == 3 ? sys : &rq[i].msg;
            TEST_EQ_INT(api_engine_run(e, m, with_sys && i == 3 ? 2 : 1, &nc, NULL, &alone[i], &err), NVL_OK);
        }
        if (run == 3) { /* the system-message question first, alone: its prefix is kept */
            api_ask_result r;
            TEST_EQ_INT(api_engine_run(e, sys, 2, &rq[3].p, NULL, &r, &err), NVL_OK);
            api_ask_result_free(&r);
        }
        for (int i = 0; i < (run == 3 ? 3 : 4); i++) {
            api_callbacks cb = {.on_token = on_token, .on_progress = on_progress, .on_done = on_done, .user = &t[i]};
            t[i].e = e;
            const api_message *m = with_sys && i == 3 ? sys : &rq[i].msg;
            TEST_EQ_INT(api_engine_submit(e, m, with_sys && i == 3 ? 2 : 1, &rq[i].p, &cb, &tog[i], &t[i].id, &err), NVL_OK);
        }
        if (run == 1) t[3].cancel_other = &t[0];
        for (int guard = 0; api_engine_step(e) > 0 && guard < 20000; guard++) {
        }
        const char *what = run == 1   ? "shared prefix, first cancelled"
                           : run == 2 ? "nothing kept (NANOVL_KEEP_MB=0)"
                           : run == 3 ? "shared prefix beside another kept one"
                                      : "shared prefix";
        for (int i = run == 1; i < (run == 3 ? 3 : 4); i++) {
            TEST_CHECK(t[i].done && t[i].st == NVL_OK, "%s: request %d ends NVL_OK (%s)", what, i, t[i].msg);
            if (t[i].st != NVL_OK) continue;
            TEST_CHECK(same_ids(&tog[i], &alone[i]), "%s: request %d's answer equals alone", what, i);
            char lw[96];
            snprintf(lw, sizeof lw, "%s: request %d's logits after the prompt", what, i);
            test_compare_f32(lw, tog[i].first_logits, alone[i].first_logits, (size_t)V, 1e-5, 1e-4, 1e-10);
        }
        if (!run && t[0].st == NVL_OK && t[1].st == NVL_OK && t[2].st == NVL_OK && t[3].st == NVL_OK) {
            TEST_CHECK(tog[0].n_cached == 0 && tog[0].t_wait == 0, "the first computes its prefix (n_cached %lld)",
                       (long long)tog[0].n_cached);
            for (int i = 1; i < 3; i++)
                TEST_CHECK(tog[i].t_wait > 0 && tog[i].n_cached > 0 && tog[i].n_cached == tog[1].n_cached &&
                               tog[i].n_media == 1 && tog[i].media[0].cached,
                           "request %d waited (%.4f s) and restored the first's prefix (%lld tokens)", i, tog[i].t_wait,
                           (long long)tog[i].n_cached);
            TEST_CHECK(tog[3].t_wait == 0 && tog[3].n_cached == 0,
                       "a system message before the image: another prefix, no wait (%.4f s, %lld restored)", tog[3].t_wait,
                       (long long)tog[3].n_cached);
        }
        if (run == 2)
            for (int i = 0; i < 4; i++)
                TEST_CHECK(tog[i].t_wait == 0 && tog[i].n_cached == 0, "%s: request %d neither waits (%.4f s) nor restores", what,
                           i, tog[i].t_wait);
        if (run == 3 && t[0].st == NVL_OK && t[1].st == NVL_OK && t[2].st == NVL_OK) {
            TEST_CHECK(tog[0].n_cached == 0, "%s: the first computes its own", what);
            for (int i = 1; i < 3; i++)
                TEST_CHECK(tog[i].t_wait > 0 && tog[i].n_cached > 0, "%s: request %d waited (%.4f s) and restored (%lld)", what, i,
                           tog[i].t_wait, (long long)tog[i].n_cached);
        }
        if (run == 1) {
            TEST_EQ_INT(t[0].st, NVL_ERR_CANCELLED);
            if (t[1].st == NVL_OK && t[2].st == NVL_OK) {
                TEST_CHECK(tog[1].t_wait > 0 && tog[1].n_cached == 0,
                           "the second waited (%.4f s), then computed the prefix itself (%lld restored)", tog[1].t_wait,
                           (long long)tog[1].n_cached);
                TEST_CHECK(tog[2].t_wait > 0 && tog[2].n_cached > 0, "the third restored the second's prefix (%lld tokens)",
                           (long long)tog[2].n_cached);
            }
        }
        for (int i = 0; i < 4; i++) {
            api_ask_result_free(&alone[i]);
            if ((run != 3 || i < 3) && (t[i].st == NVL_OK || t[i].st == NVL_ERR_CANCELLED)) api_ask_result_free(&tog[i]);
        }
        api_engine_close(e);
        e = NULL;
    }
    o.media_threads = 0;
    o.vision_batch = 8;

    o.seq_mem_mb = -1;
    TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);
    o.seq_mem_mb = 0;
    o.max_batch = 0;
    TEST_EQ_INT(api_engine_open_with(&e, test_data_path("vl_tiny"), &o, &err), NVL_ERR_INVALID_ARG);

    TEST_EQ_INT(nvl_alloc_count(), live0);
    return test_report();
}
