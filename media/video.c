/* Video and other still formats through FFmpeg (libavformat/libavcodec/libswscale).
 * Frame sampling (media.h): the frames' presentation times are read from the packets first (no
 * decoding), so duration and sample times are true for variable frame rates; at a constant rate
 * the rule is model.md §6.1 (vLLM's opencv loader): n = max(1, min(max_frames, total,
 * floor(duration * fps))) frames at indices linspace(0, total - 1, n) truncated. A frame's index
 * is found from its presentation timestamp, so frames
 * come out in presentation order whatever the codec's reordering; when the next wanted frame is
 * far ahead (SEEK_MIN_GAP frames) the demuxer seeks to the keyframe before it (once per wanted
 * frame: that keyframe may itself be more than SEEK_MIN_GAP frames before it) instead of
 * decoding everything in between. Only kept frames are converted and held (bounded memory).
 * AVERROR codes become nvl_status: AVERROR_INVALIDDATA -> NVL_ERR_FORMAT, ENOMEM -> NVL_ERR_NOMEM,
 * ENOENT -> NVL_ERR_NOT_FOUND, AVERROR_DECODER_NOT_FOUND -> NVL_ERR_UNSUPPORTED. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"

media_video_params media_video_params_default(void) {
    media_video_params p = {.fps = 2.0, .max_frames = 128, .start = 0.0, .end = 0.0};
    return p;
}

void media_frames_free(media_frames *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) media_image_free(f->frames[i]);
    nvl_free(f->frames);
    nvl_free(f);
}

#ifdef NVL_HAVE_VIDEO
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#define SEEK_MIN_GAP 300 /* frames: below this, decoding through is cheaper than a seek */

/* SEEK_MIN_GAP, or NVL_VIDEO_SEEK_GAP (a test's knob: seeks within short files); read once. */
static int64_t seek_min_gap(void) {
    static int64_t gap = 0;
    if (!gap) {
        const char *e = getenv("NVL_VIDEO_SEEK_GAP");
        const long g = e && *e ? strtol(e, NULL, 10) : 0;
        gap = g > 0 ? g : SEEK_MIN_GAP;
    }
    return gap;
}

static nvl_status av_status(int e) {
    if (e == AVERROR(ENOMEM)) return NVL_ERR_NOMEM;
    if (e == AVERROR(ENOENT)) return NVL_ERR_NOT_FOUND;
    if (e == AVERROR_DECODER_NOT_FOUND || e == AVERROR_DEMUXER_NOT_FOUND || e == AVERROR_PATCHWELCOME)
        return NVL_ERR_UNSUPPORTED;
    if (e == AVERROR(EIO) || e == AVERROR(EACCES)) return NVL_ERR_IO;
    return NVL_ERR_FORMAT;
}

static nvl_status av_fail(nvl_err *err, const char *name, const char *what, int e) {
    if (e == AVERROR_EXIT) return nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", name); /* (av_interrupt) */
    char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
    av_strerror(e, buf, sizeof buf);
    /* a decoder that meets damaged data may answer with any errno (libdav1d gives ENOSPC: "No
       space left on device"), which read alone blames the machine */
    if (av_status(e) == NVL_ERR_FORMAT && e < 0 && e > -4096 && !strcmp(what, "cannot decode")) /* (not opening) */
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: %s: the data is damaged or not what its stream says (the decoder "
                           "answered: %s)", name, what, buf);
    return nvl_err_set(err, av_status(e), "%s: %s: %s", name, what, buf);
}

typedef struct av_in {
    AVFormatContext *fmt;
    AVCodecContext *dec;     /* NULL until av_in_open_decoder */
    const AVCodec *codec;
    AVStream *st;
    int stream;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    AVIOContext *avio;
    const uint8_t *mem;
    size_t mem_len, mem_pos;
    struct av_cancel *cancel; /* NULL: none */
} av_in;

/* A caller's cancel (media_video_params.cancelled), also FFmpeg's interrupt callback: its
 * blocking reads (avformat_open_input, av_read_frame: each buffer refill) fail once it returns
 * nonzero. A demuxer may report that failure as the end of the file (mov does), so fired
 * remembers it: an interrupted read is never taken for the end. */
typedef struct av_cancel {
    int (*cancelled)(void *ctx);
    void *ctx;
    int fired;
} av_cancel;

