/* A video decoder that lies (media_impl.h's protocol), as one taken over through an FFmpeg bug
 * might: test_video_sandbox runs it as the sandbox's executable and checks that nanovl believes
 * none of it. FAKE_MODE picks the lie; otherwise it plans two frames (indices 0 and 1, at 0 and
 * 1 s, of 2) and answers each next with a 2x2 gray frame:
 *   badstatus   opening fails with a status decoding cannot have (NVL_ERR_INTERNAL)
 *   nomsgname   opening fails (NVL_ERR_FORMAT) with a message not naming the file
 *   nanfps      the stream's frame rate is NaN
 *   inffps      the stream's frame rate is infinite
 *   nantime     the second planned frame's time is NaN
 *   backtime    the planned times go backwards
 *   zeroframes  the first next says the video has ended
 *   offplan     the first frame is index 5, in no plan
 *   nanstamp    the first frame's timestamp is NaN
 *   bigframe    the first frame is 46341x46341 (over media_limits.max_pixels)
 *   hugemsg     an error whose message length is 4 GB */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "media_impl.h"

static int wr(const void *p, size_t n) { return media_proc_write_full(MEDIA_PROC_FD, p, n); }

static int rep(nvl_status st, const char *msg) {
    const vid_rep r = {.status = st, .msg_len = (uint32_t)strlen(msg)};
    return wr(&r, sizeof r) && wr(msg, r.msg_len);
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    const char *m = getenv("FAKE_MODE");
    const char *mode = m ? m : "";
    const uint32_t hello = VIDEO_HELLO;
    if (!wr(&hello, sizeof hello)) return 1;
    vid_open q;
    if (!media_proc_read_full(MEDIA_PROC_FD, &q, sizeof q) || q.name_len > 65536) return 1;
    char name[65537];
    if (!media_proc_read_full(MEDIA_PROC_FD, name, q.name_len)) return 1;
    name[q.name_len] = 0;
    (void)media_proc_recv_fd(MEDIA_PROC_FD);
    if (!strcmp(mode, "badstatus")) return !rep(NVL_ERR_INTERNAL, "an internal error, says the decoder");
    if (!strcmp(mode, "nomsgname")) return !rep(NVL_ERR_FORMAT, "cannot read stream info: made up");
    if (!strcmp(mode, "hugemsg")) {
        const vid_rep r = {.status = NVL_ERR_FORMAT, .msg_len = 0xfffffff0u};
        return !wr(&r, sizeof r);
    }
    if (!rep(NVL_OK, "")) return 1;
    vid_info vi = {.n_planned = 2, .native_fps = 1, .duration = 2, .total_frames = 2, .listed_frames = 0};
    if (!strcmp(mode, "nanfps")) vi.native_fps = NAN;
    if (!strcmp(mode, "inffps")) vi.native_fps = INFINITY;
    if (!wr(&vi, sizeof vi)) return 1;
    for (int64_t k = 0; k < 2; k++) {
        double t = (double)k;
        if (k == 1 && !strcmp(mode, "nantime")) t = NAN;
        if (k == 1 && !strcmp(mode, "backtime")) t = -1;
        if (!wr(&k, sizeof k) || !wr(&t, sizeof t)) return 1;
    }
    for (int64_t k = 0;; k++) {
        uint32_t op;
        if (!media_proc_read_full(MEDIA_PROC_FD, &op, sizeof op) || op != VIDEO_NEXT) return 1;
        if (!rep(NVL_OK, "")) return 1;
        vid_frame f = {.present = k < 2, .width = 2, .height = 2, .index = k, .timestamp = (double)k};
        if (!strcmp(mode, "zeroframes")) f.present = 0;
        if (!strcmp(mode, "offplan")) f.index = 5;
        if (!strcmp(mode, "nanstamp")) f.timestamp = NAN;
        if (!strcmp(mode, "bigframe")) f.width = f.height = 46341;
        if (!wr(&f, sizeof f)) return 1;
        const uint8_t px[12] = {128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128};
        if (f.present && f.width == 2 && !wr(px, sizeof px)) return 1;
    }
}
