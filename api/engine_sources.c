/* The engine's first stages (engine_impl.h): a request's media parts become sources (an image,
 * a PDF page, a video) each with a key naming exactly what its vision rows depend on; the tiles
 * per image are lowered until the prompt fits the context budget; the conversation is rendered
 * with the sources' layouts and tokenized. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "engine_impl.h"
#include "wire.h"
#include "base/clock.h"

static source *new_source(request *rq, nvl_err *err) {
    if (rq->n_src == rq->cap_src) {
        int nc = rq->cap_src ? rq->cap_src * 2 : 8;
        source *ns = nvl_realloc(rq->src, (size_t)nc * sizeof *ns);
        if (!ns) {
            nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
            return NULL;
        }
        rq->src = ns;
        rq->cap_src = nc;
    }
    source *s = &rq->src[rq->n_src++];
    memset(s, 0, sizeof *s);
    s->page = -1;
    s->pdf = -1;
    return s;
}

/* The identity of a media's bytes: real path, size, modification time, device, inode and change
 * time; or a hash of inline bytes. */
static nvl_status media_identity(const api_media *m, char **out, nvl_err *err) {
    *out = NULL;
    if (m->path) {
        struct stat sb;
        if (stat(m->path, &sb) != 0)
            return nvl_err_set(err, errno == ENOENT ? NVL_ERR_NOT_FOUND : NVL_ERR_IO, "%s: %s", m->path, strerror(errno));
        char *rp = realpath(m->path, NULL);
        /* (the inode and its change time too: a file rewritten with its size and modification time
           kept -- cp -p, rsync -t, an archive unpacked -- got the earlier file's kept state and
           answer; a review) */
        *out = engine_printf("f:%s:%lld:%lld.%09ld:%llu:%llu:%lld.%09ld", rp ? rp : m->path, (long long)sb.st_size,
                             (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec, (unsigned long long)sb.st_dev,
                             (unsigned long long)sb.st_ino, (long long)sb.st_ctim.tv_sec, (long)sb.st_ctim.tv_nsec);
        free(rp);
    } else {
        *out = engine_printf("b:%016llx:%zu", (unsigned long long)nvl_fnv1a(NVL_FNV1A_INIT, m->data, m->size), m->size);
    }
    return *out ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
}

/* PDF and video readers take paths: bytes go through a private temporary file, removed with
 * the request. */
static nvl_status bytes_to_tmp(request *rq, const api_media *m, const char **path, nvl_err *err) {
    char **nt = nvl_realloc(rq->tmp, (size_t)(rq->n_tmp + 1) * sizeof *nt);
    if (!nt) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    rq->tmp = nt;
    char *tmp = NULL;
    nvl_status st = api_bytes_to_tmp(m->data, m->size, m->name ? m->name : "bytes", &tmp, err);
    if (st != NVL_OK) return st;
    rq->tmp[rq->n_tmp++] = tmp;
    *path = tmp;
    return NVL_OK;
}

/* 1 when the lt bytes at c in msg stand as a path does in a message: at the start or after a
 * space, quote or parenthesis, and at the end or before a colon, quote, comma or parenthesis
 * ("PATH: ...", "'PATH'"; not before a space: a path "a" is not the word in "is a directory") */
static int whole_path_at(const char *msg, const char *c, size_t lt) {
    return (c == msg || strchr(" '\"(", c[-1])) && (!c[lt] || strchr(":'\",)", c[lt]));
}

/* An error about a private temporary file (or a path given a name of its own) names the media
 * part instead (its name, or "bytes"): every occurrence of the temporary path is replaced, and of
 * a given path where it stands as a path (a path "a" is not a part of "damaged"); a message
 * without it, or a path that is its own name, is left as it is. 1 when one was replaced. */
int engine_unname_tmp(nvl_err *err, const char *tmp, const char *name) {
    if (!err || !tmp || !*tmp || !strcmp(tmp, name) || !strstr(err->msg, tmp)) return 0;
    int n = 0;
    char out[sizeof err->msg];
    size_t o = 0;
    const size_t lt = strlen(tmp), ln = strlen(name);
    /* our own (a temporary file's, a descriptor's) cannot be a word of the message: wherever it is,
       unless more of a longer one follows ("/proc/self/fd/1" in ".../12") */
    const int own = !strncmp(tmp, "/proc/self/fd/", 14) || strstr(tmp, "/nanovl-");
    for (const char *c = err->msg; *c && o + 1 < sizeof out;) {
        if (!strncmp(c, tmp, lt) && (own ? !isalnum((unsigned char)c[lt]) : whole_path_at(err->msg, c, lt))) {
            n++;
            size_t k = ln < sizeof out - 1 - o ? ln : sizeof out - 1 - o;
            memcpy(out + o, name, k);
            o += k;
            c += lt;
        } else {
            out[o++] = *c++;
        }
    }
    out[o] = '\0';
    memcpy(err->msg, out, o + 1);
    return n > 0;
}

int engine_is_tmp(const request *rq, const char *path) {
    for (int i = 0; path && i < rq->n_tmp; i++)
        if (rq->tmp[i] == path || !strcmp(rq->tmp[i], path)) return 1;
    return 0;
}

media_video_params engine_video_params(const api_ask_params *p) {
    media_video_params vp = media_video_params_default();
    vp.fps = p->fps > 0 ? p->fps : 2.0;
    vp.max_frames = p->max_frames > 0 ? p->max_frames : 128;
    return vp;
}

/* media_pdf's and media_video's cancel callback: the request's cancel (any thread) */
static int media_cancelled(void *rq) { return engine_media_cancelled(rq); }

nvl_status engine_add_media(request *rq, const api_media *m, int msg, int part, nvl_err *err) {
    const api_ask_params *p = rq->p;
    const char *name = m->name ? m->name : m->path ? m->path : "bytes";
    if (!m->path && !m->data) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: a media part needs a path or bytes", name);
    enum media_kind k;
    nvl_status st;
    if (m->path) {
        if ((st = media_sniff_file(m->path, &k, err)) != NVL_OK) {
            engine_unname_tmp(err, m->path, name);
            return st;
        }
    } else {
        k = media_sniff(m->data, m->size);
    }
    if (k == MEDIA_KIND_UNKNOWN) return media_err_unrecognised(name, m->data, m->size, m->path, err);
    char *id = NULL;
    if ((st = media_identity(m, &id, err)) != NVL_OK) {
        engine_unname_tmp(err, m->path, name);
        return st;
    }
    const char *path = m->path;
    if (k == MEDIA_KIND_PDF || k == MEDIA_KIND_VIDEO) {
        if (!path) st = bytes_to_tmp(rq, m, &path, err);
    }
    if (st != NVL_OK) goto out;
    if (k == MEDIA_KIND_PDF) {
        media_pdf **np = nvl_realloc(rq->pdfs, (size_t)(rq->n_pdfs + 1) * sizeof *np);
        if (!np) {
            st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
            goto out;
        }
        rq->pdfs = np;
        media_pdf *pdf = NULL;
        if ((st = media_pdf_open_cancellable(&pdf, path, m->password ? m->password : p->password, NULL, media_cancelled, rq,
                                             err)) != NVL_OK) {
            api_password_hint(st, err);
            goto out;
        }
        rq->pdfs[rq->n_pdfs++] = pdf; /* (a cancel stops its opening and each page in the renderer) */
        int *pages = NULL, np_ = 0;
        st = media_pdf_select_pages(pdf, m->pages ? m->pages : p->pages, &pages, &np_, err);
        for (int i = 0; i < np_ && st == NVL_OK; i++) {
            source *s = new_source(rq, err);
            if (!s) { st = NVL_ERR_NOMEM; break; }
            s->name = name;
            s->path = path;
            s->pdf = rq->n_pdfs - 1;
            s->page = pages[i];
            s->msg = msg;
            s->part = part;
            double wpt = 0, hpt = 0;
            if ((st = media_pdf_page_size(pdf, pages[i], &wpt, &hpt, err)) != NVL_OK) {
                engine_unname_tmp(err, path, name);
                if (!engine_skip_page(rq, s, st, err)) break;
                rq->n_src--; /* (the last source, nothing of it allocated yet) */
                st = NVL_OK;
                continue;
            }
            if (p->dpi > 0) {
                s->w = wpt * p->dpi / 72.0;
                s->h = hpt * p->dpi / 72.0;
            } else {
                const double ls = p->long_side > 0 ? p->long_side : MEDIA_PDF_DEFAULT_LONG_SIDE;
                const double sc = ls / (wpt > hpt ? wpt : hpt);
                s->w = wpt * sc;
                s->h = hpt * sc;
            }
            s->base_key = engine_printf("%s:p%d:dpi%g:ls%d", id, pages[i], p->dpi, p->long_side);
            if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        }
        nvl_free(pages);
    } else if (k == MEDIA_KIND_VIDEO) {
        source *s = new_source(rq, err);
        if (!s) { st = NVL_ERR_NOMEM; goto out; }
        s->name = name;
        s->path = path;
        s->is_video = 1;
        s->msg = msg;
        s->part = part;
        const double q = p->evs >= 0 ? p->evs : vision_model_config(rq->e->vm)->video_pruning_rate;
        s->base_key = engine_printf("%s:v:fps%g:mf%d:q%g", id, p->fps, p->max_frames, q);
        if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        /* the sample is planned now (the budget needs the number of frames); the frames are
         * decoded in the vision stage, a few ahead of RADIO (engine_video_decode) */
        media_video_params vp = engine_video_params(p);
        vp.cancelled = media_cancelled; /* a cancel stops the packet scan and the decoding between frames */
        vp.cancel_ctx = rq;
        /* (the message names the file: a path's own name, bytes' label put in for their
           temporary file's at out) */
        if (st == NVL_OK) st = media_video_open(path, &vp, NULL, &s->video, err);
        if (st == NVL_OK) {
            s->n_planned = media_video_get_info(s->video)->n_planned;
            s->native_fps = media_video_get_info(s->video)->native_fps;
            int64_t idx = 0;
            double t = 0;
            for (int f = 0; f < s->n_planned && !s->ts_real && media_video_planned(s->video, f, &idx, &t); f++)
                s->ts_real = !(s->native_fps > 0) || fabs(t - (double)idx / s->native_fps) > 0.5 / s->native_fps;
            s->frames_read = media_video_get_info(s->video)->total_frames;
            s->frames_listed = media_video_get_info(s->video)->listed_frames;
        }
    } else {
        source *s = new_source(rq, err);
        if (!s) { st = NVL_ERR_NOMEM; goto out; }
        s->name = name;
        s->msg = msg;
        s->part = part;
        /* (a cancel stops the image decoder process) */
        uint8_t *buf = NULL;
        size_t len = 0;
        st = m->path ? media_read_file(m->path, NULL, &buf, &len, err) : NVL_OK;
        if (st == NVL_OK) s->image_frames = media_image_frames(m->path ? buf : m->data, m->path ? len : m->size);
        if (st == NVL_OK)
            st = media_decode_image_cancellable(m->path ? buf : m->data, m->path ? len : m->size, name,
                                                NULL, media_cancelled, rq, &s->img, err);
        nvl_free(buf);
        if (st == NVL_OK) {
            s->w = s->img->width;
            s->h = s->img->height;
            s->base_key = engine_printf("%s:i", id);
            if (!s->base_key) st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        }
    }
out:
    if (st != NVL_OK) engine_unname_tmp(err, path, name); /* (bytes' copy, or a named path) */
    nvl_free(id);
    return st;
}

// ---------------------------------------------------------------------------
// Budget

static int tiles_for(const request *rq, const source *s, int max_tiles) {
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    int cols = 1, rows = 1;
    int w = (int)lround(s->w), h = (int)lround(s->h);
    vision_tile_grid(w > 0 ? w : 1, h > 0 ? h : 1, max_tiles, (int)vc->image_size, &cols, &rows);
    const int n = cols * rows;
    return n + (vc->use_thumbnail && n > 1 ? 1 : 0);
}

/* Frames a video source has (planned with the media: an upper bound; max_frames only when unknown). */
static int video_frames(const request *rq, const source *s) {
    if (s->n_planned > 0) return s->n_planned;
    if (s->n_frames > 0) return s->n_frames;
    return rq->p->max_frames > 0 ? rq->p->max_frames : 128;
}

/* Upper bound of the tokens a video's frames take (their rows are made later, in the vision
 * step). With the video planned (its frames' indices and times known): each planned frame's
 * "Frame N sampled at S seconds: " tokenized as the prompt builder will write it, <img> </img>,
 * and the <image> tokens EVS keeps over all of them (tokenreduce/evs.c: max(Q, int(Q F (1 - q))));
 * exact when every planned frame decodes (a variable-rate gap can drop some). Before: per frame
 * ceil(Q (1 - q)), 2, and a long separator's tokens. */
static int64_t video_frames_bound(const request *rq, source *s) {
    if (s->frames_bound > 0) return s->frames_bound; /* (the fitting loop plans at every tile count) */
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    const int64_t G = vision_model_grid(rq->e->vm), Q = (G / 2) * (G / 2);
    const double q = rq->p->evs >= 0 ? rq->p->evs : vc->video_pruning_rate;
    const int64_t F = video_frames(rq, s);
    int64_t sep = 0, idx = 0, k = 0;
    double t = 0;
    for (; s->video && k < F && media_video_planned(s->video, (int)k, &idx, &t); k++) {
        char buf[128];
        const double ts = engine_frame_ts(s->native_fps, idx, t, s->ts_real);
        const int len = llm_chat_frame_sep(buf, sizeof buf, (int)k, &ts);
        int32_t *ids = NULL;
        int64_t n = 0;
        nvl_err e2 = {0};
        if (llm_tokenizer_encode(rq->e->tok, buf, (size_t)len, &ids, &n, &e2) != NVL_OK) n = rq->e->frame_sep_tokens;
        nvl_free(ids);
        sep += n;
    }
    if (F == 0 || k < F) /* (not planned yet) */
        return F * ((int64_t)ceil((double)Q * (1.0 - q)) + 2 + rq->e->frame_sep_tokens);
    int64_t keep = (int64_t)((double)Q * (double)F * (1.0 - q));
    if (keep < Q) keep = Q;
    return s->frames_bound = sep + 2 * F + keep;
}

/* The prompt's tokens with every image and page at max_tiles: the prompt builder itself runs on
 * the layouts (so the markers, <img> </img> and the newline each media part carries count as
 * they will be emitted); videos add video_frames_bound each (their "<video>\n" is in the prompt
 * with no frames). */
static nvl_status planned_tokens(request *rq, const api_message *msgs, int n_msgs, int max_tiles, int64_t *n,
                                 nvl_err *err) {
    int64_t extra = 0;
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        if (s->is_video) {
            extra += video_frames_bound(rq, s);
            s->n_frames = 0;
        } else
            s->n_tiles = tiles_for(rq, s, max_tiles);
    }
    llm_prompt pr;
    int think = 0;
    nvl_status st = engine_build_prompt(rq, msgs, n_msgs, &pr, &think, err);
    for (int i = 0; i < rq->n_src; i++) rq->src[i].n_tiles = rq->src[i].n_frames = 0; /* set by the vision step */
    if (st != NVL_OK) return st;
    *n = pr.n + extra;
    llm_prompt_free(&pr);
    return NVL_OK;
}