static int av_cancelled(av_cancel *c) {
    if (c && !c->fired && c->cancelled && c->cancelled(c->ctx)) c->fired = 1;
    return c && c->fired;
}
static int av_interrupt(void *opaque) { return av_cancelled(opaque); }

static void av_in_close(av_in *in) {
    sws_freeContext(in->sws);
    av_frame_free(&in->frame);
    av_packet_free(&in->pkt);
    avcodec_free_context(&in->dec);
    avformat_close_input(&in->fmt);
    if (in->avio) {
        av_freep(&in->avio->buffer);
        avio_context_free(&in->avio);
    }
}

static int mem_read(void *opaque, uint8_t *buf, int n) {
    av_in *in = opaque;
    size_t left = in->mem_len - in->mem_pos;
    if (!left) return AVERROR_EOF;
    if ((size_t)n > left) n = (int)left;
    memcpy(buf, in->mem + in->mem_pos, (size_t)n);
    in->mem_pos += (size_t)n;
    return n;
}
static int64_t mem_seek(void *opaque, int64_t off, int whence) {
    av_in *in = opaque;
    if (whence == AVSEEK_SIZE) return (int64_t)in->mem_len;
    int64_t base = whence == SEEK_CUR ? (int64_t)in->mem_pos : whence == SEEK_END ? (int64_t)in->mem_len : 0;
    int64_t p = base + off;
    if (p < 0 || p > (int64_t)in->mem_len) return AVERROR(EINVAL);
    in->mem_pos = (size_t)p;
    return p;
}

/* Opens a file (path) or a memory buffer (mem) and finds its best video stream and a decoder for
 * it (in->codec); the decoder itself is opened by av_in_open_decoder. cancel (NULL: none) must
 * outlive in: FFmpeg's reads of the file answer AVERROR_EXIT once it says so. */
static nvl_status av_in_open_demuxer(av_in *in, const char *path, const uint8_t *mem, size_t len, const char *name,
                                     av_cancel *cancel, nvl_err *err) {
    memset(in, 0, sizeof *in);
    av_log_set_level(AV_LOG_QUIET);
    int e;
    if (!(in->fmt = avformat_alloc_context())) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    if (cancel && cancel->cancelled) {
        in->cancel = cancel;
        in->fmt->interrupt_callback.callback = av_interrupt;
        in->fmt->interrupt_callback.opaque = cancel;
    }
    if (mem) {
        in->mem = mem;
        in->mem_len = len;
        uint8_t *b = av_malloc(65536);
        in->avio = b ? avio_alloc_context(b, 65536, 0, in, mem_read, NULL, mem_seek) : NULL;
        if (!in->avio) {
            av_free(b);
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
        }
        in->fmt->pb = in->avio;
        in->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    }
    if ((e = avformat_open_input(&in->fmt, path, NULL, NULL)) < 0)
        return av_fail(err, name, "cannot open", av_cancelled(cancel) ? AVERROR_EXIT : e);
    e = avformat_find_stream_info(in->fmt, NULL);
    if (av_cancelled(cancel)) return av_fail(err, name, "cannot read stream info", AVERROR_EXIT);
    if (e < 0) return av_fail(err, name, "cannot read stream info", e);
    const AVCodec *codec = NULL;
    in->stream = av_find_best_stream(in->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (in->stream == AVERROR_STREAM_NOT_FOUND)
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: no video stream (the container has %u stream%s)", name,
                           in->fmt->nb_streams, in->fmt->nb_streams == 1 ? "" : "s");
    if (in->stream < 0 || !codec) {
        const AVStream *s0 = in->stream >= 0 ? in->fmt->streams[in->stream] : NULL;
        /* a stream whose codec could not be told (its header cut off: a truncated .mov) is
           damaged data, not an unsupported codec */
        for (unsigned i = 0; !s0 && i < in->fmt->nb_streams; i++)
            if (in->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) s0 = in->fmt->streams[i];
        if (!s0 || s0->codecpar->codec_id == AV_CODEC_ID_NONE)
            return nvl_err_set(err, NVL_ERR_FORMAT, "%s: the video stream's codec cannot be told (a damaged or cut-short "
                               "file?)", name);
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: no decoder for the video codec %s", name,
                           avcodec_get_name(s0->codecpar->codec_id));
    }
    in->st = in->fmt->streams[in->stream];
    in->codec = codec;
    in->frame = av_frame_alloc();
    in->pkt = av_packet_alloc();
    if (!in->frame || !in->pkt) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    return NVL_OK;
}

