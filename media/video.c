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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media_impl.h"
#include "base/clock.h"

media_video_params media_video_params_default(void) {
    media_video_params p = {.fps = 2.0, .max_frames = 128, .start = 0.0, .end = 0.0};
    return p;
}

/* media.h's defaults: in this process, 120 s a step, 4096 MiB */
#define VIDEO_SANDBOX_DEFAULT {.exe = NULL, .timeout_s = 120, .max_mb = 4096, .strict = 0}

media_video_sandbox media_video_sandbox_default(void) {
    const media_video_sandbox sb = VIDEO_SANDBOX_DEFAULT;
    return sb;
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

/* SEEK_MIN_GAP, or NVL_VIDEO_SEEK_GAP (a test's knob: seeks within short files). Read each time:
 * a test sets it between videos (cached by the first video, the tests' seeking passes did not seek). */
static int64_t seek_min_gap(void) {
    const char *e = getenv("NVL_VIDEO_SEEK_GAP");
    const long g = e && *e ? strtol(e, NULL, 10) : 0;
    return g > 0 ? g : SEEK_MIN_GAP;
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
    if (e == AVERROR_INVALIDDATA && !strcmp(what, "cannot open")) /* (its first bytes looked like a format FFmpeg
                                                                      reads: "Invalid data" alone said little) */
        return nvl_err_set(err, NVL_ERR_FORMAT, "%s: cannot open: damaged, or not the image or video its first bytes "
                           "suggest (FFmpeg: %s)", name, buf);
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
    /* a container whose timestamps may restart or jump (AVFMT_TS_DISCONT: MPEG-TS, -PS; pieces
       joined end to end, `cat a.ts b.ts`): the video packets' times made continuous as read */
    int ts_disc;             /* the format may jump */
    int64_t ts_offset;       /* added to the stream's packet times from here */
    int64_t ts_last;         /* the last packet's corrected decode time plus its duration; AV_NOPTS_VALUE: none yet */
    int64_t ts_jumps;        /* jumps corrected so far */
    int64_t ts_nominal;      /* one nominal frame, the duration of a packet that states none */
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
                                     av_cancel *cancel, const AVInputFormat *ifmt, nvl_err *err) {
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
    if ((e = avformat_open_input(&in->fmt, path, ifmt, NULL)) < 0)
        return av_fail(err, name, "cannot open", av_cancelled(cancel) ? AVERROR_EXIT : e);
    e = avformat_find_stream_info(in->fmt, NULL);
    if (av_cancelled(cancel)) return av_fail(err, name, "cannot read stream info", AVERROR_EXIT);
    if (e < 0) return av_fail(err, name, "cannot read stream info", e);
    const AVCodec *codec = NULL;
    in->stream = av_find_best_stream(in->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (in->stream == AVERROR_STREAM_NOT_FOUND) /* streams, none of them video (audio only): not what nanovl reads;
                                                   none at all: a damaged container */
        return nvl_err_set(err, in->fmt->nb_streams ? NVL_ERR_UNSUPPORTED : NVL_ERR_FORMAT,
                           "%s: no video stream (the container has %u stream%s%s)", name, in->fmt->nb_streams,
                           in->fmt->nb_streams == 1 ? "" : "s",
                           in->fmt->nb_streams && in->fmt->streams[0]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO ? ": audio" : "");
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
    in->ts_disc = !!(in->fmt->iformat->flags & AVFMT_TS_DISCONT);
    in->ts_last = AV_NOPTS_VALUE;
    AVRational fr = av_guess_frame_rate(in->fmt, in->st, NULL);
    in->ts_nominal = fr.num > 0 && fr.den > 0 ? av_rescale_q(1, av_inv_q(fr), in->st->time_base) : 0;
    if (in->ts_nominal < 1) in->ts_nominal = 1;
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
                             const AVInputFormat *ifmt, nvl_err *err) {
    nvl_status st = av_in_open_demuxer(in, path, mem, len, name, NULL, ifmt, err);
    return st == NVL_OK ? av_in_open_decoder(in, name, err) : st;
}

/* How a still image's samples are read (frame_to_rgb; video frames: 0) */
enum { STILL = 1,             /* gray and RGB samples are full range (a 16-bit gray TIFF was
                                 stretched as if 16..235 were its black and white) */
       STILL_NO_ALPHA = 2 };  /* the 4th byte is not alpha (a 32-bit BI_RGB BMP: Pillow and
                                 Windows ignore it; FFmpeg reads it as alpha) */

/* Whether a still's frame has 16-bit gray or RGB samples (TIFF's gray16, ya16, rgb48, rgba64, gbrp16,
 * either byte order): those are converted here by each sample's high byte, as Pillow's unpackers
 * read 16-bit RGB ("RGB;16L", "RGB;16B": the high byte) and as nanovl reads 16-bit gray (PNG through
 * libpng's png_set_strip_16 too). swscale rounds v/257 to the nearest level instead: 1 level
 * above Pillow on about half the samples (a differential test against Pillow found it). */
static int still_16bit(const AVPixFmtDescriptor *d) {
    if (!d || (d->flags & (AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_FLOAT)) ||
        d->log2_chroma_w || d->log2_chroma_h || d->nb_components < 1 || d->nb_components > 4)
        return 0;
    if (!(d->flags & AV_PIX_FMT_FLAG_RGB) && d->nb_components > 2) return 0; /* YUV: swscale's matrix */
    for (int c = 0; c < d->nb_components; c++)
        if (d->comp[c].depth != 16) return 0;
    return 1;
}

/* Converts the current frame to RGB (alpha composited on white), applying rotation. */
static nvl_status frame_to_rgb(av_in *in, int rotate, int still, const char *name, const media_limits *lim,
                               media_image **out, nvl_err *err) {
    AVFrame *f = in->frame;
    nvl_status st = media_check_pixels(name, f->width, f->height, lim, err);
    if (st != NVL_OK) return st;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    const int has_alpha = desc && (desc->flags & AV_PIX_FMT_FLAG_ALPHA) && !(still & STILL_NO_ALPHA);
    const int yuv = desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
    const int deep = still && still_16bit(desc);
    if (!deep)
        in->sws = sws_getCachedContext(in->sws, f->width, f->height, f->format, f->width, f->height,
                                       has_alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24, SWS_BICUBIC, NULL, NULL, NULL);
    if (!deep && !in->sws) return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s", name,
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
    if (!deep)
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
    if (deep) { /* each sample's high byte (still_16bit), in sws_scale's layout */
        const int nc = desc->nb_components, gray = nc < 3;
        uint16_t *line = nvl_malloc((size_t)f->width * (size_t)nc * sizeof *line);
        if (!line) {
            nvl_free(tmp);
            return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", name);
        }
        for (int y = 0; y < f->height; y++) {
            for (int c = 0; c < nc; c++)
                av_read_image_line2(line + (size_t)c * (size_t)f->width, (const uint8_t **)f->data, f->linesize, desc, 0, y,
                                    c, f->width, 0, 2);
            for (int x = 0; x < f->width; x++) {
                uint8_t *d = tmp + (size_t)y * ls + (size_t)x * (size_t)ch;
                for (int c = 0; c < 3; c++) d[c] = (uint8_t)(line[(size_t)(gray ? 0 : c) * (size_t)f->width + x] >> 8);
                if (ch == 4) d[3] = (uint8_t)(line[(size_t)(gray ? 1 : 3) * (size_t)f->width + x] >> 8);
            }
        }
        nvl_free(line);
    } else {
        sws_scale(in->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_ls);
    }
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

/* A video packet's times on one continuous timeline (in->ts_disc formats only). As FFmpeg's own
 * command line does for such formats (fftools ts_discontinuity_detect, with its default
 * -dts_delta_threshold of 10 s): a decode time more than 0.1 s before the previous packet's end,
 * or more than 10 s after it, starts a new piece, shifted to follow the previous packet (the time it
 * ended: its decode time plus its duration, or one nominal frame). pts and dts move together, so
 * the reorder delay is kept; the decoder passes the shifted times on to its frames. The same
 * packets read in the same order get the same times (frame_times, then the decoding pass; a
 * rewind starts over). Times in the stream's time base. */
static void packet_continuous_ts(av_in *in) {
    AVPacket *p = in->pkt;
    if (!in->ts_disc || p->stream_index != in->stream) return;
    if (p->dts == AV_NOPTS_VALUE) { /* (decode times only: presentation times go back with B-frames) */
        if (p->pts != AV_NOPTS_VALUE) p->pts += in->ts_offset;
        return;
    }
    int64_t t = p->dts + in->ts_offset;
    const AVRational tb = in->st->time_base;
    if (in->ts_last != AV_NOPTS_VALUE) {
        const int64_t back = av_rescale_q(AV_TIME_BASE / 10, AV_TIME_BASE_Q, tb),
                      ahead = av_rescale_q(10LL * AV_TIME_BASE, AV_TIME_BASE_Q, tb);
        if (t + back < in->ts_last || t > in->ts_last + ahead) {
            const int64_t delta = in->ts_last - t;
            in->ts_offset += delta;
            t += delta;
            in->ts_jumps++;
        }
    }
    if (in->ts_offset) {
        if (p->pts != AV_NOPTS_VALUE) p->pts += in->ts_offset;
        if (p->dts != AV_NOPTS_VALUE) p->dts += in->ts_offset;
    }
    in->ts_last = t + (p->duration > 0 ? p->duration : in->ts_nominal);
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
            packet_continuous_ts(in);
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
                                     int opaque, const char *demuxer, media_image **out, nvl_err *err) {
    *out = NULL;
    av_in in;
    nvl_status st = av_in_open(&in, NULL, buf, len, name, demuxer ? av_find_input_format(demuxer) : NULL, err);
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
    return media_decode_ffmpeg_still(buf, len, name, lim, 0, NULL, out, err);
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
                              int64_t *n_packets, int64_t *n_lead, int *cut, nvl_err *err) {
    *cut = 0;
    *pts = NULL;
    *n = 0;
    *end = 0;
    *n_packets = 0;
    *n_lead = 0;
    int64_t cap = 0, k = 0, last_end = INT64_MIN, last_end_dts = INT64_MIN, first_key = -1;
    int64_t *t = NULL, *d = NULL, nominal = (int64_t)llround(1.0 / native / av_q2d(in->st->time_base));
    int all_pts = 1, all_dts = 1;
    int r;
    int last_corrupt = 0, own_corrupt = 0; /* the last packet read (any stream's; the video's own) was read short */
    int64_t prev_end = INT64_MIN, prev_end_dts = INT64_MIN;
    while ((r = av_read_frame(in->fmt, in->pkt)) >= 0) {
        *n_packets += in->pkt->stream_index == in->stream; /* (discarded ones too: the index counts them) */
        last_corrupt = (in->pkt->flags & AV_PKT_FLAG_CORRUPT) != 0;
        if (in->pkt->stream_index == in->stream && !(in->pkt->flags & AV_PKT_FLAG_DISCARD)) own_corrupt = last_corrupt;
        packet_continuous_ts(in);
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
            if (first_key < 0 && (in->pkt->flags & AV_PKT_FLAG_KEY)) first_key = k;
            t[k] = p;
            d[k++] = q;
            prev_end = last_end, prev_end_dts = last_end_dts; /* (undone if this packet is dropped as cut) */
            if (p == AV_NOPTS_VALUE) all_pts = 0;
            else if (p + dur > last_end) last_end = p + dur;
            if (q == AV_NOPTS_VALUE) all_dts = 0;
            else if (q + dur > last_end_dts) last_end_dts = q + dur;
        }
        av_packet_unref(in->pkt);
    }
    if (r == AVERROR_EXIT || av_cancelled(in->cancel)) { /* cancelled (a long file's every packet is read here) */
        nvl_free(t);
        nvl_free(d);
        return av_fail(err, name, "reading the frame times", AVERROR_EXIT);
    }
    /* cut short: the packets end in one read short (the demuxer marks it corrupt) or in an error
       (a fragmented MP4's last fragment, an FLV's last tag: neither has an index to tell) */
    *cut = last_corrupt || r != AVERROR_EOF || own_corrupt;
    if (own_corrupt && k > 1) {
        /* the video's last packet, read short, is not a frame of the file: it makes none (H.264,
           HEVC, VP9: ffmpeg's command line gets nothing of it), and counted, it stretched the
           sampled span past the frames there are (a B-frame's time, or the planned end, then had
           no frame). (An H.263 one may still make a partial frame: it is then not planned.) */
        k--;
        last_end = prev_end, last_end_dts = prev_end_dts;
    }
    if (first_key > 0) {
        /* packets before the first keyframe (a recording begun, or a .ts cut, within a GOP): their
           references are not in the file, so no decoder makes frames of them (FFmpeg's command
           line starts at the keyframe). Counted, they took sampled times, lost as the frames never
           came: a cut .ts gave 2 frames of the 4 the rule asks. (No packet marked a keyframe: all
           kept.) */
        k -= first_key;
        memmove(t, t + first_key, (size_t)k * sizeof *t);
        memmove(d, d + first_key, (size_t)k * sizeof *d);
        *n_lead = first_key;
    }
    *n = k;
    if (!all_pts && all_dts && k > 0) {
        int64_t min_pts = INT64_MAX, min_dts = INT64_MAX; /* (of the packets kept) */
        for (int64_t i = 0; i < k; i++) {
            if (t[i] != AV_NOPTS_VALUE && t[i] < min_pts) min_pts = t[i];
            if (d[i] < min_dts) min_dts = d[i];
        }
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
    char *file;          /* what is opened (the name, or the decoder process's /proc/self/fd/N) */
    /* decoded in a decoder process (media_video_sandbox): these, info and want; nothing above */
    int remote;
    int counted;         /* proc is counted in g_n_decoders */
    media_proc proc;     /* pid 0 once it has ended */
    int fd;              /* the file, passed to the decoder process; -1: none */
    double *want_t;      /* the planned frames' times */
    double timeout_s, max_mb;
    media_video_params params; /* (to start its decoder again) */
    int reopening;       /* the decoder started again is reading the frame times (for messages) */
    media_video *local;  /* no decoder could start again: decoded in this process from here */
    media_limits lim;
    media_video_info info;
    int64_t *want, *pts; /* wanted frame indices (n of them), the frames' presentation times */
    int64_t n, k, cur, total, t0;
    int64_t seeked_k; /* the wanted frame the last seek was for (-1: none): one seek per frame, or a
                         keyframe more than SEEK_MIN_GAP frames before it is sought forever */
    double tb, native, t_end;
    int rotate, draining, delivered, ended;
    int cut_errors; /* decoding errors passed over in a file cut short, in all (its cut packet's; at most 16) */
    int no_seek;         /* a seek overshot its wanted frame (MPEG-TS/PS seek by bytes, not to
                            keyframes): decoded through from the start since */
    int ts_continuous;   /* the frame times were made continuous (av_in.ts_disc, jumps found):
                            each decoding pass from the start does the same, and never seeks */
    int cfr;             /* every frame time is within one time-base tick of a constant rate: frame i
                            is at t_first + i / native (video_constant_rate) */
    double t_first;      /* (cfr) the first frame's time, seconds from t0 */
    int cut_short;       /* the packets end cut short (frame_times): the decoding errors of the cut pass over */
    AVFrame *held;       /* the last frame decoded and not taken, since the last one taken (held_idx): taken
                            in place of the planned frames the stream ends before (its last packet cut) */
    int64_t held_idx, held_fp, taken_idx; /* (held_fp: its time; taken_idx: the last frame taken, -1 none) */
    int64_t n_lead;      /* packets before the first keyframe, not frames of it (frame_times): a frame a
                            decoder still makes of them, earlier than the first, is passed over */
};

/* The input again from its first byte (the demuxer reopened; the decoder opened at the next
 * frame): an MPEG-TS or -PS stream has no index, and seeking to its start time there could land
 * past the first keyframe (a .ts of x264 lost its first GOP, or every frame). */
static nvl_status video_rewind(media_video *v, nvl_err *err) {
    av_in_close(&v->in);
    memset(&v->in, 0, sizeof v->in);
    v->open = 0;
    nvl_status st = av_in_open_demuxer(&v->in, v->file, NULL, 0, v->name, &v->cancel, NULL, err);
    v->open = 1;
    v->in.ts_disc = v->ts_continuous; /* (frame_times found jumps: the same correction, from the start) */
    v->draining = 0;
    v->cur = -1;
    return st;
}

static void decoder_stop(media_video *v);

void media_video_close(media_video *v) {
    if (!v) return;
    if (v->open) av_in_close(&v->in);
    av_frame_free(&v->held);
    if (v->remote) decoder_stop(v);
    media_video_close(v->local);
    if (v->fd >= 0) close(v->fd);
    nvl_free(v->want);
    nvl_free(v->want_t);
    nvl_free(v->pts);
    nvl_free(v->name);
    nvl_free(v->file);
    nvl_free(v);
}

/* time of frame i (seconds from the stream's start) */
static double video_frame_t(const media_video *v, int64_t i) {
    if (v->cfr) return v->t_first + (double)i / v->native;
    return v->pts ? (double)(v->pts[i] - v->t0) * v->tb : (double)i / v->native;
}

/* Whether the frame times are a constant rate at v->native, each within one tick of the time base
 * (containers that keep times in milliseconds -- Matroska, WebM, MP4 with timescale 1000 -- round
 * 60 fps to 0, 17, 33, 50 ms ...). Planned on those rounded times, a 3 s 60 fps WebM lasted 2.999 s
 * and got 5 frames where vLLM's loader (frame count / fps, model.md 6.1) takes 6, and at 30 fps
 * linspace's whole-number picks fell one frame early (a review). A frame rate of less than 4 ticks
 * a frame is not judged (the rounding would pass for any rate). */
static int video_constant_rate(const media_video *v) {
    if (!v->pts || v->total < 2 || !(v->native > 0) || 1.0 / v->native < 4 * v->tb) return 0;
    const double tol = v->tb * (1 + 1e-6) + 1e-12;
    for (int64_t i = 0; i < v->total; i++)
        if (fabs((double)(v->pts[i] - v->pts[0]) * v->tb - (double)i / v->native) > tol) return 0;
    return 1;
}

/* A handle with its name (and file) copied, fd -1; NULL when out of memory. */
static media_video *video_new(const char *file, const char *name) {
    media_video *v = nvl_calloc(1, sizeof *v);
    if (!v) return NULL;
    v->fd = -1;
    v->proc.fd = -1;
    v->held_idx = v->taken_idx = -1;
    v->name = nvl_strdup(name);
    v->file = nvl_strdup(file);
    if (!v->name || !v->file) {
        media_video_close(v);
        return NULL;
    }
    return v;
}

/* The caller's params (NULL: the defaults) checked, max_frames capped by lim's, into *p. */
static nvl_status video_params(const char *name, const media_video_params *params, const media_limits *lim,
                               media_video_params *p, nvl_err *err) {
    *p = params ? *params : media_video_params_default();
    if (!(p->fps > 0) || p->max_frames < 1)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: fps %g and max_frames %d must be positive", name, p->fps,
                           p->max_frames);
    if (p->max_frames > lim->max_frames) p->max_frames = lim->max_frames;
    return NVL_OK;
}

/* media_video_open in this process: file is what FFmpeg opens, name what messages say. */
static nvl_status video_open_local(const char *file, const char *name, const media_video_params *params,
                                   const media_limits *lim, media_video **out, nvl_err *err) {
    *out = NULL;
    const char *path = name;
    media_limits dl = media_limits_default();
    if (!lim) lim = &dl;
    media_video_params p;
    nvl_status st = video_params(name, params, lim, &p, err);
    if (st != NVL_OK) return st;
    st = media_check_file(file, lim, err); /* size cap, readable (the decoder process: the
                                                          parent checked it by name) */
    if (st != NVL_OK) return st;
    media_video *v = video_new(file, name);
    if (!v) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    v->lim = *lim;
    v->cur = -1;
    v->seeked_k = -1;
    v->cancel = (av_cancel){p.cancelled, p.cancel_ctx, 0};
    st = av_in_open_demuxer(&v->in, file, NULL, 0, path, &v->cancel, NULL, err); /* the decoder at the first frame */
    v->open = 1;
    if (st != NVL_OK) goto fail;
    AVRational fr = av_guess_frame_rate(v->in.fmt, v->in.st, NULL);
    v->native = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0;
    if (!(v->native > 0)) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: the video stream has no frame rate", path);
        goto fail;
    }
    int64_t pts_end = 0, n_packets = 0;
    if ((st = frame_times(&v->in, v->native, path, &v->pts, &v->total, &pts_end, &n_packets, &v->n_lead, &v->cut_short,
                          err)) != NVL_OK)
        goto fail;
    /* pieces joined end to end: a seek goes by the file's own (restarting) times, which the
       continuous ones cannot be mapped back to; decoded through instead. Without a jump the
       decoding pass leaves the times alone (after a seek the first packet read follows no
       packet before it: a seek of 13 s looked like a jump past 10 s, and every frame after it
       was taken 13 s early; a review) */
    v->ts_continuous = v->in.ts_jumps > 0;
    if (v->ts_continuous) v->no_seek = 1;
    if ((st = video_rewind(v, err)) != NVL_OK) goto fail; /* (not a seek to the start: see there) */
    if (v->total <= 0) {
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: the video stream has no frames", path);
        goto fail;
    }
    const int64_t total = v->total;
    v->tb = av_q2d(v->in.st->time_base);
    v->t0 = v->in.st->start_time != AV_NOPTS_VALUE ? v->in.st->start_time : v->pts ? v->pts[0] : 0;
    v->t_end = v->pts ? (double)(pts_end - v->t0) * v->tb : (double)total / v->native;
    if ((v->cfr = video_constant_rate(v))) { /* (a packet's own duration was rounded too) */
        v->t_first = (double)(v->pts[0] - v->t0) * v->tb;
        v->t_end = v->t_first + (double)total / v->native;
    }
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
        if (v->cfr) { /* the index rule itself, as numpy.linspace(first, last, n).astype(int) computes it
                         (i * step + start, truncated; the last one last): 114.99999999999999 is 114
                         (linspace(0, 230, 15)), which the times' 1e-6 s slack below took for 115 (a review) */
            j = n == 1 ? first : i == n - 1 ? last : (int64_t)((double)i * ((double)(last - first) / (double)(n - 1)) + (double)first);
        } else {
            const double T = n == 1 ? w0 : i == n - 1 ? w1 : w0 + (double)i * ((w1 - w0) / (double)(n - 1));
            while (j < last && video_frame_t(v, j + 1) <= T + 1e-6) j++;
        }
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

// ---------------------------------------------------------------------------
// The decoder process (media_video_sandbox): the same open and next, in `exe --video-decode-worker`.
// Protocol on its fd 3 (proc.c), host byte order (both ends are this executable): it says
// VIDEO_HELLO; the parent sends a vid_open, the name's bytes and one byte carrying the file's
// descriptor; each request is answered by a vid_rep and its message bytes, then on success:
//   VIDEO_OPEN  a vid_info, then n_planned (int64 index, double time) pairs
//   VIDEO_NEXT  a vid_frame, then (when present) height rows of width * 3 RGB bytes
// The decoder decodes one video and ends with it (its parent kills it at the video's end, on an
// error, past a bound or on a cancel; a decoder is never restarted mid-video: one stopped under
// VIDEO_KEEP_DECODERS right after its open is started again before the first frame).

#define VIDEO_KEEP_DECODERS 8 /* running decoders beyond which a video's is stopped after its open */

static struct {
    media_video_sandbox sb;
    char exe[4096];
} g_vsandbox = {.sb = VIDEO_SANDBOX_DEFAULT};
static int g_n_decoders; /* running decoder processes (atomic) */


/* One decoder started ahead for the next video (its libraries load, ~65 ms, while this one is
 * read); each video gets a process of its own. */
static media_proc_spare g_vspare = MEDIA_PROC_SPARE_INIT;

void media_video_sandbox_end_spare(void) { media_proc_spare_end(&g_vspare); }

void media_video_set_sandbox(const media_video_sandbox *sb) {
    const char *exe = media_proc_set_exe(&g_vspare, g_vsandbox.exe, sizeof g_vsandbox.exe, g_vsandbox.sb.exe,
                                         sb ? sb->exe : NULL);
    g_vsandbox.sb = sb ? *sb : media_video_sandbox_default();
    g_vsandbox.sb.exe = exe;
}

media_video_sandbox media_video_get_sandbox(void) { return g_vsandbox.sb; }

int media_video_decoders(void) { return __atomic_load_n(&g_n_decoders, __ATOMIC_RELAXED); }

static int vreply(int fd, nvl_status st, const char *msg) {
    vid_rep r = {.status = st, .msg_len = st == NVL_OK ? 0 : (uint32_t)strlen(msg)};
    return media_proc_write_full(fd, &r, sizeof r) && media_proc_write_full(fd, msg, r.msg_len);
}

/* A test's knob: the decoder answers its Nth VIDEO_NEXT (1-based) by aborting (as where FFmpeg
 * crashes) or by never answering (as a decoder stuck in a hostile stream). Read each time. */
static int knob_is(const char *var, int n) {
    const char *e = getenv(var);
    return e && atoi(e) == n;
}

static int worker_video(void) {
    const int fd = MEDIA_PROC_FD;
    if (!media_proc_worker_begin("nanovl-video", VIDEO_HELLO)) return 0;
    vid_open q;
    if (!media_proc_read_full(fd, &q, sizeof q) || q.op != VIDEO_OPEN || !q.name_len || q.name_len > 65536) return 0;
    char *name = malloc(q.name_len + 1);
    if (!name || !media_proc_read_full(fd, name, q.name_len)) return 0;
    name[q.name_len] = 0;
    const int file_fd = media_proc_recv_fd(fd); /* the parent's open file (it sends it after the name) */
    char file[64];
    snprintf(file, sizeof file, "/proc/self/fd/%d", file_fd);
    media_video_params p = media_video_params_default();
    p.fps = q.fps;
    p.start = q.start;
    p.end = q.end;
    p.max_frames = q.max_frames;
    media_limits lim = media_limits_default();
    lim.max_file_bytes = (size_t)q.max_file_bytes;
    lim.max_pixels = q.max_pixels;
    lim.max_frames = q.lim_max_frames;
    nvl_err e = {0};
    media_video *v = NULL;
    nvl_status st = file_fd >= 0 ? video_open_local(file, name, &p, &lim, &v, &e)
                                 : nvl_err_set(&e, NVL_ERR_IO, "%s: the video decoder did not receive the file", name);
    if (!vreply(fd, st, e.msg)) return 0;
    if (st != NVL_OK) return 0;
    const media_video_info *in = media_video_get_info(v);
    const vid_info vi = {.n_planned = in->n_planned, .native_fps = in->native_fps, .duration = in->duration,
                         .total_frames = in->total_frames, .listed_frames = in->listed_frames};
    if (!media_proc_write_full(fd, &vi, sizeof vi)) return 0;
    for (int k = 0; k < in->n_planned; k++) {
        int64_t idx = 0;
        double t = 0;
        media_video_planned(v, k, &idx, &t);
        if (!media_proc_write_full(fd, &idx, sizeof idx) || !media_proc_write_full(fd, &t, sizeof t)) return 0;
    }
    for (int n_next = 1;; n_next++) {
        uint32_t op = 0;
        if (!media_proc_read_full(fd, &op, sizeof op) || op != VIDEO_NEXT) return 0;
        if (knob_is("NVL_TEST_VIDEO_ABORT_FRAME", n_next)) raise(SIGABRT);
        while (knob_is("NVL_TEST_VIDEO_HANG_FRAME", n_next)) {
            const struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
        media_image *fr = NULL;
        st = media_video_next(v, &fr, &e);
        if (!vreply(fd, st, e.msg)) return 0;
        if (st != NVL_OK) return 0;
        const vid_frame f = {.present = fr != NULL, .width = fr ? fr->width : 0, .height = fr ? fr->height : 0,
                             .index = fr ? fr->index : 0, .timestamp = fr ? fr->timestamp : 0};
        /* (one write: media_image_new's rows are contiguous; row by row cost 20 us a row in the
           parent's reads) */
        int ok = media_proc_write_full(fd, &f, sizeof f) &&
                 (!fr || media_proc_write_full(fd, fr->rgb, fr->stride * (size_t)fr->height));
        media_image_free(fr);
        if (!ok) return 0;
    }
}

void media_video_worker_main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], MEDIA_VIDEO_WORKER_ARG)) return;
    _exit(worker_video()); /* _exit: no atexit handlers or leak reports in the decoder */
}

