/* The engine's vision stage (engine_impl.h): every request waiting for vision rows contributes
 * its next tiles (an image's or PDF page's tiles, a video's frames as one tile each) to one
 * batch of up to VISION_BATCH tiles, run through RADIO, pixel shuffle and mlp1 together
 * (tokred_embed_tiles; the ViT works per tile, so a tile's rows do not depend on its batch).
 * A video's rows go through EVS once all its frames are embedded. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "engine_impl.h"

static int64_t rows_per_tile(const api_engine *e) {
    const int64_t G = vision_model_grid(e->vm);
    return (G / 2) * (G / 2);
}

static int units_total(const source *s) { return s->is_video ? s->n_frames : s->n_tiles; }

/* The frame's timestamp as the model was shown it (model.md §6.3): frame_index *
 * int(1000 / native_fps) / 1000 for a constant-rate clip; where the frame's presentation time is
 * more than half a frame from index / fps (variable frame rate), its real time in ms. */
static double frame_ts(const media_frames *f, const media_image *fr) {
    const double nominal = (double)fr->index / f->native_fps;
    if (f->native_fps > 0 && fabs(fr->timestamp - nominal) <= 0.5 / f->native_fps)
        return (double)fr->index * (double)(int)(1000.0 / f->native_fps) / 1000.0;
    return floor(fr->timestamp * 1000.0 + 0.5) / 1000.0;
}

/* An image's tiles (a PDF page rendered first), or a video's frames and buffers. Time spent
 * reading files goes to s->t_media (the stepping thread adds it to the result). */
nvl_status engine_vision_start(request *rq, source *s, nvl_err *err) {
    api_engine *e = rq->e;
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t Q = rows_per_tile(e), C = e->proj.out;
    nvl_status st = NVL_OK;
    s->t0 = engine_now();
    s->units_done = 0;
    if (s->is_video) {
        if (!s->frames) { /* sampled with the media; again when a kept prefix did not apply */
            const media_video_params vp = engine_video_params(rq->p);
            const double tm = engine_now();
            st = media_video_sample(s->path, &vp, NULL, &s->frames, err);
            s->t_media += engine_now() - tm;
            if (st != NVL_OK) {
                if (engine_is_tmp(rq, s->path)) engine_unname_tmp(err, s->path, s->name);
                else if (s->path != s->name && strcmp(s->path, s->name)) nvl_err_prefix(err, "%s", s->name);
                return st;
            }
        }
        const int n = s->frames->n;
        if (n < 1) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: no frames were sampled", s->name);
        s->n_frames = n;
        s->n_rows = 0;
        s->ts = nvl_malloc((size_t)n * sizeof(double));
        s->kept = nvl_malloc((size_t)n * sizeof(int));
        s->all = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
        s->rows = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
        if (!s->ts || !s->kept || !s->all || !s->rows)
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %d frames", s->name, n);
        for (int i = 0; i < n; i++) s->ts[i] = frame_ts(s->frames, s->frames->frames[i]);
    } else {
        media_image *img = s->img, *page = NULL;
        if (s->pdf >= 0) {
            const double tm = engine_now();
            st = media_pdf_render(rq->pdfs[s->pdf], s->page, rq->p->dpi, rq->p->long_side, &page, err);
            s->t_media += engine_now() - tm;
            if (st != NVL_OK) {
                if (engine_is_tmp(rq, s->path)) engine_unname_tmp(err, s->path, s->name);
                return st;
            }
            img = page;
        }
        int n = 0;
        st = vision_make_tiles_rgb8(img->rgb, img->width, img->height, img->stride, vc, rq->mt, &s->tiles, &n, NULL, NULL, err);
        media_image_free(page);
        if (st != NVL_OK) return st;
        s->n_tiles = n;
        s->n_rows = n * Q;
        s->rows = nvl_malloc((size_t)(s->n_rows * C) * sizeof(float));
        if (!s->rows) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", s->name);
    }
    return NVL_OK; /* the stepping thread marks it started (it may run on a media thread) */
}