/* The stream's decoder (frame threads, as many as FFmpeg picks): a video being sampled opens it
 * at its first frame, so a video waiting for its turn holds no decoder threads or buffers. */
static nvl_status av_in_open_decoder(av_in *in, const char *name, nvl_err *err) {
    int e;
    in->dec = avcodec_alloc_context3(in->codec);
    if (!in->dec) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    if ((e = avcodec_parameters_to_context(in->dec, in->st->codecpar)) < 0) return av_fail(err, name, "decoder setup", e);
    in->dec->thread_count = 0;
    if ((e = avcodec_open2(in->dec, in->codec, NULL)) < 0) return av_fail(err, name, "cannot open the decoder", e);
    return NVL_OK;
}

/* Opens a file (path) or a memory buffer (mem) and its best video stream's decoder. */
static nvl_status av_in_open(av_in *in, const char *path, const uint8_t *mem, size_t len, const char *name,
                             nvl_err *err) {
    nvl_status st = av_in_open_demuxer(in, path, mem, len, name, NULL, err);
    return st == NVL_OK ? av_in_open_decoder(in, name, err) : st;
}

/* How a still image's samples are read (frame_to_rgb; video frames: 0) */
enum { STILL = 1,             /* gray and RGB samples are full range (a 16-bit gray TIFF was
                                 stretched as if 16..235 were its black and white) */
       STILL_NO_ALPHA = 2 };  /* the 4th byte is not alpha (a 32-bit BI_RGB BMP: Pillow and
                                 Windows ignore it; FFmpeg reads it as alpha) */

/* Converts the current frame to RGB (alpha composited on white), applying rotation. */
static nvl_status frame_to_rgb(av_in *in, int rotate, int still, const char *name, const media_limits *lim,
                               media_image **out, nvl_err *err) {
    AVFrame *f = in->frame;
    nvl_status st = media_check_pixels(name, f->width, f->height, lim, err);
    if (st != NVL_OK) return st;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    const int has_alpha = desc && (desc->flags & AV_PIX_FMT_FLAG_ALPHA) && !(still & STILL_NO_ALPHA);
    const int yuv = desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
    in->sws = sws_getCachedContext(in->sws, f->width, f->height, f->format, f->width, f->height,
                                   has_alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24, SWS_BICUBIC, NULL, NULL, NULL);
    if (!in->sws) return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s", name,
                                     av_get_pix_fmt_name(f->format));
    /* Scaler flags: bicubic, what FFmpeg's own conversion uses (the ffmpeg CLI's auto-inserted
     * scaler passes flags 0, which libswscale takes as bicubic; -sws_flags does not reach it).
     * They matter where libswscale has no direct converter (odd sizes, 4:4:4, 10-bit): there
     * SWS_POINT duplicated chroma samples and differed from ffmpeg by up to 11 levels. */
    /* colour matrix: the stream's; when unspecified swscale's default (BT.601), which is what
     * OpenCV and PyAV decode with, i.e. what the model's reference pipelines fed it */
    int cs = f->colorspace;
    if (cs == AVCOL_SPC_UNSPECIFIED || cs == AVCOL_SPC_RESERVED) cs = SWS_CS_DEFAULT;
    const int *coef = sws_getCoefficients(cs);
    sws_setColorspaceDetails(in->sws, coef, f->color_range == AVCOL_RANGE_JPEG || (still && !yuv),
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    const int ch = has_alpha ? 4 : 3;
    /* The destination rows are padded as FFmpeg pads its own frames: libswscale's SIMD
     * YUV->RGB converters write whole groups of 8 (or 16) pixels and, when a row of exactly
     * width * ch bytes cannot hold the last group, leave the last width % 8 columns unwritten
     * (the black right edge of 854-wide video). Rows of a whole number of 16-pixel groups,
     * aligned to 64 bytes, let every column be converted. */
    const size_t ls = (((size_t)(f->width + 15) & ~(size_t)15) * (size_t)ch + 63) & ~(size_t)63;
    uint8_t *tmp = nvl_calloc(ls * (size_t)f->height + 64, 1);
    if (!tmp) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
    uint8_t *dst[4] = {tmp, NULL, NULL, NULL};
    int dst_ls[4] = {(int)ls, 0, 0, 0};
    sws_scale(in->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_ls);
    const int W = f->width, H = f->height, swap = rotate == 90 || rotate == 270;
    media_image *img = NULL;
    if ((st = media_image_new(&img, swap ? H : W, swap ? W : H, err)) != NVL_OK) {
        nvl_free(tmp);
        return st;
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *s = tmp + (size_t)y * ls + (size_t)x * (size_t)ch;
            int dx = x, dy = y;
            if (rotate == 90) dx = H - 1 - y, dy = x;
            else if (rotate == 180) dx = W - 1 - x, dy = H - 1 - y;
            else if (rotate == 270) dx = y, dy = W - 1 - x;
            uint8_t *d = img->rgb + (size_t)dy * img->stride + (size_t)dx * 3;
            if (ch == 3) memcpy(d, s, 3);
            else
                for (int c = 0; c < 3; c++) d[c] = (uint8_t)((s[c] * s[3] + 255u * (255u - s[3]) + 127u) / 255u);
        }
    nvl_free(tmp);
    *out = img;
    return NVL_OK;
}