/* "2 images, 3 PDF pages and 1 video of 240 frames" and the advice that fits those media (an OCR
 * page: "FILE page N", and OCR's remedies). */
static void describe_media(const request *rq, char *what, size_t nw, char *advice, size_t na) {
    const long long ctx = (long long)api_engine_max_context(rq->e);
    if (rq->p->ocr_page && rq->n_src == 1) {
        engine_source_label(&rq->src[0], what, nw);
        snprintf(advice, na, "lower --max-tokens / max_tokens, or raise --max-context / max_context (the checkpoint's "
                             "context: %lld tokens)", ctx);
        return;
    }
    int n_img = 0, n_page = 0, n_vid = 0;
    long long frames = 0;
    for (int i = 0; i < rq->n_src; i++) {
        const source *s = &rq->src[i];
        if (s->is_video) {
            n_vid++;
            frames += video_frames(rq, s);
        } else if (s->pdf >= 0) {
            n_page++;
        } else {
            n_img++;
        }
    }
    char parts[3][96];
    int np = 0;
    if (n_img) snprintf(parts[np++], sizeof parts[0], "%d image%s", n_img, n_img == 1 ? "" : "s");
    if (n_page) snprintf(parts[np++], sizeof parts[0], "%d PDF page%s", n_page, n_page == 1 ? "" : "s");
    if (n_vid)
        snprintf(parts[np++], sizeof parts[0], "%d video%s of %lld sampled frames", n_vid, n_vid == 1 ? "" : "s", frames);
    snprintf(what, nw, "%s%s%s%s%s", np > 0 ? parts[0] : "no media", np > 1 ? (np > 2 ? ", " : " and ") : "",
             np > 1 ? parts[1] : "", np > 2 ? " and " : "", np > 2 ? parts[2] : "");
    size_t o = 0;
    advice[0] = '\0';
    if (n_vid)
        o += (size_t)snprintf(advice + o, na - o, "sample fewer frames (--max-frames / max_frames, --fps / fps) or prune "
                              "more of each (a higher --evs / evs), ");
    if (n_page && o < na)
        o += (size_t)snprintf(advice + o, na - o, "ask about fewer pages (--pages / pages) or page by page (ask --per-page; "
                              "nanovl ocr / type \"ocr\" for a document's text), ");
    if (n_img && o < na) o += (size_t)snprintf(advice + o, na - o, "send fewer images, ");
    if (o < na) snprintf(advice + o, na - o, "lower --max-tokens / max_tokens, or raise --max-context / max_context (the "
                                             "checkpoint's context: %lld tokens)", ctx);
}


