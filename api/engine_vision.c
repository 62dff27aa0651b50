/* The engine's vision stage (engine_impl.h): every request waiting for vision rows contributes
 * its next tiles (an image's or PDF page's tiles, a video's frames as one tile each) to one
 * batch of up to VISION_BATCH tiles, run through RADIO, pixel shuffle and mlp1 together
 * (tokred_embed_tiles_rgb8_to; the ViT works per tile, so a tile's rows do not depend on its batch;
 * the rows stay in the backend's memory until the prefill has read them).
 * A video's frames are decoded and tiled by a media thread (engine_video_decode) at most
 * video_ahead frames ahead of RADIO, so decoding frame i+1.. overlaps embedding frame i and the
 * decoded frames held stay bounded; its rows go through EVS once all its frames are embedded. */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "engine_impl.h"
#include "base/clock.h"

/* Bytes of one RGB8 tile (S, S, 3). */
static size_t tile_bytes(const api_engine *e) {
    const int64_t S = vision_model_config(e->vm)->image_size;
    return (size_t)(3 * S * S);
}

static int64_t rows_per_tile(const api_engine *e) {
    const int64_t G = vision_model_grid(e->vm);
    return (G / 2) * (G / 2);
}

/* A source's rows in the backend's memory, allocated when its first rows come (on the stepping
 * thread): an image's n_rows, a video's rows of every planned frame (EVS keeps some of them). */
static nvl_status source_rows(api_engine *e, source *s, nvl_err *err) {
    void **buf = s->is_video ? &s->all : &s->rows;
    if (*buf) return NVL_OK;
    const int64_t n = s->is_video ? (int64_t)s->n_planned * rows_per_tile(e) : s->n_rows;
    nvl_status st = kern_buffer_alloc(e->be, (size_t)n * e->row_bytes, buf, err);
    if (st != NVL_OK) nvl_err_prefix(err, "%s: %lld vision rows", s->name, (long long)n);
    return st;
}

/* n rows from a buffer of rows in the backend's memory, as a (n, C) tensor */
static nvl_tensor rows_tensor(const api_engine *e, void *buf, int64_t n) {
    return kern_act(e->be, e->row_dtype, 2, (int64_t[]){n, e->proj.out}, buf);
}

/* The frame's timestamp as the model was shown it (../shared/spec/model.md §6.3, vLLM's
 * calculate_timestamps): frame_index * int(1000 / native_fps) / 1000 for a constant-rate clip
 * (the ms per frame truncated first, so a 29.97 fps clip's times run 1 % slow, as vLLM shows
 * them); for a video with a variable rate (real != 0: some planned frame lies more than half a
 * frame from index / fps, engine_sources.c), every frame's presentation time in ms, so the times
 * keep their order (one rule per frame mixed the two scales: a frame could come before the one
 * ahead of it). */
double engine_frame_ts(double native_fps, int64_t index, double timestamp, int real) {
    if (!real && native_fps > 0) return (double)index * (double)(int)(1000.0 / native_fps) / 1000.0;
    return floor(timestamp * 1000.0 + 0.5) / 1000.0;
}

/* A video's error named after the media (its temporary file's name replaced). */
static void video_name_error(request *rq, const source *s, nvl_err *err) {
    /* (a path with a name of its own that the message does not hold: the name before it) */
    if (!engine_unname_tmp(err, s->path, s->name) && !engine_is_tmp(rq, s->path) && strcmp(s->path, s->name))
        nvl_err_prefix(err, "%s", s->name);
}

/* An image's tiles (a PDF page rendered first), or a video's buffers. Time spent reading files
 * goes to s->t_media (the stepping thread adds it to the result). */
