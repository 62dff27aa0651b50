/* The engine: loads a whole VL checkpoint (LM, RADIO, mlp1, tokenizer, generation config) and
 * answers a question about files: media -> vision -> tokenreduce -> prompt -> llm. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "base/alloc.h"
#include "chat.h"
#include "llm.h"
#include "media.h"
#include "tokenizer.h"
#include "tokenreduce.h"
#include "vision.h"

struct api_engine {
    llm_model *lm;
    vision_model *vm;
    nvl_checkpoint *ck; /* for the projector views */
    tokred_projector proj;
    llm_tokenizer *tok;
};

api_ask_params api_ask_params_default(void) {
    api_ask_params p;
    memset(&p, 0, sizeof p);
    p.fps = 2.0;
    p.max_frames = 128;
    p.evs = -1;
    p.think = -1;
    p.max_tokens = 1024;
    p.sampler = llm_sampler_params_default();
    return p;
}

void api_ask_result_free(api_ask_result *r) {
    if (!r) return;
    nvl_free(r->prompt_ids);
    nvl_free(r->ids);
    nvl_free(r->first_logits);
    memset(r, 0, sizeof *r);
}

void api_engine_close(api_engine *e) {
    if (!e) return;
    llm_model_free(e->lm);
    vision_model_free(e->vm);
    nvl_checkpoint_close(e->ck);
    llm_tokenizer_free(e->tok);
    nvl_free(e);
}

int64_t api_engine_n_vocab(const api_engine *e) { return llm_model_hparams(e->lm)->n_vocab; }
const llm_tokenizer *api_engine_tokenizer(const api_engine *e) { return e->tok; }

nvl_status api_engine_open(api_engine **out, const char *dir, nvl_err *err) {
    *out = NULL;
    api_engine *e = nvl_calloc(1, sizeof *e);
    if (!e) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    nvl_status st;
    if ((st = llm_model_init(&e->lm, dir, NULL, err)) != NVL_OK ||
        (st = vision_model_init(&e->vm, dir, err)) != NVL_OK ||
        (st = nvl_checkpoint_open(&e->ck, dir, err)) != NVL_OK ||
        (st = tokred_projector_bind(&e->proj, e->ck, 4 * vision_model_width(e->vm), llm_model_hparams(e->lm)->n_embd, err)) != NVL_OK ||
        (st = llm_tokenizer_load(&e->tok, dir, err)) != NVL_OK || (st = llm_tokenizer_check_vl(e->tok, err)) != NVL_OK) {
        api_engine_close(e);
        return st;
    }
    if (llm_tokenizer_vocab_size(e->tok) > llm_model_hparams(e->lm)->n_vocab) {
        st = nvl_err_set(err, NVL_ERR_CONFIG, "%s: the tokenizer has %lld ids but the model's vocabulary %lld", dir,
                         (long long)llm_tokenizer_vocab_size(e->tok), (long long)llm_model_hparams(e->lm)->n_vocab);
        api_engine_close(e);
        return st;
    }
    *out = e;
    return NVL_OK;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One media item of the prompt: an image (its tiles) or a video (its frames). */
typedef struct item {
    enum llm_media_kind kind;
    float *rows;    /* (n_rows, C) LLM-space rows in prompt order */
    int64_t n_rows;
    int n_tiles;    /* image */
    int n_frames;   /* video */
    double *ts;
    int *kept;
} item;

static nvl_status add_image(api_engine *e, const media_image *img, const api_ask_params *p, item *it, nvl_err *err) {
    const vision_vl_config *vc = vision_model_config(e->vm);
    float *tiles = NULL;
    int n = 0;
    nvl_status st = vision_make_tiles(img->rgb, img->width, img->height, img->stride, vc,
                                      p->max_tiles > 0 ? p->max_tiles : (int)vc->max_num_tiles, &tiles, &n, NULL, NULL, err);
    if (st != NVL_OK) return st;
    const int64_t G = vision_model_grid(e->vm), Q = (G / 2) * (G / 2);
    it->kind = LLM_MEDIA_IMAGE;
    it->n_tiles = n;
    it->n_rows = n * Q;
    it->rows = nvl_malloc((size_t)(it->n_rows * e->proj.out) * sizeof(float));
    st = it->rows ? tokred_embed_tiles(e->vm, &e->proj, tiles, n, it->rows, err) : nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    nvl_free(tiles);
    return st;
}

static nvl_status add_video(api_engine *e, const char *path, const api_ask_params *p, item *it, nvl_err *err) {
    media_video_params vp = media_video_params_default();
    vp.fps = p->fps > 0 ? p->fps : 2.0;
    vp.max_frames = p->max_frames > 0 ? p->max_frames : 128;
    media_frames *f = NULL;
    nvl_status st = media_video_sample(path, &vp, NULL, &f, err);
    if (st != NVL_OK) return st;
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t S = vc->image_size, G = vision_model_grid(e->vm), Q = (G / 2) * (G / 2), C = e->proj.out;
    const int n = f->n;
    float *tiles = nvl_malloc((size_t)n * 3 * (size_t)(S * S) * sizeof(float));
    float *all = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
    uint8_t *keep = nvl_malloc((size_t)(n * Q));
    it->kind = LLM_MEDIA_VIDEO;
    it->n_frames = n;
    it->ts = nvl_malloc((size_t)n * sizeof(double));
    it->kept = nvl_malloc((size_t)n * sizeof(int));
    it->rows = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
    if (!tiles || !all || !keep || !it->ts || !it->kept || !it->rows) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n && st == NVL_OK; i++) { /* one 512 tile per frame, no thumbnail */
        float *t = NULL;
        int nt = 0;
        st = vision_make_tiles(f->frames[i]->rgb, f->frames[i]->width, f->frames[i]->height, f->frames[i]->stride, vc, 1,
                               &t, &nt, NULL, NULL, err);
        if (st == NVL_OK) memcpy(tiles + (size_t)i * 3 * S * S, t, (size_t)(3 * S * S) * sizeof(float));
        nvl_free(t);
        /* model.md §6.3: ts = frame_index * int(1000 / native_fps) / 1000 */
        it->ts[i] = (double)f->frames[i]->index * (double)(int)(1000.0 / f->native_fps) / 1000.0;
    }
    if (st != NVL_OK || (st = tokred_embed_tiles(e->vm, &e->proj, tiles, n, all, err)) != NVL_OK) goto done;
    const double q = p->evs >= 0 ? p->evs : vc->video_pruning_rate;
    if ((st = tokred_evs_mask(all, n, Q, C, q, 0, keep, it->kept, err)) != NVL_OK) goto done;
    for (int64_t r = 0; r < n * Q; r++)
        if (keep[r]) memcpy(it->rows + (it->n_rows++) * C, all + r * C, (size_t)C * sizeof(float));
done:
    nvl_free(tiles);
    nvl_free(all);
    nvl_free(keep);
    media_frames_free(f);
    return st;
}