/* "file" or "file page N", for progress */
void engine_source_label(const source *s, char *label, size_t n) {
    if (s->page >= 0) snprintf(label, n, "%s page %d", s->name, s->page + 1);
    else snprintf(label, n, "%s", s->name);
}


/* The conversation rendered as text (user texts escaped, a marker per source) into *text, and
 * the sources' layouts into layout (n_src entries; NULL: not wanted). */
static nvl_status render_conversation(request *rq, const api_message *msgs, int n_msgs, llm_media_layout *layout, char **text,
                                      size_t *tl, nvl_err *err) {
    api_engine *e = rq->e;
    int n_parts = 0;
    for (int m = 0; m < n_msgs; m++) n_parts += msgs[m].n_parts + rq->n_src;
    llm_chat_message *cm = nvl_calloc((size_t)n_msgs + 1, sizeof *cm);
    llm_chat_part *parts = nvl_calloc((size_t)n_parts + 1, sizeof *parts);
    char **owned = NULL; /* escaped texts */
    int n_owned = 0;
    nvl_status st = NVL_OK;
    *text = NULL;
    *tl = 0;
    if (!cm || !parts) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
        goto done;
    }
    int np = 0, si = 0;
    for (int m = 0; m < n_msgs; m++) {
        cm[m].role = msgs[m].role;
        cm[m].parts = parts + np;
        for (int k = 0; k < msgs[m].n_parts; k++) {
            if (msgs[m].parts[k].kind == API_PART_TEXT) {
                parts[np].kind = LLM_PART_TEXT;
                parts[np].len = msgs[m].parts[k].text ? msgs[m].parts[k].text_len : 0;
                parts[np++].text = msgs[m].parts[k].text ? msgs[m].parts[k].text : "";
                continue;
            }
            for (; si < rq->n_src && rq->src[si].msg == m && rq->src[si].part == k; si++) {
                const source *s = &rq->src[si];
                if (s->skipped) continue; /* (only before engine_drop_skipped: no layout is asked then) */
                parts[np++].kind = s->is_video ? LLM_PART_VIDEO : LLM_PART_IMAGE;
                if (layout)
                    layout[si] = (llm_media_layout){.kind = s->is_video ? LLM_MEDIA_VIDEO : LLM_MEDIA_IMAGE,
                                                .n_tiles = s->n_tiles, .n_frames = s->n_frames, .ts = s->ts, .kept = s->kept};
            }
        }
        cm[m].n_parts = (int)(parts + np - cm[m].parts);
    }
    /* text from requests and files is plain text: markers and special tokens typed in it are
       escaped, so only nanovl places them (earlier answers cut after their last </think> first) */
    if ((st = llm_chat_escape_messages(e->tok, cm, n_msgs, &owned, &n_owned, err)) != NVL_OK) goto done;
    llm_chat_options co = llm_chat_options_default();
    co.think = rq->p->think;
    st = e->chat_template ? llm_chat_render_template(e->chat_template, cm, n_msgs, &co, e->special, text, tl, err)
                          : llm_chat_render(cm, n_msgs, &co, text, tl, err);
    if (st == NVL_ERR_LIMIT && llm_chat_failed_on_size(err)) {
        /* the template's memory bounds (512 MiB in all, 64 MiB a string): a conversation of
           megabytes reaches them, far past any context, before its tokens are counted; said as
           the text to shorten (a review: a 60 MB question was told "chat template: the template
           needs more than 512 MiB"). A template's other limits (steps, nesting, ranges, integer
           overflow) keep their own message. */
        size_t bytes = 0;
        for (int m = 0; m < n_msgs; m++)
            for (int k = 0; k < cm[m].n_parts; k++) {
                const llm_chat_part *q = &cm[m].parts[k];
                bytes += q->kind != LLM_PART_TEXT || !q->text ? 0 : q->len ? q->len : strlen(q->text);
            }
        char why[200];
        snprintf(why, sizeof why, "%.199s", err->msg);
        if (bytes >= ((size_t)1 << 20))
            st = nvl_err_set(err, NVL_ERR_LIMIT, "the conversation's %zu bytes of text are too large to render (%s), far "
                             "past the context budget of %lld tokens: shorten the text (the checkpoint's context is %lld "
                             "tokens)", bytes, why, (long long)rq->budget, (long long)api_engine_max_context(e));
    }