static void decoder_stop(media_video *v) {
    media_proc_kill(&v->proc);
    if (v->counted) __atomic_sub_fetch(&g_n_decoders, 1, __ATOMIC_RELAXED);
    v->counted = 0;
}

/* What a step was, in its errors: opening, or the next planned frame. */
static void step_what(const media_video *v, char *buf, size_t cap) {
    if (!v->want) snprintf(buf, cap, "reading its frame times");
    else if (v->reopening) snprintf(buf, cap, "reading its frame times again");
    else if (v->k < v->n) snprintf(buf, cap, "decoding frame %lld (%.3f s)", (long long)v->want[v->k], v->want_t[v->k]);
    else snprintf(buf, cap, "decoding past its last sampled frame");
}

/* Error for a step whose wait did not end in MEDIA_PROC_OK; the decoder is stopped and the video
 * has ended. */
static nvl_status decoder_failed(media_video *v, enum media_proc_end why, nvl_err *err) {
    char how[128], what[96];
    step_what(v, what, sizeof what);
    nvl_status st;
    switch (why) {
    case MEDIA_PROC_TIMEOUT:
        st = nvl_err_set(err, NVL_ERR_TIMEOUT, "%s: %s took longer than %g s; stopped (the video time limit, --video-timeout: a "
                         "hostile stream, or a sampled frame very far past its keyframe)", v->name, what, v->timeout_s);
        break;
    case MEDIA_PROC_MEMORY:
        st = nvl_err_set(err, NVL_ERR_LIMIT, "%s: %s needed more than %g MiB of memory (the video memory limit, --video-memory); "
                         "stopped", v->name, what, v->max_mb);
        break;
    case MEDIA_PROC_CANCELLED:
        st = nvl_err_set(err, NVL_ERR_CANCELLED, "%s: cancelled", v->name);
        break;
    case MEDIA_PROC_BAD:
        st = nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged video: %s failed: the decoder's answer was malformed",
                         v->name, what);
        break;
    default:
        st = media_proc_death(&v->proc, how, sizeof how)
                 ? nvl_err_set(err, NVL_ERR_FORMAT, "%s: damaged video: %s failed: the decoder %s", v->name, what, how)
                 : nvl_err_set(err, NVL_ERR_IO, "%s: %s failed: the video decoder %s", v->name, what, how);
        break;
    }
    decoder_stop(v);
    v->ended = 1;
    return st;
}

