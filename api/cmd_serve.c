/* `nanovl serve --socket PATH`: loads the checkpoint once and serves the JSON API on a Unix
 * socket until SIGTERM (docs/api.md). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "media.h"
#include "cli_util.h"
#include "commands.h"
#include "serve.h"

static const char *k_usage =
    "usage: nanovl serve [--model DIR] --socket PATH [options]\n"
    "  --model DIR               checkpoint directory (default $NANOVL_MODEL)\n"
    "  --socket PATH             Unix socket to listen on (a stale socket file is replaced;\n"
    "                            a live one is refused)\n"
    "  --socket-mode OCTAL       permissions of the socket file (default 0600)\n"
    "  --max-request-bytes N     longest request line (default 67108864)\n"
    "  --max-queue N             requests waiting across clients (default 64)\n"
    "  --max-per-client N        queued + running per connection (default 4)\n"
    "  --max-batch N             requests answered together (default 16, 1..256): their decode\n"
    "                            steps share one read of the weights\n"
    "  --seq-mem MIB             memory for the running requests' sequence state (Mamba states, KV\n"
    "                            cache; default: half of what is free after the weights)\n"
    "  --rate N                  requests per minute per connection (default 600, 0 = no limit)\n"
    "  --max-clients N           connections (default 64)\n"
    "  --max-pending-output N    unread event bytes before a client is dropped (65536.., default 16777216)\n"
    "  --allow DIR               media paths must lie in DIR (repeatable; default: any file the\n"
    "                            server's user can read)\n"
    "  --idle-timeout S          close a connection that sends nothing for S seconds while it has\n"
    "                            no request running, leaves a request line unfinished for S\n"
    "                            seconds, or reads under 4 KiB of its events in S seconds\n"
    "                            (default 300; 0 = never)\n"
    "  --page-timeout S          seconds one PDF page may take to render (default 120; 0 = none)\n"
    "  --page-memory MIB         memory one PDF page may take to render besides its pixels\n"
    "                            (default 2048; 0 = none): pages render in a process of their own,\n"
    "                            stopped past either bound or by a cancel (a PDF is refused when\n"
    "                            no renderer process can start)\n"
    "  --video-timeout S         seconds a video may take to read its frame times or to decode up\n"
    "                            to its next sampled frame (default 120; 0 = none)\n"
    "  --video-memory MIB        memory a video's decoder process may hold (default 4096; 0 =\n"
    "                            none; a video is refused when no decoder process can start)\n"
    "  --image-timeout S         seconds a still image may take to decode (default 60; 0 = none)\n"
    "  --image-memory MIB        memory an image's decoder process may hold besides the image's\n"
    "                            bytes (default 4096; 0 = none; an image is refused when no decoder\n"
    "                            process can start)\n"
    "  --quiet                   no request log on stderr\n"
    "  --backend, --max-megapixels: every command's (nanovl --help)\n"
    "Protocol: newline-delimited JSON, see docs/api.md. SIGTERM finishes the running request,\n"
    "answers queued ones with \"shutting_down\" and exits.\n";

static void ready(const char *path, void *user) {
    const api_server_opts *o = user;
    if (!o->quiet) fprintf(stderr, "nanovl serve: listening on %s\n", path);
}

int cmd_serve(int argc, char **argv) {
    /* a server does not read a PDF without the renderer's bounds: a request is refused instead
       (io_error) when no renderer process can start (a process limit reached) */
    media_pdf_sandbox sb = media_pdf_get_sandbox();
    sb.strict = 1;
    media_pdf_set_sandbox(&sb);
    media_video_sandbox vsb = media_video_get_sandbox(); /* nor a video without the decoder's */
    vsb.strict = 1;
    media_video_set_sandbox(&vsb);
    media_image_sandbox isb = media_image_get_sandbox(); /* nor an image without its decoder's */
    isb.strict = 1;
    media_image_set_sandbox(&isb);
    const char *model = getenv("NANOVL_MODEL");
    api_server_opts o = api_server_opts_default();
    api_engine_opts eo = api_engine_opts_default(); /* max_batch as the server's */
    char **allow = calloc((size_t)argc + 1, sizeof *allow);
    int n_allow = 0, rc = 0;
    if (!allow) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            goto out;
        }
        char *end = NULL;
        if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--socket") && v) o.socket_path = argv[++i];
        else if (!strcmp(a, "--quiet")) o.quiet = 1;
        else if (!strcmp(a, "--allow") && v) {
            char *rp = realpath(argv[++i], NULL);
            if (!rp) {
                fprintf(stderr, "nanovl serve: --allow %s: %s\n", argv[i], strerror(errno));
                rc = EXIT_USAGE;
                goto out;
            }
            allow[n_allow++] = rp;
        }
        else if (v && (!strcmp(a, "--socket-mode") || !strcmp(a, "--max-request-bytes") || !strcmp(a, "--max-queue") ||
                       !strcmp(a, "--max-per-client") || !strcmp(a, "--rate") || !strcmp(a, "--max-clients") ||
                       !strcmp(a, "--max-pending-output") || !strcmp(a, "--idle-timeout") || !strcmp(a, "--max-batch") ||
                       !strcmp(a, "--seq-mem"))) {
            /* the others are integers */
            const int real = !strcmp(a, "--rate") || !strcmp(a, "--idle-timeout") || !strcmp(a, "--seq-mem");
            double d = strtod(v, &end);
            if (!strcmp(a, "--socket-mode")) {
                d = (double)strtol(v, &end, 8);
                if (end == v || *end || d < 1 || d > 0777) {
                    fprintf(stderr, "nanovl serve: --socket-mode needs octal permissions 1..777 (e.g. 0660), got '%s'\n", v);
                    rc = EXIT_USAGE;
                    goto out;
                }
            }
            /* !(d >= 0): NaN fails every comparison, so it is refused here too */
            if (!end || end == v || *end || !isfinite(d) || !(d >= 0) || (d < 1 && !real) || (!real && d != floor(d)) ||
                d > 1e15) {
                fprintf(stderr, "nanovl serve: %s needs a%s number%s, got '%s'\n", a, real ? " finite non-negative" : "n integer",
                        real ? "" : " >= 1", v);
                rc = EXIT_USAGE;
                goto out;
            }
            i++;
            if (!strcmp(a, "--idle-timeout")) {
                o.idle_timeout_s = d;
                continue;
            }
            if (!strcmp(a, "--seq-mem")) {
                eo.seq_mem_mb = d;
                continue;
            }
            if (!strcmp(a, "--max-batch")) {
                if (d > 256) {
                    fprintf(stderr, "nanovl serve: --max-batch must be 1..256, got '%s'\n", v);
                    rc = EXIT_USAGE;
                    goto out;
                }
                o.max_batch = eo.max_batch = (int)d;
                continue;
            }
            /* counts held in an int: a bound well inside it (a cast of 4294967296 gave 0) */
            const double cap = !strcmp(a, "--max-clients") ? 100000.0
                               : (!strcmp(a, "--max-queue") || !strcmp(a, "--max-per-client")) ? 1000000.0
                                                                                                  : 1e15;
            if (d > cap) {
                fprintf(stderr, "nanovl serve: %s must be at most %.0f, got '%s'\n", a, cap, v);
                rc = EXIT_USAGE;
                goto out;
            }
            if (!strcmp(a, "--max-pending-output") && d < 65536) { /* below a socket's own buffer a reader
                                                                       that keeps up is dropped too */
                fprintf(stderr, "nanovl serve: --max-pending-output must be at least 65536 bytes, got '%s'\n", v);
                rc = EXIT_USAGE;
                goto out;
            }
            if (!strcmp(a, "--socket-mode")) o.socket_mode = (int)d & 0777;
            else if (!strcmp(a, "--max-request-bytes")) o.max_request_bytes = (size_t)d;
            else if (!strcmp(a, "--max-queue")) o.max_queue = (int)d;
            else if (!strcmp(a, "--max-per-client")) o.max_per_client = (int)d;
            else if (!strcmp(a, "--rate")) o.rate_per_min = d;
            else if (!strcmp(a, "--max-pending-output")) o.max_pending_output = (size_t)d;
            else o.max_clients = (int)d;
        } else {
            fprintf(stderr, "nanovl serve: unknown or incomplete option '%s'\n%s", a, k_usage);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (!model || !o.socket_path) {
        fprintf(stderr, "%s%s", !model ? "nanovl serve: no model: pass --model DIR or set NANOVL_MODEL\n" : "", k_usage);
        rc = EXIT_USAGE;
        goto out;
    }
    o.allow = (const char *const *)allow;
    o.n_allow = n_allow;
    nvl_err err = {0};
    api_engine *e = NULL;
    if (api_engine_open_with(&e, model, &eo, &err) != NVL_OK) {
        fprintf(stderr, "nanovl serve: %s: %s\n", model, err.msg);
        rc = 1;
        goto out;
    }
    if (!o.quiet) fprintf(stderr, "nanovl serve: the models run on %s\n", api_engine_backend_description(e));
    o.model_name = model;
    o.on_ready = ready;
    o.user = &o;
    nvl_status st = api_serve(e, &o, &err);
    api_engine_close(e);
    if (st != NVL_OK) {
        fprintf(stderr, "nanovl serve: %s\n", err.msg);
        rc = 1;
    } else if (!o.quiet) {
        fprintf(stderr, "nanovl serve: stopped\n");
    }
out:
    for (int i = 0; i < n_allow; i++) free(allow[i]);
    free(allow);
    return rc;
}