done:
    nvl_free(cm);
    for (int i = 0; i < n_owned; i++) nvl_free(owned[i]);
    nvl_free(owned);
    nvl_free(parts);
    return st;
}

/* Renders the conversation with the sources' layouts. */
nvl_status engine_build_prompt(request *rq, const api_message *msgs, int n_msgs, llm_prompt *prompt, int *think_on,
                               nvl_err *err) {
    api_engine *e = rq->e;
    llm_media_layout *layout = nvl_calloc((size_t)rq->n_src + 1, sizeof *layout);
    if (!layout) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    char *text = NULL;
    size_t tl = 0;
    nvl_status st = render_conversation(rq, msgs, n_msgs, layout, &text, &tl, err);
    if (st == NVL_OK) {
        *think_on = tl >= 8 && !memcmp(text + tl - 8, "<think>\n", 8);
        const int64_t G = vision_model_grid(e->vm);
        st = llm_chat_tokenize(e->tok, text, tl, layout, rq->n_src, (int)((G / 2) * (G / 2)), prompt, err);
    }
    nvl_free(text);
    nvl_free(layout);
    return st;
}

const char *engine_prefix_text(request *rq, size_t *len) {
    if (!rq->pfx_text && !rq->pfx_failed) {
        char *text = NULL;
        size_t tl = 0, end = 0;
        nvl_err err = {0};
        int found = 0, n = 0;
        for (int i = 0; i < rq->n_src; i++) n += !rq->src[i].skipped;
        if (n > 0 && render_conversation(rq, rq->msgs, rq->n_msgs, NULL, &text, &tl, &err) == NVL_OK)
            for (size_t i = 0; i + 7 <= tl && found < n; i++) /* escaped user text holds no marker */
                if (text[i] == '<' && (!memcmp(text + i, "<image>", 7) || !memcmp(text + i, "<video>", 7))) {
                    found++;
                    end = i + 7;
                }
        if (found == n && found > 0) {
            rq->pfx_text = text;
            rq->pfx_len = end;
        } else {
            nvl_free(text);
            rq->pfx_failed = 1;
        }
    }
    *len = rq->pfx_len;
    return rq->pfx_text;
}


