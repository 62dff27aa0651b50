/* Format detection from magic bytes, and which formats this build decodes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "base/alloc.h"
#include "media.h"
#include "media_impl.h"

static int brand_is(const uint8_t *b, const char *s) { return !memcmp(b, s, 4); }

/* An ISO-BMFF file from its ftyp box (b[4..8) = "ftyp"): a still image when its major brand is
 * an image brand (avif, heic, heix, heim, heis, mif1, miaf), or a generic one (isom, mp42) with an
 * image brand and no sequence brand (msf1, avis, hevc, hevx) among the compatible ones and a
 * 'meta' box next; an image sequence or movie (video)
 * otherwise. mif1/miaf say only "an image file": the codec brand among the compatible brands
 * (avif, or heic/heix/...) decides between AVIF and HEIF. */
static enum media_kind sniff_ftyp(const uint8_t *b, size_t n) {
    size_t box = ((size_t)b[0] << 24) | ((size_t)b[1] << 16) | ((size_t)b[2] << 8) | b[3];
    if (box < 16 || box > n) box = n < 16 ? n : n - n % 4; /* truncated header: what there is */
    const uint8_t *major = b + 8;
    if (brand_is(major, "avis") || brand_is(major, "msf1") || brand_is(major, "hevc") || brand_is(major, "hevx"))
        return MEDIA_KIND_VIDEO; /* image sequences: tracks, as in any MP4 */
    if (brand_is(major, "avif")) return MEDIA_KIND_AVIF;
    if (brand_is(major, "heic") || brand_is(major, "heix") || brand_is(major, "heim") || brand_is(major, "heis"))
        return MEDIA_KIND_HEIF;
    int avif = 0, image = 0, sequence = 0;
    for (size_t i = 16; i + 4 <= box; i += 4) {
        avif |= brand_is(b + i, "avif");
        image |= brand_is(b + i, "mif1") || brand_is(b + i, "miaf") || brand_is(b + i, "heic") || brand_is(b + i, "heix");
        sequence |= brand_is(b + i, "msf1") || brand_is(b + i, "avis") || brand_is(b + i, "hevc") || brand_is(b + i, "hevx");
    }
    if (brand_is(major, "mif1") || brand_is(major, "miaf")) return avif ? MEDIA_KIND_AVIF : MEDIA_KIND_HEIF;
    /* a generic major brand (isom, mp42, ...) over an image file: an image brand among the compatible
       ones and the file's items ('meta') straight after the ftyp box, where a movie has its 'moov',
       'mdat' or 'free' (such HEIC files, from some cameras and converters, were read as videos:
       FFmpeg found no track) */
    if (image && !sequence && box + 8 <= n && !memcmp(b + box + 4, "meta", 4)) /* (a sequence brand: a movie
                                                                                   with an image item, e.g. a cover) */
        return avif ? MEDIA_KIND_AVIF : MEDIA_KIND_HEIF;
    return MEDIA_KIND_VIDEO;
}