static media_proc_bounds step_bounds(const media_video *v) {
    const media_proc_bounds b = {.deadline = v->timeout_s > 0 ? nvl_now() + v->timeout_s : 0,
                                 .max_rss = v->max_mb > 0 ? (size_t)(v->max_mb * 1048576.0) : 0,
                                 .cancelled = v->cancel.cancelled, .ctx = v->cancel.ctx};
    return b;
}

/* A vid_rep and its message; a failed one becomes *st / *err (as the decoder worded it). */
static enum media_proc_end read_vrep(media_video *v, const media_proc_bounds *b, nvl_status *st, nvl_err *err) {
    vid_rep r;
    enum media_proc_end end = media_proc_read(&v->proc, &r, sizeof r, b);
    if (end != MEDIA_PROC_OK) return end;
    char msg[NVL_ERR_MSG_MAX];
    if (r.msg_len >= sizeof msg || (r.status == NVL_OK && r.msg_len)) return MEDIA_PROC_BAD;
    if ((end = media_proc_read(&v->proc, msg, r.msg_len, b)) != MEDIA_PROC_OK) return end;
    msg[r.msg_len] = 0;
    if (!media_proc_decoding_status(r.status)) return MEDIA_PROC_BAD; /* its message about this file: */
    *st = (nvl_status)r.status;
    if (*st != NVL_OK && media_proc_names(msg, v->name)) nvl_err_set(err, *st, "%s", msg);
    else if (*st != NVL_OK) nvl_err_set(err, *st, "%s: %s", v->name, msg);
    return MEDIA_PROC_OK;
}