nvl_status api_bytes_to_tmp(const void *data, size_t n, const char *name, char **path, nvl_err *err) {
    *path = NULL;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    const size_t l = strlen(dir) + 16;
    char *tpl = nvl_malloc(l);
    if (!tpl) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    snprintf(tpl, l, "%s/nanovl-XXXXXX", dir);
    int fd = mkostemp(tpl, O_CLOEXEC); /* 0600 */
    if (fd < 0) {
        nvl_status st = nvl_err_set(err, NVL_ERR_IO, "%s: cannot create a temporary file in %s: %s", name, dir, strerror(errno));
        nvl_free(tpl);
        return st;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, (const char *)data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            nvl_status st = nvl_err_set(err, NVL_ERR_IO, "%s: cannot write a temporary file: %s", name, strerror(errno));
            close(fd);
            unlink(tpl);
            nvl_free(tpl);
            return st;
        }
        off += (size_t)w;
    }
    /* unlinked at once and read through its descriptor, so that nothing is left behind however the
       process ends (kill -9, the OOM killer); the named file only where /proc is missing */
    char proc[API_FD_PATH_MAX];
    char *pp = NULL;
    if (api_fd_path(fd, proc, sizeof proc) && (pp = nvl_malloc(strlen(proc) + 1))) {
        memcpy(pp, proc, strlen(proc) + 1);
        unlink(tpl);
        nvl_free(tpl);
        *path = pp;
        return NVL_OK;
    }
    close(fd);
    *path = tpl;
    return NVL_OK;
}