/* Clockwise display rotation in degrees (0, 90, 180, 270) from the stream's display matrix. */
static int stream_rotation(const AVStream *st) {
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    if (!m) return 0;
    double r = -av_display_rotation_get((const int32_t *)m); /* counter-clockwise -> clockwise */
    int d = (int)lround(r / 90.0) * 90;
    d = ((d % 360) + 360) % 360;
    return d;
}

/* Feeds packets until the decoder yields a frame (0), or the stream ends (AVERROR_EOF). */
static int next_frame(av_in *in, int *draining) {
    for (;;) {
        int r = avcodec_receive_frame(in->dec, in->frame);
        if (r != AVERROR(EAGAIN)) return r;
        if (*draining) return AVERROR_EOF;
        r = av_read_frame(in->fmt, in->pkt);
        if (r < 0 && (r == AVERROR_EXIT || av_cancelled(in->cancel))) return AVERROR_EXIT; /* not the end */
        if (r < 0) {
            *draining = 1;
            avcodec_send_packet(in->dec, NULL);
            continue;
        }
        if (in->pkt->stream_index == in->stream) {
            int s = avcodec_send_packet(in->dec, in->pkt);
            if (s < 0 && s != AVERROR(EAGAIN) && s != AVERROR_INVALIDDATA) {
                av_packet_unref(in->pkt);
                return s;
            }
        }
        av_packet_unref(in->pkt);
    }
}

nvl_status media_decode_ffmpeg_still(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                     int opaque, media_image **out, nvl_err *err) {
    *out = NULL;
    av_in in;
    nvl_status st = av_in_open(&in, NULL, buf, len, name, err);
    if (st == NVL_OK) {
        int draining = 0, r = next_frame(&in, &draining);
        if (r < 0) st = r == AVERROR_EOF ? nvl_err_set(err, NVL_ERR_FORMAT, "%s: no image in the file", name)
                                         : av_fail(err, name, "cannot decode", r);
        else st = frame_to_rgb(&in, stream_rotation(in.st), STILL | (opaque ? STILL_NO_ALPHA : 0), name, lim, out, err);
    }
    av_in_close(&in);
    return st;
}

int media_ffmpeg_decodes_av1(void) { return avcodec_find_decoder(AV_CODEC_ID_AV1) != NULL; }

/* Whether b[0..n) holds the bytes of s. */
static int has_bytes(const uint8_t *b, size_t n, const char *s) {
    const size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (b[i] == (uint8_t)s[0] && !memcmp(b + i, s, k)) return 1;
    return 0;
}