/* Starts v's decoder and has it open the video (the name, then the descriptor). The first time
 * (v->want NULL) the plan and the stream's facts are read into v; started again (before the
 * first frame) the decoder must plan the same frames. *no_decoder = 1 when none could start. */
static nvl_status decoder_open(media_video *v, int *no_decoder, nvl_err *err) {
    const media_video_params *p = &v->params;
    const size_t nl = strlen(v->name);
    const vid_open q = {.op = VIDEO_OPEN, .name_len = (uint32_t)nl, .fps = p->fps, .start = p->start, .end = p->end,
                        .max_frames = p->max_frames, .lim_max_frames = v->lim.max_frames,
                        .max_file_bytes = (uint64_t)v->lim.max_file_bytes, .max_pixels = v->lim.max_pixels};
    /* the decoder started ahead, or one started now, given q; its start within the step's time
       and the cancel (a machine out of processes or memory holds no video past them) */
    const media_proc_bounds b0 = step_bounds(v);
    nvl_status st = media_proc_take(&g_vspare, g_vsandbox.sb.exe, MEDIA_VIDEO_WORKER_ARG, VIDEO_HELLO, "video decoder", 1,
                                    &q, sizeof q, &b0, &v->proc, err);
    *no_decoder = media_proc_none_started(st);
    if (st != NVL_OK && !*no_decoder) nvl_err_prefix(err, "%s", v->name);
    if (st != NVL_OK) return st;
    __atomic_add_fetch(&g_n_decoders, 1, __ATOMIC_RELAXED);
    v->counted = 1;
    enum media_proc_end end = media_proc_write(&v->proc, v->name, nl);
    if (end == MEDIA_PROC_OK) end = media_proc_send_fd(&v->proc, v->fd);
    const media_proc_bounds b = step_bounds(v);
    vid_info vi = {0};
    if (end == MEDIA_PROC_OK) end = read_vrep(v, &b, &st, err);
    if (end == MEDIA_PROC_OK && st == NVL_OK) end = media_proc_read(&v->proc, &vi, sizeof vi, &b);
    if (end == MEDIA_PROC_OK && st == NVL_OK &&
        (vi.n_planned < 1 || vi.n_planned > p->max_frames || vi.total_frames < vi.n_planned || vi.listed_frames < 0 ||
         !(vi.native_fps > 0 && isfinite(vi.native_fps)) || !(vi.duration >= 0 && isfinite(vi.duration))))
        end = MEDIA_PROC_BAD;
    int64_t *want = NULL;
    double *want_t = NULL;
    if (end == MEDIA_PROC_OK && st == NVL_OK) {
        want = nvl_malloc((size_t)vi.n_planned * sizeof *want);
        want_t = nvl_malloc((size_t)vi.n_planned * sizeof *want_t);
        if (!want || !want_t) st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", v->name);
        for (int k = 0; st == NVL_OK && end == MEDIA_PROC_OK && k < vi.n_planned; k++) {
            end = media_proc_read(&v->proc, &want[k], sizeof want[k], &b);
            if (end == MEDIA_PROC_OK) end = media_proc_read(&v->proc, &want_t[k], sizeof want_t[k], &b);
            if (end == MEDIA_PROC_OK && (want[k] < 0 || want[k] >= vi.total_frames || (k && want[k] <= want[k - 1]) ||
                                         !isfinite(want_t[k]) || (k && want_t[k] < want_t[k - 1])))
                end = MEDIA_PROC_BAD;
        }
    }
    if (end != MEDIA_PROC_OK) st = decoder_failed(v, end, err); /* (v->want NULL: "reading its frame times") */
    else if (st == NVL_OK && v->want &&
             (vi.n_planned != v->n || memcmp(want, v->want, (size_t)v->n * sizeof *want) ||
              memcmp(want_t, v->want_t, (size_t)v->n * sizeof *want_t)))
        st = nvl_err_set(err, NVL_ERR_IO, "%s: the file changed while it was read (its frames planned again differ)",
                         v->name);
    if (st == NVL_OK && !v->want) {
        v->want = want;
        v->want_t = want_t;
        want = NULL;
        want_t = NULL;
        v->n = vi.n_planned;
        v->info.n_planned = vi.n_planned;
        v->info.native_fps = vi.native_fps;
        v->info.duration = vi.duration;
        v->info.total_frames = vi.total_frames;
        v->info.listed_frames = vi.listed_frames;
    }
    nvl_free(want);
    nvl_free(want_t);
    if (st != NVL_OK) {
        decoder_stop(v);
        v->ended = 1;
    }
    return st;
}