int api_fd_path(int fd, char *out, size_t cap) {
    struct stat sp, sf;
    const int n = snprintf(out, cap, "/proc/self/fd/%d", fd);
    if (n < 0 || (size_t)n >= cap || fstat(fd, &sf) != 0 || stat(out, &sp) != 0 || sp.st_dev != sf.st_dev ||
        sp.st_ino != sf.st_ino || access(out, R_OK) != 0) {
        if (cap) out[0] = 0;
        return 0;
    }
    return 1;
}

void api_tmp_release(char *path) {
    if (!path) return;
    if (!strncmp(path, "/proc/self/fd/", 14)) close(atoi(path + 14));
    else unlink(path);
    nvl_free(path);
}

/* The context budget (engine_impl.h): the text (rendered without media), the media at max_tiles,
 * the answer; max_tiles lowered until they fit, with a notice; NVL_ERR_LIMIT when one tile per
 * image does not fit either. Sets rq->mt and res->n_planned, res->max_tiles. */
nvl_status engine_plan_budget(request *rq, int quiet, nvl_err *err) {
    const api_ask_params *p = rq->p;
    api_ask_result *res = rq->res;
    const int64_t budget = rq->budget;
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    int mt = p->max_tiles > 0 ? p->max_tiles : (int)vc->max_num_tiles;
    nvl_status st = NVL_OK;
    if (rq->n_src > 0) { /* without media nothing can be lowered: the prompt check decides */
        llm_prompt prompt = {0};
        int think_tmp = 0;
        request text_only = *rq;
        text_only.n_src = 0;
        if ((st = engine_build_prompt(&text_only, rq->msgs, rq->n_msgs, &prompt, &think_tmp, err)) != NVL_OK) return st;
        const int64_t text_tokens = prompt.n;
        llm_prompt_free(&prompt);
        /* the media's share: the whole prompt as the builder emits it at t tiles, less the text */
        int64_t at_mt = 0, at_t = 0, at_fit = 0;
        /* the text and the answer alone past the budget: no tile count fits, and only 1 tile per
           image is planned (for the message); each plan renders and tokenizes the whole
           conversation, 13 of them took 20 s for a 10 MB question beside an image (a review) */
        const int text_over = text_tokens + p->max_tokens > budget;
        if ((st = planned_tokens(rq, rq->msgs, rq->n_msgs, text_over ? 1 : mt, &at_mt, err)) != NVL_OK) return st;
        if (text_over) at_t = at_mt;
        if (at_mt + p->max_tokens > budget) {
            int fit = 0;
            for (int t = mt - 1; t >= 1 && !fit && !text_over; t--) {
                if ((st = planned_tokens(rq, rq->msgs, rq->n_msgs, t, &at_t, err)) != NVL_OK) return st;
                if (at_t + p->max_tokens <= budget) {
                    fit = t;
                    at_fit = at_t;
                }
            }
            if (!fit) {
                char what[400], advice[400];
                int images = 0;
                for (int i = 0; i < rq->n_src; i++) images |= !rq->src[i].is_video;
                describe_media(rq, what, sizeof what, advice, sizeof advice);
                const int64_t least = (mt > 1 ? at_t : at_mt) - text_tokens;
                /* the text the larger part: that is what to shorten (a long question, conversation) */
                const int text_first = text_tokens >= least || 2 * text_tokens > budget;
                return nvl_err_set(err, NVL_ERR_LIMIT,
                                   "%s%s%s need%s at least %lld tokens%s (plus %lld of %s and %lld to answer), "
                                   "more than the context budget of %lld: %s%s",
                                   p->ocr_page ? "" : "the media (", what, p->ocr_page ? "" : ")", p->ocr_page ? "s" : "",
                                   (long long)least, images ? " at 1 tile per image" : "", (long long)text_tokens,
                                   p->ocr_page ? "the OCR prompt" : "text", (long long)p->max_tokens, (long long)budget,
                                   !text_first ? ""
                                   : p->ocr_page ? "shorten the OCR prompt (--prompt / prompt), "
                                                 : "shorten the text (the question, the system message, earlier turns), ",
                                   advice);
            }
            char *msg = engine_printf("the media need %lld tokens at %d tiles per image; with %lld of text and %lld to answer "
                                      "that is %lld, more than the context budget of %lld: using at most %d tile(s) per "
                                      "image (%lld media tokens)",
                                      (long long)(at_mt - text_tokens), mt, (long long)text_tokens, (long long)p->max_tokens,
                                      (long long)(at_mt + p->max_tokens), (long long)budget, fit,
                                      (long long)(at_fit - text_tokens));
            if (!quiet) engine_notice(rq, msg);
            nvl_free(msg);
            mt = fit;
            at_mt = at_fit;
        }
        res->n_planned = at_mt;
    }
    res->max_tiles = mt;
    rq->mt = mt;
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        nvl_free(s->key);
        s->key = s->is_video ? engine_strdup(s->base_key) : engine_printf("%s:t%d", s->base_key, mt);
        if (!s->key) return nvl_err_set(err, NVL_ERR_NOMEM, "engine: out of memory");
    }
    return NVL_OK;
}