nvl_status engine_vision_start(request *rq, source *s, nvl_err *err) {
    api_engine *e = rq->e;
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t Q = rows_per_tile(e);
    nvl_status st = NVL_OK;
    s->t0 = nvl_now();
    s->units_done = 0;
    if (s->is_video) {
        /* opened (its sample planned) with the media, untouched while a kept prefix was to spare
         * it; a video whose frames were taken never starts again (its request ends) */
        if (!s->video) return nvl_err_set(err, NVL_ERR_INTERNAL, "%s: the video was already read", s->name);
        const int n = s->n_planned;
        if (n < 1) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: no frames were sampled", s->name);
        s->n_frames = 0; /* known when the video ends: frames_ready */
        s->n_rows = 0;
        s->ring_n = e->video_ahead < n ? e->video_ahead : n;
        s->frames_ready = 0;
        s->video_end = 0;
        s->t_decode = 0;
        s->ts = nvl_malloc((size_t)n * sizeof(double));
        s->kept = nvl_malloc((size_t)n * sizeof(int));
        s->ring = nvl_malloc((size_t)s->ring_n * tile_bytes(e));
        if (!s->ts || !s->kept || !s->ring)
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory for %d frames", s->name, n);
    } else {
        media_image *img = s->img, *page = NULL;
        if (s->pdf >= 0) {
            const double tm = nvl_now();
            st = media_pdf_render(rq->pdfs[s->pdf], s->page, rq->p->dpi, rq->p->long_side, &page, err);
            s->t_media += nvl_now() - tm;
            if (st != NVL_OK) {
                engine_unname_tmp(err, s->path, s->name); /* (bytes' copy, a named path) */
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
    }
    return NVL_OK; /* the stepping thread marks it started (it may run on a media thread) */
}

nvl_status engine_video_decode(request *rq, source *s, nvl_err *err) {
    api_engine *e = rq->e;
    const vision_vl_config *vc = vision_model_config(e->vm);
    const size_t tile = tile_bytes(e);
    for (;;) {
        pthread_mutex_lock(&e->mmu);
        const int i = s->frames_ready, room = s->units_done + s->ring_n - i, end = s->video_end;
        pthread_mutex_unlock(&e->mmu);
        if (room <= 0 || end) return NVL_OK;
        const double t0 = nvl_now();
        media_image *fr = NULL;
        nvl_status st = i < s->n_planned ? media_video_next(s->video, &fr, err) : NVL_OK;
        if (st == NVL_OK && fr) { /* one tile per frame, no thumbnail */
            uint8_t *t = NULL;
            int nt = 0;
            st = vision_make_tiles_rgb8(fr->rgb, fr->width, fr->height, fr->stride, vc, 1, &t, &nt, NULL, NULL, err);
            if (st == NVL_OK) memcpy(s->ring + (size_t)(i % s->ring_n) * tile, t, tile);
            nvl_free(t);
            s->ts[i] = engine_frame_ts(s->native_fps, fr->index, fr->timestamp, s->ts_real);
        }
        media_image_free(fr);
        if (st != NVL_OK || !fr) { /* the end, or an error: the decoder is no longer needed */
            media_video_close(s->video);
            s->video = NULL;
        }
        if (st != NVL_OK) video_name_error(rq, s, err);
        pthread_mutex_lock(&e->mmu);
        s->t_decode += nvl_now() - t0;
        if (st == NVL_OK) {
            if (fr) s->frames_ready = i + 1;
            else s->video_end = 1;
        }
        pthread_cond_broadcast(&e->mcv); /* a step may be waiting for frames */
        pthread_mutex_unlock(&e->mmu);
        if (st != NVL_OK) return st;
        if (engine_media_cancelled(rq)) return nvl_err_set(err, NVL_ERR_CANCELLED, "cancelled");
        pthread_mutex_lock(&e->mmu);
        const int abandoned = rq->media_abort;
        pthread_mutex_unlock(&e->mmu);
        if (abandoned) return NVL_OK; /* the request ended (another file's error): no more frames */
    }
}

/* A video's next frames asked of a media thread, when none is working for rq, the video has not
 * ended and its ring has room (on the stepping thread). 1 when a job was queued. */
static int video_feed(api_engine *e, request *rq, source *s, int si) {
    if (!e->media_thr_ok) return 0;
    pthread_mutex_lock(&e->mmu);
    if (s->prep == 2 && s->prep_st == NVL_OK) s->prep = 0; /* the last job ended well */
    const int want = !s->video_end && s->prep == 0 && !rq->media_busy && s->frames_ready < s->units_done + s->ring_n;
    pthread_mutex_unlock(&e->mmu);
    return want && engine_queue_job(e, rq, si);
}

/* A video's rows after EVS: the kept rows of s->all (n rows, keep[r] != 0) into s->rows, a run of
 * consecutive kept rows a copy, and s->all freed, so that a video holds its kept rows only (128
 * frames of the 12B model: 335 MB of bf16 on a device before EVS). Every row kept: the buffer is
 * the rows. */
static nvl_status keep_rows(api_engine *e, source *s, const uint8_t *keep, int64_t n, nvl_err *err) {
    const size_t rb = e->row_bytes;
    s->n_rows = 0;
    for (int64_t r = 0; r < n; r++) s->n_rows += keep[r];
    if (s->n_rows == n && n == (int64_t)s->n_planned * rows_per_tile(e)) {
        s->rows = s->all;
        s->all = NULL;
        return NVL_OK;
    }
    nvl_status st = kern_buffer_alloc(e->be, (size_t)s->n_rows * rb, &s->rows, err);
    if (st != NVL_OK) return nvl_err_prefix(err, "%s: %lld kept vision rows", s->name, (long long)s->n_rows), st;
    int64_t d = 0;
    for (int64_t r = 0; st == NVL_OK && r < n;) {
        if (!keep[r]) {
            r++;
            continue;
        }
        int64_t r1 = r + 1;
        while (r1 < n && keep[r1]) r1++;
        st = kern_copy_within(e->be, (char *)s->rows + (size_t)d * rb, (const char *)s->all + (size_t)r * rb,
                              (size_t)(r1 - r) * rb, err);
        d += r1 - r;
        r = r1;
    }
    kern_buffer_free(e->be, s->all);
    s->all = NULL;
    return st;
}

/* Every unit of s is embedded: EVS for a video, progress. */
static nvl_status vision_finish_source(request *rq, source *s, int index, nvl_err *err) {
    api_engine *e = rq->e;
    if (s->finished) return NVL_OK;
    char label[512];
    engine_source_label(s, label, sizeof label);
    nvl_free(s->tiles);
    s->tiles = NULL;
    s->finished = 1;
    if (!s->is_video) {
        engine_progress(rq, API_STAGE_VISION, label, index + 1, rq->n_src, rq->t_vision0);
        return NVL_OK;
    }
    nvl_free(s->ring);
    s->ring = NULL;
    pthread_mutex_lock(&e->mmu);
    s->n_frames = s->frames_ready;
    rq->res->t_media += s->t_decode;
    s->t_decode = 0;
    pthread_mutex_unlock(&e->mmu);
    const vision_vl_config *vc = vision_model_config(e->vm);
    const int64_t Q = rows_per_tile(e), n = s->n_frames;
    const double q = rq->p->evs >= 0 ? rq->p->evs : vc->video_pruning_rate;
    uint8_t *keep = nvl_malloc((size_t)(n * Q));
    nvl_status st = keep ? NVL_OK : nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", s->name);
    if (st == NVL_OK) { /* scores over the rows where they are; only n x Q floats cross to the host */
        const nvl_tensor E = rows_tensor(e, s->all, n * Q);
        st = tokred_evs_mask_on(e->be, &E, n, Q, q, 0, keep, s->kept, err);
        if (st != NVL_OK) nvl_err_prefix(err, "%s", s->name);
    }
    if (st == NVL_OK) st = keep_rows(e, s, keep, n * Q, err);
    nvl_free(keep);
    return st;
}

void engine_vision_reset_source(api_engine *e, source *s) {
    nvl_freep(&s->ts);
    nvl_freep(&s->kept);
    kern_buffer_free(e->be, s->rows);
    s->rows = NULL;
    nvl_freep(&s->tiles);
    kern_buffer_free(e->be, s->all);
    s->all = NULL;
    nvl_freep(&s->ring);
    s->from_kept = NULL;
    s->n_rows = 0;
    s->n_tiles = s->n_frames = 0;
    s->ring_n = s->frames_ready = s->video_end = 0;
    s->t_decode = 0;
    s->started = s->finished = 0;
    s->units_done = 0;
    s->prep = 0;
}

/* Skips the sources of rq that need no more work; 1 when none is left (rq moves on). */
static int vision_advance(request *rq) {
    while (rq->vis_next < rq->n_src) {
        const source *s = &rq->src[rq->vis_next];
        if (s->from_kept || s->finished) rq->vis_next++;
        else break;
    }
    if (rq->vis_next < rq->n_src) return 0;
    int in_vision = 0; /* pages left out in this stage (those of the media stage are gone already) */
    for (int i = 0; i < rq->n_src && !in_vision; i++) in_vision = rq->src[i].skipped;
    if (in_vision || rq->n_skip_said < rq->res->n_skipped) {
        /* pages left out: removed once no media thread holds the sources, then said (not before:
           a request none of whose pages of a document could be read fails with the page's error) */
        api_engine *e = rq->e;
        pthread_mutex_lock(&e->mmu);
        const int busy = rq->media_busy;
        pthread_mutex_unlock(&e->mmu);
        if (busy) return 0;
        nvl_err er = {0};
        nvl_status st = engine_drop_skipped(rq, &er);
        if (st != NVL_OK) {
            engine_fail(rq, st, &er);
            return 1;
        }
        engine_skip_notices(rq);
        /* tiles lowered to fit pages that are no longer there: planned again (and the vision of
           the images and pages run again when they go up), so the answer is the one the pages
           read would get alone */
        const int again = in_vision ? engine_replan_after_skip(rq, &er) : 0;
        if (again < 0) {
            engine_fail(rq, er.code ? er.code : NVL_ERR_NOMEM, &er);
            return 1;
        }
        if (again) return 0;
    }
    rq->res->t_vision = nvl_now() - rq->t_vision0;
    rq->state = RQ_PROMPT;
    return 1;
}

/* s, whose tiles could not be made (st, *err), is left out when the request allows it (a PDF page
 * with skip_bad_pages: engine_skip_page): NVL_OK then; otherwise the status the request fails with
 * (*err its message): st, or at once when no page of s's document is left (engine_skip_check). */
static nvl_status leave_out(request *rq, source *s, nvl_status st, nvl_err *err) {
    if (!engine_skip_page(rq, s, st, err)) return st;
    s->skipped = 1;
    s->finished = 1;
    nvl_freep(&s->tiles);
    rq->res->t_media += s->t_media; /* (its rendering took that long) */
    s->t_media = 0;
    nvl_freep(&rq->pfx_text); /* a request waiting for this one compares its text without the page */
    rq->pfx_failed = 0;
    engine_bad_page_remember(rq->e, s, st, err);
    return engine_skip_check(rq, err);
}

typedef struct vis_unit {
    request *rq;
    int si, u;
} vis_unit;

int engine_vision_turn(api_engine *e) {
    const size_t tile = tile_bytes(e);
    const int64_t Q = rows_per_tile(e);
    vis_unit units[VISION_BATCH];
    int nb = 0;
    uint8_t *tiles = NULL; /* RGB8 tiles, normalised on the vision backend */
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
        int busy = rq->media_busy; /* and set when this turn queues a job */
        pthread_mutex_unlock(&e->mmu);
        for (int si = rq->vis_next; si < rq->n_src && nb < e->vision_batch && st == NVL_OK; si++) {
            source *s = &rq->src[si];
            if (s->from_kept || s->finished) continue; /* (a later video can end before an earlier one) */
            if (!s->started) {
                if (!s->is_video && e->media_thr_ok) { /* images and pages: tiles made on a media thread */
                    pthread_mutex_lock(&e->mmu);
                    const int prep = s->prep;
                    pthread_mutex_unlock(&e->mmu);
                    if (prep == 1) break; /* being made (from its queueing the source is the media thread's) */
                    if (prep == 0) { /* asked now, unless a media thread works for this request */
                        busy |= engine_queue_job(e, rq, si);
                        break;
                    }
                    if ((st = s->prep_st) != NVL_OK) { /* prep == 2: made, or why not */
                        er = s->prep_err;
                        if ((st = leave_out(rq, s, st, &er)) == NVL_OK) continue;
                        break;
                    }
                } else if ((st = engine_vision_start(rq, s, &er)) != NVL_OK) {
                    if ((st = leave_out(rq, s, st, &er)) == NVL_OK) continue;
                    break;
                }
                s->started = 1;
                rq->res->t_media += s->t_media;
                s->t_media = 0;
            }
            if (!s->is_video) {
                for (int u = s->units_done; u < s->n_tiles && nb < e->vision_batch; u++) {
                    memcpy(tiles + (size_t)nb * tile, s->tiles + (size_t)u * tile, tile);
                    units[nb++] = (vis_unit){rq, si, u};
                }
                continue;
            }
            /* a video: the frames its media thread has decoded so far (inline without one) */
            pthread_mutex_lock(&e->mmu);
            if (s->prep == 2) { /* a decoding job ended: its error, or room for the next */
                if ((st = s->prep_st) != NVL_OK) er = s->prep_err;
                s->prep = 0;
            }
            pthread_mutex_unlock(&e->mmu);
            if (st == NVL_OK && !e->media_thr_ok) st = engine_video_decode(rq, s, &er);
            if (st != NVL_OK) break;
            busy |= video_feed(e, rq, s, si);
            pthread_mutex_lock(&e->mmu);
            const int ready = s->frames_ready, end = s->video_end, decoding = s->prep == 1;
            pthread_mutex_unlock(&e->mmu);
            if (end && s->units_done == ready) { /* every frame was embedded before the end was known */
                if ((st = vision_finish_source(rq, s, si, &er)) != NVL_OK) break;
                vision_advance(rq);
                continue;
            }
            /* while its media thread decodes, a video waits for a whole batch of frames (or a full
             * ring, or its last frames): RADIO runs full batches instead of one frame per turn */
            int full = e->vision_batch < s->ring_n ? e->vision_batch : s->ring_n;
            if (full > s->n_planned - s->units_done) full = s->n_planned - s->units_done;
            if (decoding && !end && ready - s->units_done < full) continue;
            for (int u = s->units_done; u < ready && nb < e->vision_batch; u++) {
                memcpy(tiles + (size_t)nb * tile, s->ring + (size_t)(u % s->ring_n) * tile, tile);
                units[nb++] = (vis_unit){rq, si, u};
            }
        }
        /* the next image of this request is made while RADIO runs this batch (pipelining) */
        pthread_mutex_lock(&e->mmu);
        const int busy_now = rq->media_busy;
        pthread_mutex_unlock(&e->mmu);
        for (int si = rq->vis_next; st == NVL_OK && e->media_thr_ok && !busy_now && si < rq->n_src; si++) {
            source *s = &rq->src[si];
            if (s->from_kept || s->started || s->finished || s->is_video) continue;
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
        const char *out = e->vis_rows; /* the batch's rows, in the backend's memory */
        nvl_tensor rows = rows_tensor(e, e->vis_rows, nb * Q);
        nvl_status st = tokred_embed_tiles_rgb8_to(e->vm, &e->proj, tiles, nb, &rows, &er);
        const size_t unit_bytes = (size_t)Q * e->row_bytes;
        for (int j = 0; j < nb; j++) {
            request *rq = units[j].rq;
            if (rq->state != RQ_VISION) continue;
            source *s = &rq->src[units[j].si];
            nvl_err e1 = er;
            nvl_status s1 = st == NVL_OK ? source_rows(e, s, &e1) : st;
            if (s1 == NVL_OK) /* the unit's rows to their place among the source's, on the backend */
                s1 = kern_copy_within(e->be, (char *)(s->is_video ? s->all : s->rows) + (size_t)units[j].u * unit_bytes,
                                      out + (size_t)j * unit_bytes, unit_bytes, &e1);
            if (s1 != NVL_OK) {
                engine_fail(rq, s1, &e1);
                continue;
            }
            pthread_mutex_lock(&e->mmu); /* a video's media thread reads it (ring room) */
            s->units_done = units[j].u + 1;
            const int ready = s->frames_ready, end = s->video_end;
            pthread_mutex_unlock(&e->mmu);
            const int last_of_source = j + 1 == nb || units[j + 1].rq != rq || units[j + 1].si != units[j].si;
            if (!last_of_source) continue;
            int complete = s->units_done == s->n_tiles;
            if (s->is_video) {
                char label[512];
                engine_source_label(s, label, sizeof label);
                engine_progress(rq, API_STAGE_VISION, label, s->units_done, end ? ready : s->n_planned, s->t0);
                complete = end && s->units_done == ready;
                if (!complete) video_feed(e, rq, s, units[j].si); /* room in the ring now */
            }
            nvl_err e2 = {0};
            nvl_status s2 = complete ? vision_finish_source(rq, s, units[j].si, &e2) : NVL_OK;
            if (s2 != NVL_OK) engine_fail(rq, s2, &e2);
            else if (complete) vision_advance(rq);
        }
    }
    nvl_free(tiles);
    return nb;
}