/* media_video_open through a decoder process. *no_decoder = 1 when none could start (then
 * nothing was read and *out is NULL). Beyond VIDEO_KEEP_DECODERS running, the decoder is stopped
 * once the plan is read and started again at the video's first media_video_next (reading the
 * frame times again): a request naming 200 videos held 200 decoders. */
static nvl_status video_open_remote(const char *path, const media_video_params *params, const media_limits *lim,
                                    media_video **out, int *no_decoder, nvl_err *err) {
    *out = NULL;
    *no_decoder = 0;
    media_limits dl = media_limits_default();
    if (!lim) lim = &dl;
    media_video_params p;
    nvl_status st = video_params(path, params, lim, &p, err);
    if (st != NVL_OK) return st;
    int fd = -1; /* size cap, a regular file (the decoder reads this descriptor: /dev/stdin works) */
    if ((st = media_open_regular(path, lim, &fd, NULL, err)) != NVL_OK) return st;
    media_video *v = video_new(path, path);
    if (!v) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    }
    v->fd = fd;
    v->remote = 1;
    v->lim = *lim;
    v->params = p;
    v->cancel = (av_cancel){p.cancelled, p.cancel_ctx, 0};
    v->timeout_s = g_vsandbox.sb.timeout_s;
    v->max_mb = g_vsandbox.sb.max_mb;
    if ((st = decoder_open(v, no_decoder, err)) != NVL_OK) {
        media_video_close(v);
        return st;
    }
    if (media_video_decoders() > VIDEO_KEEP_DECODERS) { /* (its descriptor too: a request naming a
                                                             thousand videos held a thousand) */
        decoder_stop(v);
        close(v->fd);
        v->fd = -1;
    }
    *out = v;
    return NVL_OK;
}