// ---------------------------------------------------------------------------
// Pages left out (api_ask_params.skip_bad_pages)

int engine_skip_page(request *rq, const source *s, nvl_status st, const nvl_err *err) {
    if (!rq->p->skip_bad_pages || s->page < 0 || s->pdf < 0) return 0;
    if (st != NVL_ERR_FORMAT && st != NVL_ERR_TRUNCATED && st != NVL_ERR_TIMEOUT && st != NVL_ERR_LIMIT &&
        st != NVL_ERR_UNSUPPORTED)
        return 0; /* not the page's own fault: the request fails as without the option */
    api_ask_result *r = rq->res;
    api_skipped_page *ns = nvl_realloc(r->skipped, (size_t)(r->n_skipped + 1) * sizeof *ns);
    if (!ns) return 0;
    r->skipped = ns;
    int *np = nvl_realloc(rq->skip_pdf, (size_t)(r->n_skipped + 1) * sizeof *np);
    if (!np) return 0;
    rq->skip_pdf = np;
    api_skipped_page *k = &r->skipped[r->n_skipped];
    k->name = engine_strdup(s->name);
    k->message = engine_strdup(err && err->msg[0] ? err->msg : nvl_status_str(st));
    if (!k->name || !k->message) {
        nvl_free(k->name);
        nvl_free(k->message);
        return 0;
    }
    k->page = s->page + 1;
    k->st = st;
    rq->skip_pdf[r->n_skipped++] = s->pdf;
    return 1;
}

/* e->bad[i] forgotten (the later ones move down). */
static void bad_forget(api_engine *e, int i) {
    nvl_free(e->bad[i].key);
    nvl_free(e->bad[i].message);
    nvl_free(e->bad[i].name);
    memmove(&e->bad[i], &e->bad[i + 1], (size_t)(e->n_bad - i - 1) * sizeof e->bad[0]);
    e->n_bad--;
}

void engine_bad_page_remember(api_engine *e, const source *s, nvl_status st, const nvl_err *err) {
    if (!s->base_key) return;
    for (int i = 0; i < e->n_bad; i++)
        if (!strcmp(e->bad[i].key, s->base_key)) return;
    char *key = engine_strdup(s->base_key), *msg = engine_strdup(err && err->msg[0] ? err->msg : nvl_status_str(st));
    char *name = engine_strdup(s->name);
    if (!key || !msg || !name) {
        nvl_free(key);
        nvl_free(msg);
        nvl_free(name);
        return; /* (only a later request's rendering it again is lost) */
    }
    if (e->n_bad == BAD_PAGES_MAX) bad_forget(e, 0); /* the oldest */
    e->bad[e->n_bad++] = (bad_page){.key = key, .st = st, .message = msg, .name = name, .t = nvl_now()};
}

void engine_bad_pages_clear(api_engine *e) {
    while (e->n_bad > 0) bad_forget(e, e->n_bad - 1);
}

/* The remembered bad page s is (not expired), or NULL; only PDF pages not yet read are looked up. */
static const bad_page *bad_of(const api_engine *e, const source *s, double now) {
    if (s->skipped || s->started || s->from_kept || s->page < 0 || !s->base_key) return NULL;
    for (int b = 0; b < e->n_bad; b++)
        if (!strcmp(e->bad[b].key, s->base_key)) return now - e->bad[b].t <= BAD_PAGE_TTL_S ? &e->bad[b] : NULL;
    return NULL;
}

nvl_status engine_skip_known(request *rq, nvl_err *err) {
    api_engine *e = rq->e;
    if (!rq->p->skip_bad_pages || e->n_bad == 0) return NVL_OK;
    const double now = nvl_now();
    for (int b = e->n_bad - 1; b >= 0; b--)
        if (now - e->bad[b].t > BAD_PAGE_TTL_S) bad_forget(e, b);
    int any = 0;
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        const bad_page *bp = bad_of(e, s, now);
        if (!bp) continue;
        nvl_err be = {0};
        const size_t nl = strlen(bp->name);
        if (strcmp(bp->name, s->name) && !strncmp(bp->message, bp->name, nl) && bp->message[nl] == ':')
            snprintf(be.msg, sizeof be.msg, "%s%s", s->name, bp->message + nl); /* (this request's label) */
        else
            snprintf(be.msg, sizeof be.msg, "%s", bp->message);
        if (engine_skip_page(rq, s, bp->st, &be)) {
            s->skipped = 1;
            s->finished = 1;
            any = 1;
        }
    }
    return any ? engine_drop_skipped(rq, err) : NVL_OK;
}