nvl_status media_decode_avif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    *out = NULL;
    /* FFmpeg's demuxer reads an AVIF's primary item alone: a grid of tiles (item type "grid" in
     * the meta box's iinf) or an alpha plane (an auxiliary item, its auxC URN) would come out as
     * a wrong picture, so they are refused. The top-level meta box is found and searched. */
    const uint8_t *meta = NULL;
    size_t meta_len = 0;
    for (size_t i = 0; i + 8 <= len;) {
        uint64_t sz = ((uint64_t)buf[i] << 24) | ((uint64_t)buf[i + 1] << 16) | ((uint64_t)buf[i + 2] << 8) | buf[i + 3];
        if (sz == 0) sz = len - i;
        if (sz < 8 || sz > len - i) break; /* 64-bit sizes only on media data: not needed here */
        if (!memcmp(buf + i + 4, "meta", 4)) {
            meta = buf + i, meta_len = (size_t)sz;
            break;
        }
        i += (size_t)sz;
    }
    if (!meta) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: AVIF without a meta box (damaged file)", name);
    if (has_bytes(meta, meta_len, "auxiliary:alpha") || has_bytes(meta, meta_len, "auxid:1"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unsupported image format: AVIF with an alpha channel (convert it to PNG)", name);
    if (has_bytes(meta, meta_len, "grid"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "%s: unsupported image format: AVIF made of a grid of tiles (convert it to PNG or JPEG)", name);
    return media_decode_ffmpeg_still(buf, len, name, lim, 0, out, err);
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The stream's frames in presentation order, from its packets (no decoding): each one's
 * presentation time in stream time base, sorted, and the end of the last one (its pts plus its
 * duration, or plus one nominal frame when the packet does not say). Packets the demuxer marks
 * to be discarded (edit lists) are not frames of the presentation. A packet without pts or dts
 * leaves *pts NULL: times are then frame index / nominal rate. Leaves the input at its end (the
 * caller reopens it: video_rewind). */
static nvl_status frame_times(av_in *in, double native, const char *name, int64_t **pts, int64_t *n, int64_t *end,
                              int64_t *n_packets, nvl_err *err) {
    *pts = NULL;
    *n = 0;
    *end = 0;
    *n_packets = 0;
    int64_t cap = 0, k = 0, last_end = INT64_MIN, last_end_dts = INT64_MIN;
    int64_t *t = NULL, *d = NULL, nominal = (int64_t)llround(1.0 / native / av_q2d(in->st->time_base));
    int all_pts = 1, all_dts = 1;
    int64_t min_pts = INT64_MAX, min_dts = INT64_MAX;
    int r;
    while ((r = av_read_frame(in->fmt, in->pkt)) >= 0) {
        *n_packets += in->pkt->stream_index == in->stream; /* (discarded ones too: the index counts them) */
        if (in->pkt->stream_index == in->stream && !(in->pkt->flags & AV_PKT_FLAG_DISCARD)) {
            const int64_t p = in->pkt->pts, q = in->pkt->dts, dur = in->pkt->duration > 0 ? in->pkt->duration : nominal;
            if (k == cap) {
                int64_t nc = cap ? cap * 2 : 1024;
                int64_t *nt = nvl_realloc(t, (size_t)nc * sizeof *t), *nd = nt ? nvl_realloc(d, (size_t)nc * sizeof *d) : NULL;
                if (nt) t = nt;
                if (!nt || !nd) {
                    nvl_free(t);
                    nvl_free(d);
                    av_packet_unref(in->pkt);
                    return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
                }
                d = nd, cap = nc;
            }
            t[k] = p;
            d[k++] = q;
            if (p == AV_NOPTS_VALUE) all_pts = 0;
            else {
                min_pts = p < min_pts ? p : min_pts;
                if (p + dur > last_end) last_end = p + dur;
            }
            if (q == AV_NOPTS_VALUE) all_dts = 0;
            else {
                min_dts = q < min_dts ? q : min_dts;
                if (q + dur > last_end_dts) last_end_dts = q + dur;
            }
        }
        av_packet_unref(in->pkt);
    }
    if (r == AVERROR_EXIT || av_cancelled(in->cancel)) { /* cancelled (a long file's every packet is read here) */
        nvl_free(t);
        nvl_free(d);
        return av_fail(err, name, "reading the frame times", AVERROR_EXIT);
    }
    *n = k;
    if (!all_pts && all_dts && k > 0) {
        /* packets without a presentation time (MPEG-PS gives one every few frames): the decode
           times, uniform in decode order, shifted by the reorder delay (the first presentation
           time less the first decode time) are the presentation times (dts + pts mixed in one
           list gave duplicates, and frames mapped to the wrong index) */
        const int64_t delay = min_pts != INT64_MAX && min_pts > min_dts ? min_pts - min_dts : 0;
        for (int64_t i = 0; i < k; i++) t[i] = d[i] + delay;
        last_end = last_end_dts + delay;
        all_pts = 1;
    }
    nvl_free(d);
    if (!all_pts || k == 0) {
        nvl_free(t);
        return NVL_OK;
    }
    qsort(t, (size_t)k, sizeof *t, cmp_i64); /* decode order -> presentation order */
    *pts = t;
    *end = last_end;
    return NVL_OK;
}

/* Index of the frame whose time is nearest v among the n sorted times t. */
static int64_t nearest_frame(const int64_t *t, int64_t n, int64_t v) {
    int64_t lo = 0, hi = n; /* first t[i] >= v */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (t[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    if (lo == n) return n - 1;
    if (lo > 0 && v - t[lo - 1] < t[lo] - v) return lo - 1;
    return lo;
}

struct media_video {
    av_in in;
    av_cancel cancel;    /* media_video_params.cancelled, read by av_interrupt while in is open */
    int open;            /* in holds an open input */
    char *name;          /* for messages */
    media_limits lim;
    media_video_info info;
    int64_t *want, *pts; /* wanted frame indices (n of them), the frames' presentation times */
    int64_t n, k, cur, total, t0;
    int64_t seeked_k; /* the wanted frame the last seek was for (-1: none): one seek per frame, or a
                         keyframe more than SEEK_MIN_GAP frames before it is sought forever */
    double tb, native, t_end;
    int rotate, draining, delivered, ended;
    int no_seek;         /* a seek overshot its wanted frame (MPEG-TS/PS seek by bytes, not to
                            keyframes): decoded through from the start since */
};

/* The input again from its first byte (the demuxer reopened; the decoder opened at the next
 * frame): an MPEG-TS or -PS stream has no index, and seeking to its start time there could land
 * past the first keyframe (a .ts of x264 lost its first GOP, or every frame). */
static nvl_status video_rewind(media_video *v, nvl_err *err) {
    av_in_close(&v->in);
    memset(&v->in, 0, sizeof v->in);
    v->open = 0;
    nvl_status st = av_in_open_demuxer(&v->in, v->name, NULL, 0, v->name, &v->cancel, err);
    v->open = 1;
    v->draining = 0;
    v->cur = -1;
    return st;
}

void media_video_close(media_video *v) {
    if (!v) return;
    if (v->open) av_in_close(&v->in);
    nvl_free(v->want);
    nvl_free(v->pts);
    nvl_free(v->name);
    nvl_free(v);
}

/* time of frame i (seconds from the stream's start) */
static double video_frame_t(const media_video *v, int64_t i) {
    return v->pts ? (double)(v->pts[i] - v->t0) * v->tb : (double)i / v->native;
}

nvl_status media_video_open(const char *path, const media_video_params *params, const media_limits *lim,
                            media_video **out, nvl_err *err) {
    *out = NULL;
    media_video_params p = params ? *params : media_video_params_default();
    media_limits dl = media_limits_default();
    if (!lim) lim = &dl;
    if (!(p.fps > 0) || p.max_frames < 1)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: fps %g and max_frames %d must be positive", path, p.fps, p.max_frames);
    if (p.max_frames > lim->max_frames) p.max_frames = lim->max_frames;
    nvl_status st = media_check_file(path, lim, err); /* size cap, readable */
    if (st != NVL_OK) return st;
    media_video *v = nvl_calloc(1, sizeof *v);
    if (!v || !(v->name = nvl_malloc(strlen(path) + 1))) {
        nvl_free(v);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(v->name, path, strlen(path) + 1);
    v->lim = *lim;
    v->cur = -1;
    v->seeked_k = -1;
    v->cancel = (av_cancel){p.cancelled, p.cancel_ctx, 0};
    st = av_in_open_demuxer(&v->in, path, NULL, 0, path, &v->cancel, err); /* the decoder at the first frame */
    v->open = 1;
    if (st != NVL_OK) goto fail;
    AVRational fr = av_guess_frame_rate(v->in.fmt, v->in.st, NULL);
    v->native = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    if (!(v->native > 0)) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: the video stream has no frame rate", path);
        goto fail;
    }
    int64_t pts_end = 0, n_packets = 0;
    if ((st = frame_times(&v->in, v->native, path, &v->pts, &v->total, &pts_end, &n_packets, err)) != NVL_OK) goto fail;
    if ((st = video_rewind(v, err)) != NVL_OK) goto fail; /* (not a seek to the start: see there) */
    if (v->total <= 0) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: the video stream has no frames", path);
        goto fail;
    }
    const int64_t total = v->total;
    v->tb = av_q2d(v->in.st->time_base);
    v->t0 = v->in.st->start_time != AV_NOPTS_VALUE ? v->in.st->start_time : v->pts ? v->pts[0] : 0;
    v->t_end = v->pts ? (double)(pts_end - v->t0) * v->tb : (double)total / v->native;
    v->info.native_fps = v->native;
    v->info.total_frames = total;
    v->info.listed_frames = v->in.st->nb_frames > n_packets ? v->in.st->nb_frames : 0;
    v->info.duration = v->t_end;
    /* window [start, end) as frame indices: the frames presented in it */
    int64_t first = 0, last = total - 1;
    while (first < total && p.start > 0 && video_frame_t(v, first) < p.start - 1e-9) first++;
    while (last >= 0 && p.end > 0 && video_frame_t(v, last) >= p.end - 1e-9) last--;
    if (first > last) {
        st = nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: the window %g-%g s holds no frame (the video lasts %.3f s)",
                         path, p.start, p.end, v->t_end);
        goto fail;
    }
    /* The window lasts from its first frame's time to the end of its last frame (the next
     * frame's time, or the stream's end): the true duration, gaps of a variable frame rate
     * included. n = floor(duration * fps) sample times spread evenly (numpy.linspace) from the
     * first to the last frame's time; each takes the frame on screen at that time (the last
     * frame presented at or before it), a frame taken once. At a constant rate this is the
     * index rule linspace(first, last, n) truncated. */
    const double w0 = video_frame_t(v, first), w1 = video_frame_t(v, last),
                 wend = last + 1 < total ? video_frame_t(v, last + 1) : v->t_end;
    const int64_t span = last - first + 1;
    int64_t n = (int64_t)floor((wend - w0) * p.fps + 1e-9);
    if (n > p.max_frames) n = p.max_frames;
    if (n > span) n = span;
    if (n < 1) n = 1;
    if (!(v->want = nvl_malloc((size_t)n * sizeof *v->want))) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int64_t nw = 0;
    for (int64_t i = 0, j = first; i < n; i++) {
        const double T = n == 1 ? w0 : i == n - 1 ? w1 : w0 + (double)i * ((w1 - w0) / (double)(n - 1));
        while (j < last && video_frame_t(v, j + 1) <= T + 1e-6) j++;
        if (nw == 0 || v->want[nw - 1] != j) v->want[nw++] = j;
    }
    v->n = nw;
    v->info.n_planned = (int)nw;
    v->rotate = stream_rotation(v->in.st);
    *out = v;
    return NVL_OK;
fail:
    media_video_close(v);
    return st;
}

const media_video_info *media_video_get_info(const media_video *v) { return &v->info; }

int media_video_planned(const media_video *v, int k, int64_t *index, double *timestamp) {
    if (k < 0 || k >= v->n) return 0;
    *index = v->want[k];
    *timestamp = video_frame_t(v, v->want[k]);
    return 1;
}

nvl_status media_video_next(media_video *v, media_image **out, nvl_err *err) {
    *out = NULL;
    if (v->ended) return NVL_OK;
    nvl_status st = NVL_OK;
    int just_sought = 0;
    while (v->k < v->n) {
        if (av_cancelled(&v->cancel)) { /* between decoded frames: a wanted frame may lie thousands
                                           of frames past its keyframe (a screen recording) */
            v->ended = 1;
            return nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", v->name);
        }
        if (!v->no_seek && v->want[v->k] - v->cur > seek_min_gap() && v->cur >= 0 && v->seeked_k != v->k) {
            v->seeked_k = v->k;
            int64_t ts = v->pts ? v->pts[v->want[v->k]] : v->t0 + (int64_t)floor((double)v->want[v->k] / v->native / v->tb);
            if (av_seek_frame(v->in.fmt, v->in.stream, ts, AVSEEK_FLAG_BACKWARD) >= 0) {
                avcodec_flush_buffers(v->in.dec);
                v->draining = 0;
                just_sought = 1;
            }
        }
        if (!v->in.dec && (st = av_in_open_decoder(&v->in, v->name, err)) != NVL_OK) { /* (the first frame; a rewind) */
            v->ended = 1;
            return st;
        }
        int r = next_frame(&v->in, &v->draining);
        int64_t fp = r >= 0 ? (v->in.frame->best_effort_timestamp != AV_NOPTS_VALUE ? v->in.frame->best_effort_timestamp
                                                                                     : v->in.frame->pts)
                            : AV_NOPTS_VALUE;
        if (just_sought && (r == AVERROR_EOF || (r >= 0 && v->pts && fp != AV_NOPTS_VALUE &&
                                                 nearest_frame(v->pts, v->total, fp) > v->want[v->k]))) {
            /* the seek landed past the frame it sought (MPEG-TS/PS seek by bytes, not to keyframes;
               or at the end): from the start again, decoding through, no more seeks */
            just_sought = 0;
            v->no_seek = 1;
            if (r >= 0) av_frame_unref(v->in.frame);
            if ((st = video_rewind(v, err)) != NVL_OK) {
                v->ended = 1;
                return st;
            }
            continue;
        }
        just_sought = 0;
        if (r == AVERROR_EOF) break;
        if (r < 0) {
            v->ended = 1;
            return av_fail(err, v->name, "cannot decode", r);
        }
        if (v->pts && fp != AV_NOPTS_VALUE) v->cur = nearest_frame(v->pts, v->total, fp);
        else v->cur = fp != AV_NOPTS_VALUE ? (int64_t)llround((double)(fp - v->t0) * v->tb * v->native) : v->cur + 1;
        while (v->k < v->n && v->want[v->k] < v->cur) v->k++; /* a wanted index with no frame of its own: skip */
        if (v->k < v->n && v->want[v->k] == v->cur) {
            media_image *img = NULL;
            st = frame_to_rgb(&v->in, v->rotate, 0, v->name, &v->lim, &img, err);
            av_frame_unref(v->in.frame);
            if (st != NVL_OK) {
                v->ended = 1;
                return st;
            }
            img->index = v->cur;
            img->timestamp = v->pts ? video_frame_t(v, v->cur)
                             : fp != AV_NOPTS_VALUE ? (double)(fp - v->t0) * v->tb : (double)v->cur / v->native;
            v->k++;
            while (v->k < v->n && v->want[v->k] == v->cur) v->k++;
            if (!v->delivered++) {
                v->info.width = img->width;
                v->info.height = img->height;
            }
            *out = img;
            return NVL_OK;
        }
        av_frame_unref(v->in.frame);
    }
    v->ended = 1;
    if (v->delivered == 0) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: no frame could be decoded", v->name);
    return NVL_OK;
}

nvl_status media_video_sample(const char *path, const media_video_params *params,
                              const media_limits *lim, media_frames **out, nvl_err *err) {
    *out = NULL;
    media_video *v = NULL;
    nvl_status st = media_video_open(path, params, lim, &v, err);
    if (st != NVL_OK) return st;
    media_frames *f = nvl_calloc(1, sizeof *f);
    if (!f || !(f->frames = nvl_calloc((size_t)v->info.n_planned, sizeof *f->frames))) {
        nvl_free(f);
        media_video_close(v);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        media_image *img = NULL;
        if ((st = media_video_next(v, &img, err)) != NVL_OK || !img) break;
        f->frames[f->n++] = img;
    }
    if (st == NVL_OK) {
        f->native_fps = v->info.native_fps;
        f->total_frames = v->info.total_frames;
        f->listed_frames = v->info.listed_frames;
        f->duration = v->info.duration;
        f->width = v->info.width;
        f->height = v->info.height;
        *out = f;
        f = NULL;
    }
    media_frames_free(f);
    media_video_close(v);
    return st;
}

#else
int media_ffmpeg_decodes_av1(void) { return 0; }
nvl_status media_decode_avif(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                             media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: unsupported image format: AVIF needs FFmpeg, which is not built into this nanovl", name);
}
nvl_status media_decode_ffmpeg_still(const uint8_t *buf, size_t len, const char *name, const media_limits *lim,
                                     int opaque, media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim, (void)opaque;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: this format needs FFmpeg, which is not built into this nanovl", name);
}
nvl_status media_video_sample(const char *path, const media_video_params *p, const media_limits *lim,
                              media_frames **out, nvl_err *err) {
    (void)p, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: video support is not built into this nanovl", path);
}
struct media_video {
    media_video_info info;
};
nvl_status media_video_open(const char *path, const media_video_params *p, const media_limits *lim, media_video **out,
                            nvl_err *err) {
    (void)p, (void)lim;
    *out = NULL;
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: video support is not built into this nanovl", path);
}
const media_video_info *media_video_get_info(const media_video *v) { return &v->info; }
int media_video_planned(const media_video *v, int k, int64_t *index, double *timestamp) {
    (void)v, (void)k, (void)index, (void)timestamp;
    return 0;
}
nvl_status media_video_next(media_video *v, media_image **out, nvl_err *err) {
    (void)v, (void)err;
    *out = NULL;
    return NVL_OK;
}
void media_video_close(media_video *v) { (void)v; }
#endif