/* A video whose decoder was stopped after its open (VIDEO_KEEP_DECODERS): the file opened again by
 * name and a decoder started for it, which must plan the same frames. Where none can start: in
 * this process from here (v->local, with the warning), or refused (strict). */
static nvl_status decoder_reopen(media_video *v, nvl_err *err) {
    if (v->fd < 0) {
        nvl_status st = media_open_regular(v->name, &v->lim, &v->fd, NULL, err);
        if (st != NVL_OK) {
            v->ended = 1;
            return st;
        }
    }
    nvl_err e = {0};
    int no_decoder = 0;
    v->reopening = 1;
    nvl_status st = decoder_open(v, &no_decoder, &e);
    v->reopening = 0;
    if (!no_decoder) {
        if (st != NVL_OK && err) *err = e;
        return st;
    }
    v->ended = 1; /* (the remote side's; v->local carries on) */
    if (g_vsandbox.sb.strict)
        return nvl_err_set(err, NVL_ERR_IO, "%s: the video decoder process could not start again (%s); not decoded "
                           "without its limits", v->name, e.msg);
    NVL_LOG_WARN("%s: the video is decoded in this process, WITHOUT the video time and memory limits: the "
                 "decoder process could not start again (%s)\n", v->name, e.msg);
    media_video_params p = v->params;
    p.cancelled = v->cancel.cancelled;
    p.cancel_ctx = v->cancel.ctx;
    st = video_open_local(v->name, v->name, &p, &v->lim, &v->local, err);
    if (st == NVL_OK && (v->local->n != v->n || memcmp(v->local->want, v->want, (size_t)v->n * sizeof *v->want))) {
        media_video_close(v->local);
        v->local = NULL;
        st = nvl_err_set(err, NVL_ERR_IO, "%s: the file changed while it was read (its frames planned again differ)",
                         v->name);
    }
    if (st == NVL_OK) v->ended = 0;
    return st;
}