enum media_kind media_sniff(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return MEDIA_KIND_JPEG;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return MEDIA_KIND_PNG;
    /* PDF: "%PDF-" within the first 1024 bytes (readers tolerate leading junk) */
    for (size_t i = 0; i + 5 <= n && i < 1024; i++)
        if (b[i] == '%' && !memcmp(b + i, "%PDF-", 5)) return MEDIA_KIND_PDF;
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return MEDIA_KIND_GIF;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return MEDIA_KIND_WEBP;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "AVI ", 4)) return MEDIA_KIND_VIDEO;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return MEDIA_KIND_BMP;
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return MEDIA_KIND_TIFF;
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return sniff_ftyp(b, n);          /* MP4/MOV/3GP, AVIF, HEIF */
    if (n >= 8 && !memcmp(b + 4, "ftyp", 4)) return MEDIA_KIND_VIDEO;
    if (n >= 8 && (!memcmp(b + 4, "moov", 4) || !memcmp(b + 4, "mdat", 4) ||
                   !memcmp(b + 4, "free", 4) || !memcmp(b + 4, "wide", 4)))
        return MEDIA_KIND_VIDEO;                                                  /* QuickTime */
    if (n >= 4 && b[0] == 0x1A && b[1] == 0x45 && b[2] == 0xDF && b[3] == 0xA3)
        return MEDIA_KIND_VIDEO;                                                  /* Matroska/WebM */
    if (n >= 189 && b[0] == 0x47 && b[188] == 0x47) return MEDIA_KIND_VIDEO;      /* MPEG-TS */
    if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 1 && (b[3] == 0xBA || b[3] == 0xB3))
        return MEDIA_KIND_VIDEO;                                                  /* MPEG-PS */
    if (n >= 4 && !memcmp(b, "OggS", 4)) return MEDIA_KIND_VIDEO;
    /* Blu-ray M2TS: TS packets of 192 bytes (a 4-byte timecode before each 0x47) */
    if (n >= 197 && b[4] == 0x47 && b[196] == 0x47) return MEDIA_KIND_VIDEO;
    if (n >= 4 && !memcmp(b, "FLV\x01", 4)) return MEDIA_KIND_VIDEO;             /* Flash video */
    if (n >= 10 && !memcmp(b, "YUV4MPEG2 ", 10)) return MEDIA_KIND_VIDEO;        /* Y4M (raw frames) */
    if (n >= 24 && !memcmp(b, "nut/multimedia container", 24)) return MEDIA_KIND_VIDEO; /* NUT */
    if (n >= 16 && !memcmp(b, "\x30\x26\xB2\x75\x8E\x66\xCF\x11\xA6\xD9\x00\xAA\x00\x62\xCE\x6C", 16))
        return MEDIA_KIND_VIDEO;                                                  /* ASF (WMV) */
    if (n >= 32 && !memcmp(b, "DKIF", 4)) return MEDIA_KIND_VIDEO;               /* IVF (VP8/VP9/AV1) */
    if (n >= 14 && !memcmp(b, "\x06\x0E\x2B\x34\x02\x05\x01\x01\x0D\x01\x02\x01\x01", 13))
        return MEDIA_KIND_VIDEO;                                                  /* MXF (a partition pack) */
    /* raw H.264 / HEVC (Annex B, as cameras and `-f h264` write them): a 4-byte start code, then an
       H.264 SPS, AUD or SEI NAL, or an HEVC VPS, AUD or SEI (layer 0, temporal id 1) */
    if (n >= 6 && !b[0] && !b[1] && !b[2] && b[3] == 1) {
        const int h264 = b[4] & 0x1F, hevc = (b[4] >> 1) & 0x3F;
        if (!(b[4] & 0x80) && (h264 == 7 || h264 == 9 || h264 == 6)) return MEDIA_KIND_VIDEO;
        if (!(b[4] & 0x81) && b[5] == 0x01 && (hevc == 32 || hevc == 35 || hevc == 39)) return MEDIA_KIND_VIDEO;
    }
    /* Netpbm: "P1".."P6" then whitespace (as Pillow reads them; PAM's P7 is not one) */
    if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' &&
        (b[2] == ' ' || b[2] == '\t' || b[2] == '\n' || b[2] == '\r'))
        return MEDIA_KIND_PNM;
    return MEDIA_KIND_UNKNOWN;
}

const char *media_kind_name(enum media_kind k) {
    switch (k) {
    case MEDIA_KIND_JPEG: return "jpeg";
    case MEDIA_KIND_PNG: return "png";
    case MEDIA_KIND_PDF: return "pdf";
    case MEDIA_KIND_GIF: return "gif";
    case MEDIA_KIND_WEBP: return "webp";
    case MEDIA_KIND_BMP: return "bmp";
    case MEDIA_KIND_TIFF: return "tiff";
    case MEDIA_KIND_VIDEO: return "video";
    case MEDIA_KIND_AVIF: return "avif";
    case MEDIA_KIND_HEIF: return "heif";
    case MEDIA_KIND_PNM: return "pnm";
    default: return "unknown";
    }
}

int media_supports(enum media_kind k) {
    switch (k) {
#ifdef NVL_HAVE_JPEG
    case MEDIA_KIND_JPEG: return 1;
#endif
#ifdef NVL_HAVE_PNG
    case MEDIA_KIND_PNG: return 1;
#endif
#ifdef NVL_HAVE_PDF
    case MEDIA_KIND_PDF: return 1;
#endif
#ifdef NVL_HAVE_VIDEO
    case MEDIA_KIND_GIF:
    case MEDIA_KIND_WEBP:
    case MEDIA_KIND_BMP:
    case MEDIA_KIND_TIFF:
    case MEDIA_KIND_PNM:
    case MEDIA_KIND_VIDEO: return 1;
    case MEDIA_KIND_AVIF: return media_ffmpeg_decodes_av1();
#endif
    case MEDIA_KIND_HEIF: return media_heif_supported();
    default: return 0;
    }
}