/* Tile u of s into dst (S, S, 3) RGB8. */
static nvl_status vision_unit(request *rq, source *s, int u, uint8_t *dst, nvl_err *err) {
    const vision_vl_config *vc = vision_model_config(rq->e->vm);
    const size_t tile = (size_t)(3 * vc->image_size * vc->image_size);
    if (!s->is_video) {
        memcpy(dst, s->tiles + (size_t)u * tile, tile);
        return NVL_OK;
    }
    const media_image *fr = s->frames->frames[u]; /* one tile per frame, no thumbnail */
    uint8_t *t = NULL;
    int nt = 0;
    nvl_status st = vision_make_tiles_rgb8(fr->rgb, fr->width, fr->height, fr->stride, vc, 1, &t, &nt, NULL, NULL, err);
    if (st == NVL_OK) memcpy(dst, t, tile);
    nvl_free(t);
    return st;
}

/* Every unit of s is embedded: EVS for a video, progress. */
static nvl_status vision_finish_source(request *rq, source *s, int index, nvl_err *err) {
    api_engine *e = rq->e;
    char label[512];
    engine_source_label(s, label, sizeof label);
    nvl_free(s->tiles);
    s->tiles = NULL;
    if (!s->is_video) {
        engine_progress(rq, API_STAGE_VISION, label, index + 1, rq->n_src, rq->t_vision0);
        return NVL_OK;
    }
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t Q = rows_per_tile(e), C = e->proj.out, n = s->n_frames;
    const double q = rq->p->evs >= 0 ? rq->p->evs : vc->video_pruning_rate;
    uint8_t *keep = nvl_malloc((size_t)(n * Q));
    nvl_status st = keep ? tokred_evs_mask(e->be, s->all, n, Q, C, q, 0, keep, s->kept, err)
                         : nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", s->name);
    s->n_rows = 0;
    for (int64_t r = 0; st == NVL_OK && r < n * Q; r++)
        if (keep[r]) memcpy(s->rows + (s->n_rows++) * C, s->all + r * C, (size_t)C * sizeof(float));
    nvl_free(keep);
    nvl_free(s->all);
    s->all = NULL;
    media_frames_free(s->frames);
    s->frames = NULL;
    return st;
}

void engine_vision_reset_source(source *s) {
    nvl_free(s->ts);
    nvl_free(s->kept);
    nvl_free(s->rows);
    nvl_free(s->tiles);
    nvl_free(s->all);
    s->ts = NULL;
    s->kept = NULL;
    s->rows = NULL;
    s->tiles = NULL;
    s->all = NULL;
    s->from_kept = NULL;
    s->n_rows = 0;
    s->n_tiles = s->n_frames = 0;
    s->started = 0;
    s->units_done = 0;
    s->prep = 0;
}

/* Skips the sources of rq that need no more work; 1 when none is left (rq moves on). */
static int vision_advance(request *rq) {
    while (rq->vis_next < rq->n_src) {
        const source *s = &rq->src[rq->vis_next];
        if (s->from_kept || (s->started && s->units_done == units_total(s) && !s->all && !s->tiles)) rq->vis_next++;
        else break;
    }
    if (rq->vis_next < rq->n_src) return 0;
    rq->res->t_vision = engine_now() - rq->t_vision0;
    rq->state = RQ_PROMPT;
    return 1;
}

typedef struct vis_unit {
    request *rq;
    int si, u;
} vis_unit;