/* media_video_next through the decoder. The frame it sends must be one of the plan's, in order,
 * within the pixel limit. */
static nvl_status decoder_next(media_video *v, media_image **out, nvl_err *err) {
    if (!v->counted && !v->local) { /* stopped after its open (VIDEO_KEEP_DECODERS): started again
                                       here, at the first frame (a decoder ends only with its video) */
        nvl_status st = v->k == 0 ? decoder_reopen(v, err)
                                  : nvl_err_set(err, NVL_ERR_INTERNAL, "%s: the video decoder ended mid-video", v->name);
        if (st != NVL_OK) return st;
    }
    if (v->local) { /* (no decoder could start again) */
        const nvl_status st = media_video_next(v->local, out, err);
        v->info.width = v->local->info.width;
        v->info.height = v->local->info.height;
        return st;
    }
    const media_proc_bounds b = step_bounds(v);
    const uint32_t op = VIDEO_NEXT;
    nvl_status st = NVL_OK;
    vid_frame f = {0};
    enum media_proc_end end = media_proc_write(&v->proc, &op, sizeof op);
    if (end == MEDIA_PROC_OK) end = read_vrep(v, &b, &st, err);
    if (end == MEDIA_PROC_OK && st == NVL_OK) end = media_proc_read(&v->proc, &f, sizeof f, &b);
    if (end == MEDIA_PROC_OK && st != NVL_OK) { /* the decoder's own error (damaged data): the video has ended */
        decoder_stop(v);
        v->ended = 1;
        return st;
    }
    int64_t k = v->k;
    if (end == MEDIA_PROC_OK && f.present) {
        while (k < v->n && v->want[k] < f.index) k++; /* (a planned frame a variable rate's gap skipped) */
        /* (a file cut short: its last frame, before the planned ones it ends without, in their place) */
        const int held = k < v->n && f.index < v->want[k] && f.index > v->taken_idx;
        if (f.width <= 0 || f.height <= 0 || (int64_t)f.width * f.height > v->lim.max_pixels || k >= v->n ||
            (v->want[k] != f.index && !held) || !isfinite(f.timestamp))
            end = MEDIA_PROC_BAD;
        else if (held)
            k = v->n - 1;
    } else if (end == MEDIA_PROC_OK && !v->delivered) { /* (its own next says "no frame could be decoded") */
        end = MEDIA_PROC_BAD;
    }
    media_image *img = NULL;
    if (end == MEDIA_PROC_OK && f.present && (st = media_image_new(&img, f.width, f.height, err)) != NVL_OK) {
        decoder_stop(v);
        v->ended = 1;
        return st;
    }
    if (end == MEDIA_PROC_OK && img) /* (media_image_new's rows are contiguous) */
        end = media_proc_read(&v->proc, img->rgb, img->stride * (size_t)f.height, &b);
    if (end != MEDIA_PROC_OK) {
        media_image_free(img);
        return decoder_failed(v, end, err);
    }
    if (!img) { /* the end: the decoder is no longer needed */
        decoder_stop(v);
        v->ended = 1;
        return NVL_OK;
    }
    img->index = f.index;
    img->timestamp = f.timestamp;
    v->taken_idx = f.index;
    v->k = k + 1;
    if (!v->delivered++) {
        v->info.width = img->width;
        v->info.height = img->height;
    }
    *out = img;
    return NVL_OK;
}