int engine_known_bad(const request *rq) {
    const double now = nvl_now();
    for (int i = 0; rq->p->skip_bad_pages && i < rq->n_src; i++)
        if (bad_of(rq->e, &rq->src[i], now)) return 1;
    return 0;
}

int engine_same_sources(const request *a, const request *b) {
    int i = 0, j = 0;
    for (;;) {
        while (i < a->n_src && a->src[i].skipped) i++;
        while (j < b->n_src && b->src[j].skipped) j++;
        if (i == a->n_src || j == b->n_src) return i == a->n_src && j == b->n_src;
        if (!a->src[i].key || !b->src[j].key || strcmp(a->src[i].key, b->src[j].key)) return 0;
        i++, j++;
    }
}

void engine_skip_notices(request *rq) {
    const api_ask_result *r = rq->res;
    for (; rq->n_skip_said < r->n_skipped; rq->n_skip_said++) {
        const api_skipped_page *k = &r->skipped[rq->n_skip_said];
        char msg[NVL_ERR_MSG_MAX + 32];
        snprintf(msg, sizeof msg, "page left out: %s", k->message); /* (the message names the file and the page) */
        engine_notice(rq, msg);
    }
}

nvl_status engine_skip_check(const request *rq, nvl_err *err) {
    const api_ask_result *r = rq->res;
    for (int i = 0; i < r->n_skipped; i++) { /* a PDF none of whose selected pages could be read */
        int read = 0;
        for (int j = 0; j < rq->n_src && !read; j++) read = rq->src[j].pdf == rq->skip_pdf[i] && !rq->src[j].skipped;
        if (read) continue;
        int others = 0;
        for (int j = 0; j < r->n_skipped; j++) others += j != i && rq->skip_pdf[j] == rq->skip_pdf[i];
        nvl_err_set(err, r->skipped[i].st, "%s", r->skipped[i].message);
        const size_t n = strlen(err->msg);
        if (others && n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - n, " (no page of the document could be read: %d other page%s failed too)",
                     others, others == 1 ? "" : "s");
        return r->skipped[i].st;
    }
    return NVL_OK;
}

nvl_status engine_drop_skipped(request *rq, nvl_err *err) {
    const nvl_status st = engine_skip_check(rq, err);
    if (st != NVL_OK) return st;
    int k = 0;
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        if (!s->skipped) {
            if (k != i) rq->src[k] = *s;
            k++;
            continue;
        }
        media_image_free(s->img);
        nvl_free(s->base_key);
        nvl_free(s->key);
        engine_vision_reset_source(rq->e, s);
    }
    rq->n_src = k;
    nvl_freep(&rq->pfx_text); /* rendered with the pages left out: again without them */
    rq->pfx_failed = 0;
    return NVL_OK;
}

int engine_replan_after_skip(request *rq, nvl_err *err) {
    const int asked = rq->p->max_tiles > 0 ? rq->p->max_tiles : (int)vision_model_config(rq->e->vm)->max_num_tiles;
    const int before = rq->mt;
    if (before >= asked) return 0;
    if (engine_plan_budget(rq, 1, err) != NVL_OK) return -1;
    if (rq->mt == before) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "with pages left out the media fit at %d tile(s) per image (not %d): their vision runs again",
             rq->mt, before);
    engine_notice(rq, msg);
    for (int i = 0; i < rq->n_src; i++)
        if (!rq->src[i].is_video) engine_vision_reset_source(rq->e, &rq->src[i]); /* (a video's frames: 1 tile each) */
    rq->vis_next = 0;
    return 1;
}

void engine_sources_free(request *rq) {
    nvl_freep(&rq->skip_pdf);
    for (int i = 0; i < rq->n_src; i++) {
        source *s = &rq->src[i];
        media_image_free(s->img);
        media_video_close(s->video);
        s->video = NULL;
        nvl_free(s->base_key);
        nvl_free(s->key);
        engine_vision_reset_source(rq->e, s); /* the vision buffers */
    }
    nvl_free(rq->src);
    rq->src = NULL;
    rq->n_src = rq->cap_src = 0;
    nvl_free(rq->pfx_text);
    rq->pfx_text = NULL;
    for (int i = 0; i < rq->n_pdfs; i++) media_pdf_close(rq->pdfs[i]);
    nvl_free(rq->pdfs);
    rq->pdfs = NULL;
    rq->n_pdfs = 0;
    for (int i = 0; i < rq->n_tmp; i++) api_tmp_release(rq->tmp[i]);
    nvl_free(rq->tmp);
    rq->tmp = NULL;
    rq->n_tmp = 0;
}

api_ask_params api_ocr_params(const api_ask_params *base, int max_tokens_given) {
    api_ask_params p = base ? *base : api_ask_params_default();
    if (p.think < 0) p.think = 0; /* (reasoning only where asked for) */
    if (!max_tokens_given) p.max_tokens = 4096;
    return p;
}