int engine_vision_turn(api_engine *e) {
    const vision_vl_config *vc = vision_model_config(e->vm);
    const size_t tile = (size_t)(3 * vc->image_size * vc->image_size);
    const int64_t Q = rows_per_tile(e), C = e->proj.out;
    vis_unit units[VISION_BATCH];
    int nb = 0;
    uint8_t *tiles = NULL; /* RGB8 tiles, normalised on the vision backend */
    float *out = NULL;
    for (request *rq = e->live; rq; rq = rq->next) {
        if (rq->state != RQ_VISION || vision_advance(rq)) continue;
        if (nb == e->vision_batch) continue;
        if (!tiles && !(tiles = nvl_malloc(VISION_BATCH * tile))) {
            nvl_err er = {0};
            engine_fail(rq, nvl_err_set(&er, NVL_ERR_NOMEM, "engine: out of memory for tiles"), &er);
            continue;
        }
        nvl_status st = NVL_OK;
        nvl_err er = {0};
        pthread_mutex_lock(&e->mmu);
        const int busy = rq->media_busy;
        pthread_mutex_unlock(&e->mmu);
        for (int si = rq->vis_next; si < rq->n_src && nb < e->vision_batch && st == NVL_OK; si++) {
            source *s = &rq->src[si];
            if (s->from_kept) continue;
            if (!s->started) {
                if (!s->is_video && e->media_thr_ok) { /* images and pages: tiles made on a media thread */
                    if (busy) break; /* a media thread works for this request (the source is its) */
                    if (s->prep == 0) {
                        engine_queue_job(e, rq, si); /* from here the source is the media thread's */
                        break;
                    }
                    if ((st = s->prep_st) != NVL_OK) { /* prep == 2: made, or why not */
                        er = s->prep_err;
                        break;
                    }
                } else if ((st = engine_vision_start(rq, s, &er)) != NVL_OK) {
                    break;
                }
                s->started = 1;
                rq->res->t_media += s->t_media;
                s->t_media = 0;
            }
            for (int u = s->units_done; u < units_total(s) && nb < e->vision_batch && st == NVL_OK; u++) {
                st = vision_unit(rq, s, u, tiles + (size_t)nb * tile, &er);
                if (st == NVL_OK) units[nb++] = (vis_unit){rq, si, u};
            }
        }
        /* the next image of this request is made while RADIO runs this batch (pipelining) */
        pthread_mutex_lock(&e->mmu);
        const int busy_now = rq->media_busy;
        pthread_mutex_unlock(&e->mmu);
        for (int si = rq->vis_next; st == NVL_OK && e->media_thr_ok && !busy_now && si < rq->n_src; si++) {
            source *s = &rq->src[si];
            if (s->from_kept || s->started || s->is_video) continue;
            if (s->prep == 0) engine_queue_job(e, rq, si);
            break;
        }
        if (st != NVL_OK) { /* this request's file failed: its units leave the batch */
            int k = 0;
            for (int j = 0; j < nb; j++)
                if (units[j].rq != rq) {
                    if (k != j) memcpy(tiles + (size_t)k * tile, tiles + (size_t)j * tile, tile);
                    units[k++] = units[j];
                }
            nb = k;
            engine_fail(rq, st, &er);
        }
    }
    if (nb > 0) {
        nvl_err er = {0};
        nvl_status st = (out = nvl_malloc((size_t)(nb * Q * C) * sizeof(float))) != NULL
                            ? tokred_embed_tiles_rgb8(e->vm, &e->proj, tiles, nb, out, &er)
                            : nvl_err_set(&er, NVL_ERR_NOMEM, "engine: out of memory for %d tiles' rows", nb);
        for (int j = 0; j < nb; j++) {
            request *rq = units[j].rq;
            if (rq->state != RQ_VISION) continue;
            if (st != NVL_OK) {
                engine_fail(rq, st, &er);
                continue;
            }
            source *s = &rq->src[units[j].si];
            float *dst = (s->is_video ? s->all : s->rows) + (size_t)units[j].u * (size_t)(Q * C);
            memcpy(dst, out + (size_t)j * (size_t)(Q * C), (size_t)(Q * C) * sizeof(float));
            s->units_done = units[j].u + 1;
            const int last_of_source = j + 1 == nb || units[j + 1].rq != rq || units[j + 1].si != units[j].si;
            if (!last_of_source) continue;
            if (s->is_video) {
                char label[512];
                engine_source_label(s, label, sizeof label);
                engine_progress(rq, API_STAGE_VISION, label, s->units_done, s->n_frames, s->t0);
            }
            nvl_err e2 = {0};
            nvl_status s2 = NVL_OK;
            if (s->units_done == units_total(s)) s2 = vision_finish_source(rq, s, units[j].si, &e2);
            if (s2 != NVL_OK) engine_fail(rq, s2, &e2);
            else if (s->units_done == units_total(s)) vision_advance(rq);
        }
    }
    nvl_free(tiles);
    nvl_free(out);
    return nb;
}