nvl_status media_sniff_file(const char *path, enum media_kind *kind, nvl_err *err) {
    *kind = MEDIA_KIND_UNKNOWN;
    int fd = -1;
    /* regular files within the default size cap only: a FIFO or device is never read */
    nvl_status st = media_open_regular(path, NULL, &fd, NULL, err);
    if (st != NVL_OK) return st;
    uint8_t head[1024];
    size_t n = 0;
    while (n < sizeof head) {
        ssize_t r = read(fd, head + n, sizeof head - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = nvl_err_set(err, NVL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            close(fd);
            return st;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n == 0) return nvl_err_set(err, NVL_ERR_FORMAT, "%s: the file is empty", path);
    *kind = media_sniff(head, n);
    return NVL_OK;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

size_t media_gif_first_block(const uint8_t *b, size_t n) {
    if (n < 13) return n;
    const size_t i = 13 + (b[10] & 0x80 ? 3u << ((b[10] & 7) + 1) : 0);
    return i < n ? i : n;
}

size_t media_gif_block_end(const uint8_t *b, size_t n, size_t i) {
    if (i >= n) return 0;
    if (b[i] == 0x21) i += 2;                                                          /* extension: label */
    else if (b[i] == 0x2C && i + 10 <= n) i += 10 + (b[i + 9] & 0x80 ? 3u << ((b[i + 9] & 7) + 1) : 0) + 1; /* image */
    else return 0;
    while (i < n && b[i]) i += 1u + b[i]; /* sub-blocks until an empty one */
    return i < n ? i + 1 : n;
}

/* GIF (89a): image descriptors (0x2C) counted along the block structure, up to the trailer (0x3B)
 * or the end of the bytes; a byte that begins no block is skipped, as Pillow's reader skips it. */
static int64_t gif_frames(const uint8_t *b, size_t n) {
    int64_t frames = 0;
    for (size_t i = media_gif_first_block(b, n); i < n && b[i] != 0x3B;) {
        const size_t e = media_gif_block_end(b, n, i);
        frames += e && b[i] == 0x2C;
        i = e ? e : i + 1;
    }
    return frames > 0 ? frames : 1;
}

int64_t media_image_frames(const uint8_t *b, size_t n) {
    switch (media_sniff(b, n)) {
    case MEDIA_KIND_GIF: return gif_frames(b, n);
    case MEDIA_KIND_PNG: { /* APNG: acTL's num_frames (before the first IDAT), as Pillow reads it:
                              one more when the default image (IDAT) comes before any fcTL, since
                              it is then not one of the animation's frames; a second acTL makes
                              the file a still */
        int64_t frames = 0;
        int fctl = 0;
        for (size_t i = 8; i + 12 <= n;) {
            const uint32_t len = be32(b + i);
            if (len > n - i - 12) break;
            if (!memcmp(b + i + 4, "IDAT", 4)) return frames > 0 ? frames + !fctl : 1;
            if (!memcmp(b + i + 4, "fcTL", 4)) fctl = 1;
            if (!memcmp(b + i + 4, "acTL", 4) && len >= 8) {
                if (frames) return 1;
                const uint32_t f = be32(b + i + 8);
                frames = f > 0 && f <= (1u << 31) ? (int64_t)f : 0;
                if (!frames) return 1;
            }
            i += 12u + len;
        }
        return frames > 1 ? frames : 1;
    }
    case MEDIA_KIND_WEBP: { /* animated (VP8X): its ANMF chunks */
        int64_t frames = 0;
        for (size_t i = 12; i + 8 <= n;) {
            const uint32_t len = le32(b + i + 4);
            if (!memcmp(b + i, "ANMF", 4)) frames++;
            if (len > n - i - 8) break;
            i += 8u + len + (len & 1);
        }
        return frames > 1 ? frames : 1;
    }
    default: return 1;
    }
}

nvl_status media_err_unrecognised(const char *name, const uint8_t *buf, size_t len, const char *path, nvl_err *err) {
    /* a PDF header past the first 1024 bytes, where PDF readers look for it (the PDF reference's
       implementation note: Acrobat's limit), is said: 1 MiB of other bytes before a PDF, which
       Poppler's tools open, was "not a recognised format" without a word more (a review) */
    int64_t at = -1;
    if (buf) {
        const uint8_t *p = len > 1024 ? memmem(buf + 1024, len - 1024, "%PDF-", 5) : NULL;
        if (p) at = (int64_t)(p - buf);
    } else if (path) { /* the first 64 MiB, in pieces overlapping by 4 bytes */
        int fd = -1;
        nvl_err e2 = {0};
        static const size_t piece = 1u << 20;
        uint8_t *b = media_open_regular(path, NULL, &fd, NULL, &e2) == NVL_OK ? nvl_malloc(piece + 4) : NULL;
        size_t keep = 0;
        int64_t base = 0; /* the file offset of b[0] */
        while (b && at < 0 && base < (64 << 20)) {
            ssize_t r = read(fd, b + keep, piece);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            const size_t have = keep + (size_t)r;
            const uint8_t *p = memmem(b, have, "%PDF-", 5);
            if (p && base + (p - b) >= 1024) at = base + (int64_t)(p - b);
            keep = have < 4 ? have : 4;
            memmove(b, b + have - keep, keep);
            base += (int64_t)(have - keep);
        }
        nvl_free(b);
        if (fd >= 0) close(fd);
    }
    if (at >= 0)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: not a recognised image, PDF or video format: a PDF header (%%PDF-) "
                           "is at byte %lld, past the first 1024 bytes where a PDF's must be (remove what comes before "
                           "it)", name, (long long)at);
    return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: not a recognised image, PDF or video format", name);
}