static void items_free(item *items, int n) {
    for (int i = 0; i < n; i++) {
        nvl_free(items[i].rows);
        nvl_free(items[i].ts);
        nvl_free(items[i].kept);
    }
    nvl_free(items);
}

nvl_status api_engine_ask(api_engine *e, const char *const *files, int n_files, const char *question,
                          const api_ask_params *pp, llm_token_fn on_token, void *user, api_ask_result *res,
                          nvl_err *err) {
    memset(res, 0, sizeof *res);
    api_ask_params p = pp ? *pp : api_ask_params_default();
    const int64_t C = llm_model_hparams(e->lm)->n_embd;
    int cap = 16, n_items = 0;
    item *items = nvl_calloc((size_t)cap, sizeof *items);
    llm_chat_part *parts = NULL;
    llm_media_layout *layout = NULL;
    char *text = NULL;
    llm_prompt prompt = {0};
    float *embd = NULL;
    uint8_t *mask = NULL;
    llm_context *ctx = NULL;
    nvl_status st = items ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    double t0 = now();
    /* media -> items (vision runs per item) */
    for (int f = 0; f < n_files && st == NVL_OK; f++) {
        enum media_kind k;
        if ((st = media_sniff_file(files[f], &k, err)) != NVL_OK) break;
        if (k == MEDIA_KIND_PDF) {
            media_pdf *pdf = NULL;
            int *pages = NULL, np = 0;
            st = media_pdf_open(&pdf, files[f], NULL, NULL, err);
            if (st == NVL_OK) st = media_pdf_select_pages(pdf, p.pages, &pages, &np, err);
            for (int i = 0; i < np && st == NVL_OK; i++) {
                media_image *img = NULL;
                if (n_items == cap) {
                    item *ni = nvl_realloc(items, (size_t)(cap *= 2) * sizeof *ni);
                    if (!ni) { st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory"); break; }
                    items = ni;
                }
                memset(&items[n_items], 0, sizeof items[n_items]);
                st = media_pdf_render(pdf, pages[i], p.dpi, p.long_side, &img, err);
                double tv = now();
                if (st == NVL_OK) st = add_image(e, img, &p, &items[n_items++], err);
                res->t_vision += now() - tv;
                media_image_free(img);
            }
            nvl_free(pages);
            media_pdf_close(pdf);
            continue;
        }
        if (n_items == cap) {
            item *ni = nvl_realloc(items, (size_t)(cap *= 2) * sizeof *ni);
            if (!ni) { st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory"); break; }
            items = ni;
        }
        memset(&items[n_items], 0, sizeof items[n_items]);
        double tv = now();
        if (k == MEDIA_KIND_VIDEO) {
            st = add_video(e, files[f], &p, &items[n_items++], err);
        } else {
            media_image *img = NULL;
            st = media_decode_image_file(files[f], NULL, &img, err);
            tv = now();
            if (st == NVL_OK) st = add_image(e, img, &p, &items[n_items++], err);
            media_image_free(img);
        }
        res->t_vision += now() - tv;
    }
    res->t_media = now() - t0 - res->t_vision;
    if (st != NVL_OK) goto done;
    /* prompt: one user turn, media parts first, then the question */
    parts = nvl_calloc((size_t)n_items + 1, sizeof *parts);
    layout = nvl_calloc((size_t)n_items + 1, sizeof *layout);
    if (!parts || !layout) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    for (int i = 0; i < n_items; i++) {
        parts[i].kind = items[i].kind == LLM_MEDIA_IMAGE ? LLM_PART_IMAGE : LLM_PART_VIDEO;
        layout[i] = (llm_media_layout){.kind = items[i].kind, .n_tiles = items[i].n_tiles, .n_frames = items[i].n_frames,
                                       .ts = items[i].ts, .kept = items[i].kept};
    }
    parts[n_items].kind = LLM_PART_TEXT;
    parts[n_items].text = question;
    llm_chat_message msg = {"user", parts, n_items + 1};
    llm_chat_options co = llm_chat_options_default();
    co.think = p.think;
    size_t tl = 0;
    const int64_t G = vision_model_grid(e->vm);
    if ((st = llm_chat_render(&msg, 1, &co, &text, &tl, err)) != NVL_OK ||
        (st = llm_chat_tokenize(e->tok, text, tl, layout, n_items, (int)((G / 2) * (G / 2)), &prompt, err)) != NVL_OK)
        goto done;
    /* vision rows at the <image> positions */
    embd = nvl_calloc((size_t)(prompt.n * C), sizeof(float));
    mask = nvl_calloc((size_t)prompt.n, 1);
    if (!embd || !mask) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory for a %lld-token prompt", (long long)prompt.n);
        goto done;
    }
    /* rows of an item are consumed in order across its spans (a video's frames) */
    int64_t *used = nvl_calloc((size_t)n_items + 1, sizeof *used);
    if (!used) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    for (int s = 0; s < prompt.n_spans; s++) {
        const llm_media_span *sp = &prompt.spans[s];
        const item *it = &items[sp->media];
        const int64_t off = used[sp->media];
        for (int64_t r = 0; r < sp->count && off + r < it->n_rows; r++) {
            memcpy(embd + (sp->start + r) * C, it->rows + (off + r) * C, (size_t)C * sizeof(float));
            mask[sp->start + r] = 1;
        }
        used[sp->media] += sp->count;
        res->n_image_tokens += sp->count;
    }
    nvl_free(used);
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = prompt.n + p.max_tokens + 1;
    if ((st = llm_context_init(&ctx, e->lm, &cp, err)) != NVL_OK) goto done;
    double tp = now();
    if ((st = llm_prefill(ctx, prompt.ids, prompt.n, embd, mask, err)) != NVL_OK) goto done;
    res->t_prefill = now() - tp;
    const int64_t V = llm_model_hparams(e->lm)->n_vocab;
    res->first_logits = nvl_malloc((size_t)V * sizeof(float));
    res->ids = nvl_malloc((size_t)(p.max_tokens > 0 ? p.max_tokens : 1) * sizeof(int32_t));
    if (!res->first_logits || !res->ids) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    memcpy(res->first_logits, llm_logits(ctx), (size_t)V * sizeof(float));
    int32_t stop[18];
    const int n_stop = llm_chat_stop_ids(e->lm, e->tok, stop, 18);
    llm_generate_params gp = llm_generate_params_default();
    gp.max_tokens = p.max_tokens;
    gp.sampler = p.sampler;
    gp.stop_ids = stop;
    gp.n_stop = n_stop;
    gp.on_token = on_token;
    gp.user = user;
    double tg = now();
    st = llm_generate(ctx, NULL, 0, &gp, res->ids, p.max_tokens, &res->n_ids, err);
    res->t_generate = now() - tg;
    res->prompt_ids = prompt.ids;
    res->n_prompt = prompt.n;
    prompt.ids = NULL;
done:
    llm_context_free(ctx);
    nvl_free(embd);
    nvl_free(mask);
    llm_prompt_free(&prompt);
    nvl_free(text);
    nvl_free(parts);
    nvl_free(layout);
    items_free(items, n_items);
    if (st != NVL_OK && st != NVL_ERR_CANCELLED) {
        api_ask_result_free(res);
    }
    return st;
}