nvl_status media_video_open(const char *path, const media_video_params *params, const media_limits *lim,
                            media_video **out, nvl_err *err) {
    *out = NULL;
    if (g_vsandbox.sb.exe) {
        nvl_err e = {0};
        int no_decoder = 0;
        nvl_status st = video_open_remote(path, params, lim, out, &no_decoder, &e);
        if (!no_decoder) {
            if (st != NVL_OK && err) *err = e;
            return st;
        }
        if (g_vsandbox.sb.strict)
            return nvl_err_set(err, NVL_ERR_IO, "%s: the video decoder process could not start (%s); not decoded "
                               "without its limits", path, e.msg);
        NVL_LOG_WARN("%s: the video is decoded in this process, WITHOUT the video time and memory limits: the "
                     "decoder process could not start (%s)\n", path, e.msg);
    }
    return video_open_local(path, path, params, lim, out, err);
}

const media_video_info *media_video_get_info(const media_video *v) { return &v->info; }

int media_video_planned(const media_video *v, int k, int64_t *index, double *timestamp) {
    if (k < 0 || k >= v->n) return 0;
    *index = v->want[k];
    *timestamp = v->remote ? v->want_t[k] : video_frame_t(v, v->want[k]);
    return 1;
}

static nvl_status decoder_next(media_video *v, media_image **out, nvl_err *err);

/* The decoded frame in v->in.frame, index v->cur (fp: its time, for a stream without a frame list),
 * converted and handed out as the next planned frame. */
static nvl_status take_frame(media_video *v, int64_t fp, media_image **out, nvl_err *err) {
    media_image *img = NULL;
    nvl_status st = frame_to_rgb(&v->in, v->rotate, 0, v->name, &v->lim, &img, err);
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
    v->taken_idx = v->cur;
    if (v->held) av_frame_unref(v->held);
    v->held_idx = -1;
    if (!v->delivered++) {
        v->info.width = img->width;
        v->info.height = img->height;
    }
    *out = img;
    return NVL_OK;
}

nvl_status media_video_next(media_video *v, media_image **out, nvl_err *err) {
    *out = NULL;
    if (v->ended) return NVL_OK;
    if (v->remote) return decoder_next(v, out, err);
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
        /* a file cut short ends in a packet cut short: the frame it began is not there, but the
           decoder still holds frames decoded before it (reordering, threads): go on, to the end
           of the stream and its drain (the answer covers what was read, as the notice says); a
           damaged file otherwise, and past 16 such errors in the whole file */
        if (r == AVERROR_INVALIDDATA && (v->info.listed_frames > 0 || v->cut_short) && ++v->cut_errors <= 16) continue;
        if (r < 0) {
            v->ended = 1;
            return av_fail(err, v->name, "cannot decode", r);
        }
        if (v->pts && fp != AV_NOPTS_VALUE && v->n_lead > 0 && fp < v->pts[0]) { /* (made of a packet before
                                                                                    the first keyframe) */
            av_frame_unref(v->in.frame);
            continue;
        }
        if (v->pts && fp != AV_NOPTS_VALUE) {
            int64_t i = nearest_frame(v->pts, v->total, fp);
            /* frames sharing one time (a muxer's rounding: the last two of an MP4, a Matroska's
               milliseconds) take its indices in turn, as they come out: each was the first of
               them, so the last frame could never be taken */
            if (v->cur >= i && v->cur + 1 < v->total && v->pts[v->cur] == v->pts[i] && v->pts[v->cur + 1] == v->pts[i])
                i = v->cur + 1;
            v->cur = i;
        } else v->cur = fp != AV_NOPTS_VALUE ? (int64_t)llround((double)(fp - v->t0) * v->tb * v->native) : v->cur + 1;
        while (v->k < v->n && v->want[v->k] < v->cur) v->k++; /* a wanted index with no frame of its own: skip */
        if (v->k < v->n && v->want[v->k] == v->cur) {
            return take_frame(v, fp, out, err);
        }
        if (v->cut_short && v->cur > v->taken_idx && (v->held || (v->held = av_frame_alloc()))) {
            av_frame_unref(v->held); /* (kept: the stream may end before the next planned frame) */
            av_frame_move_ref(v->held, v->in.frame);
            v->held_idx = v->cur;
            v->held_fp = fp;
        } else {
            av_frame_unref(v->in.frame);
        }
    }
    if (v->k < v->n && v->held_idx > v->taken_idx) { /* (held_idx -1: none) */
        /* a file cut short whose last planned frames never came (the cut packet makes none): the
           last frame it holds is taken in their place, so the answer covers the video to its cut
           (it lost the end: ft.mp4 cut at 20000 bytes gave 1 of its 2 planned frames) */
        av_frame_unref(v->in.frame);
        av_frame_move_ref(v->in.frame, v->held);
        v->cur = v->held_idx;
        v->held_idx = -1;
        v->k = v->n - 1;
        return take_frame(v, v->held_fp, out, err);
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
                                     int opaque, const char *demuxer, media_image **out, nvl_err *err) {
    (void)buf, (void)len, (void)lim, (void)opaque, (void)demuxer;
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
void media_video_set_sandbox(const media_video_sandbox *sb) { (void)sb; }
void media_video_sandbox_end_spare(void) {}
media_video_sandbox media_video_get_sandbox(void) { return media_video_sandbox_default(); }
int media_video_decoders(void) { return 0; }
void media_video_worker_main(int argc, char **argv) { (void)argc, (void)argv; }
#endif
