/* The nanovl command line. Only this file prints; libraries log through nvl_log.
 *
 * Exit codes: 0 success; 1 the work failed (bad input, unusable checkpoint); 2 usage error.
 * Subcommands live in one table below; each is a function taking (argc, argv) after its name.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cli_util.h"
#include "commands.h"
#include "backend.h"
#include "base/status.h"
#include "media.h"


static const char *k_usage =
    "nanovl %s: answers questions about PDFs, images and videos with NVIDIA Nemotron Nano V2 VL\n"
    "\n"
    "usage: nanovl <command> [options]\n"
    "\n"
    "commands:\n"
    "  ask [--model DIR] FILE... \"question\"\n"
    "                     answer a question about images, PDFs and videos (streams the answer;\n"
    "                     -q Q (repeatable), --per-page, --pages, --max-tiles, --fps, --evs,\n"
    "                     --think/--no-think, --json)\n"
    "  ocr [--model DIR] FILE... [-o OUT.md]\n"
    "                     Markdown of every page, page by page, with page markers (--json)\n"
    "  serve [--model DIR] --socket PATH\n"
    "                     the JSON API on a Unix socket (docs/api.md)\n"
    "  batch [--model DIR] JOBS.jsonl --out RESULTS.jsonl [--shard i/N]\n"
    "                     one job per line, one result per line; resumable\n"
    "  jobs (-q QUESTION | --ocr) FILE... > JOBS.jsonl\n"
    "                     a jobs file for batch: one job per file\n"
    "  bench [--model DIR] [FILE]\n"
    "                     end-to-end speed: load, vision tiles/s, prefill and decode tokens/s,\n"
    "                     the kept prefix, peak RSS\n"
    "  inspect DIR        describe a checkpoint (architecture, layers, sizes, dtypes,\n"
    "                     quantization) and list every problem; exit 1 if unusable\n"
    "  generate --model DIR --ids \"1 2 3\"\n"
    "                     text-only generation with the language model (greedy or sampled);\n"
    "                     --print-ids, --dump-logits FILE, --temperature/--top-k/--top-p/--min-p/--seed\n"
    "  tokenize --model DIR [--decode | --chat]\n"
    "                     text on stdin -> ids; --decode ids -> text; --chat JSON messages\n"
    "                     -> the rendered prompt (debug prompts)\n"
    "  media-info FILE    format, pages (sizes, labels, text layer), video frames, image size\n"
    "  render FILE -o DIR [--pages 1-3,7] [--dpi D | --long-side N]\n"
    "                     PNGs of what the model will see (pages, image, sampled frames)\n"
    "  embed --model DIR FILE [-o DIR] [--max-tiles N] [--evs Q]\n"
    "                     run only the vision path; write tiles, ViT, pixel-shuffle, projector\n"
    "                     (and EVS mask) outputs with an index.json\n"
    "  version            print the version and what this build supports\n"
    "  help               this text\n"
    "\n"
    "options (the bounds below, --max-megapixels and --backend go before or after the command):\n"
    "  -h, --help         this text\n"
    "  -V, --version      version and build features\n"
    "  --page-timeout S   seconds one PDF page may take to render (default 120; 0: no limit)\n"
    "  --page-memory MIB  memory (MiB) one PDF page may take to render besides its pixels (default\n"
    "                     2048; 0: no limit); PDFs are read in a process of their own, nanovl-pdf,\n"
    "                     and a page past either limit fails with its error\n"
    "  --video-timeout S  seconds a video may take to read its frame times, or to decode up to\n"
    "                     its next sampled frame (default 120; 0: no limit)\n"
    "  --video-memory MIB memory (MiB) a video's decoder may hold (default 4096; 0: no limit);\n"
    "                     each video is decoded in a process of its own, nanovl-video\n"
    "  --image-timeout S  seconds a still image (JPEG, PNG, WebP, HEIF, ...) may take to decode\n"
    "                     (default 60; 0: no limit)\n"
    "  --image-memory MIB memory (MiB) an image's decoder may hold besides the image's bytes\n"
    "                     (default 4096; 0: no limit); each image is decoded in a process of its\n"
    "                     own, nanovl-image\n"
    "  --max-megapixels MP  pixels an image, a rendered PDF page or a video frame may have, in\n"
    "                     millions (default 100; Pillow refuses above 179): a larger one fails\n"
    "                     with its size (limit_exceeded); a decoded pixel takes 3 bytes\n"
    "\n"
    "examples:\n"
    "  nanovl ask --model ~/models/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 report.pdf \"What is the total?\"\n"
    "  nanovl ask --model tests/data/vl_tiny tests/data/media/made/image.bmp \"What is this?\" --max-tokens 8 --no-think\n"
    "  nanovl ask report.pdf -q \"What is the total?\" -q \"Who signed it?\"\n"
    "  nanovl ocr scan.pdf -o scan.md\n"
    "  nanovl serve --socket /run/nanovl.sock\n"
    "  nanovl batch jobs.jsonl --out results.jsonl --shard 0/8\n"
    "  nanovl inspect ~/models/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16\n"
    "  nanovl inspect tests/data/tiny_nemotron_h\n"
    "  nanovl generate --model tests/data/llm/cfgA --ids \"5 9 77\" --max-tokens 8\n"
    "  echo 'What is the total?' | nanovl tokenize --tokenizer tests/data/tokenizer/nemotron_tiny\n"
    "  echo '[{\"role\":\"user\",\"content\":\"Hi\"}]' | nanovl tokenize --model DIR --chat\n"
    "  NVL_BACKEND=cpu nanovl inspect model.safetensors\n"
    "  nanovl media-info report.pdf\n"
    "  nanovl render report.pdf --pages 2 -o out/\n"
    "\n"
    "environment:\n"
    "  NVL_BACKEND=cpu|cuda|auto   compute backend: auto (the default) runs the models on the GPU when\n"
    "                              there is one that holds them, else on the CPU; cpu never uses a device;\n"
    "                              cuda (an error without a device); --backend X on any command sets it\n"
    "  NVL_THREADS=N               CPU threads, 1..4096 (default: OMP_NUM_THREADS, else all cores)\n"
    "  NANOVL_MODEL=DIR            default for --model\n"
    "  NVL_LOG_LEVEL=error|warn|info|debug\n";

/* rc, or 1 when what was written to stdout did not reach it (a full disk, /dev/full, a closed
 * pipe): a run that thought it succeeded failed (one that failed has said why already). `--help`
 * and `-V` answered 0 into /dev/full, `help` and `version` 1 (a review). */
static int output_checked(const char *cmd, int rc) {
    errno = 0;
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "nanovl %s: cannot write the output: %s\n", cmd, errno ? strerror(errno) : "write error");
        rc = 1;
    }
    return rc;
}

static int cmd_help(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf(k_usage, NANOVL_VERSION);
    return 0;
}

/* One helper process's line of `nanovl version`: head, then "T UNIT, M MiB)" or "no time limit" /
 * "no memory limit" for a bound <= 0. */
static void print_bounds(const char *head, const char *unit, double timeout_s, double max_mb) {
    char t[48] = "no time limit", m[32] = "no memory limit";
    if (timeout_s > 0) snprintf(t, sizeof t, "%g %s", timeout_s, unit);
    if (max_mb > 0) snprintf(m, sizeof m, "%g MiB", max_mb);
    printf("%s%s, %s)\n", head, t, m);
}

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    const char *why = NULL;
    int ndev = kern_cuda_device_count(&why);
    printf("nanovl %s\n", NANOVL_VERSION);
    printf("backends: cpu%s\n", kern_cuda_built() ? ", cuda (built)" : " (cuda not built)");
    if (kern_cuda_built())
        printf("cuda devices: %d%s%s%s\n", ndev, ndev ? "" : " (", ndev ? "" : (why ? why : "none"),
               ndev ? "" : ")");
    int dev_ok = 0;
    if (ndev > 0) { /* name the device the cuda backend would run on */
        kern_backend *cb = NULL;
        nvl_err cerr = {0};
        if ((dev_ok = kern_backend_init(&cb, "cuda", &cerr) == NVL_OK)) printf("cuda device: %s\n", kern_backend_description(cb));
        else printf("cuda device: unusable (%s)\n", cerr.msg);
        kern_backend_free(cb);
    }
    { /* as kern_backend_init_models chooses */
        const char *bv = getenv("NVL_BACKEND");
        if (bv && (!strcmp(bv, "cuda") || !strcmp(bv, "cpu"))) printf("models run on: %s (NVL_BACKEND / --backend)\n", bv);
        else if (dev_ok) printf("models run on: cuda (auto: the device above; the CPU for a model that does not fit it)\n");
        else printf("models run on: cpu (auto: no usable CUDA device)\n");
    }
    printf("cpu threads: %d%s\n", kern_cpu_threads(), getenv("NVL_THREADS") && *getenv("NVL_THREADS") ? " (NVL_THREADS)" : "");
    printf("cpu kernels: %s\n", kern_cpu_kernels());
    printf("media: jpeg %s, png %s, webp %s, heif %s, gif/bmp/tiff/pnm %s, avif %s, pdf %s, video %s\n",
           media_supports(MEDIA_KIND_JPEG) ? "yes" : "no", media_supports(MEDIA_KIND_PNG) ? "yes" : "no",
           media_supports(MEDIA_KIND_WEBP) ? "yes" : "no", media_supports(MEDIA_KIND_HEIF) ? "yes" : "no",
           media_supports(MEDIA_KIND_TIFF) ? "yes" : "no", media_supports(MEDIA_KIND_AVIF) ? "yes" : "no",
           media_supports(MEDIA_KIND_PDF) ? "yes" : "no", media_supports(MEDIA_KIND_VIDEO) ? "yes" : "no");
    if (media_supports(MEDIA_KIND_PDF)) {
        const media_pdf_sandbox sb = media_pdf_get_sandbox();
        print_bounds("pdf: read in a process of its own per document, nanovl-pdf (a page: ", "s", sb.timeout_s, sb.max_mb);
    }
    if (media_supports(MEDIA_KIND_VIDEO)) {
        const media_video_sandbox sb = media_video_get_sandbox();
        print_bounds("video: decoded in a process of its own per video, nanovl-video (", "s a step", sb.timeout_s,
                     sb.max_mb);
    }
    {
        const media_image_sandbox sb = media_image_get_sandbox();
        print_bounds("images: decoded in a process of their own per image, nanovl-image (", "s", sb.timeout_s,
                     sb.max_mb);
    }
    return 0;
}

static int cmd_inspect(int argc, char **argv) {
    static const char *usage = "usage: nanovl inspect DIR | FILE.safetensors | INDEX.json\n"
                               "  describes a checkpoint and lists every problem; exit 1 when it is unusable\n";
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
    if (argc != 1 || argv[0][0] == '-') {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    nvl_err err = {0};
    int usable = 0;
    nvl_status st = api_inspect(argv[0], stdout, &usable, &err);
    if (st != NVL_OK) {
        fprintf(stderr, "nanovl inspect: %s: %s\n", nvl_status_str(st), err.msg);
        return 1;
    }
    if (!usable) {
        fprintf(stderr, "nanovl inspect: %s: checkpoint is not usable (see problems above)\n",
                argv[0]);
        return 1;
    }
    return 0;
}

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
} k_commands[] = {
    {"ask", cmd_ask},
    {"ocr", cmd_ocr},
    {"serve", cmd_serve},
    {"batch", cmd_batch},
    {"jobs", cmd_jobs},
    {"bench", cmd_bench},
    {"inspect", cmd_inspect},
    {"generate", cmd_generate},
    {"tokenize", cmd_tokenize},
    {"media-info", cmd_media_info},
    {"render", cmd_render},
    {"embed", cmd_embed},
    {"version", cmd_version},
    {"help", cmd_help},
};

/* Removes argv[a .. a+n-1] (argv[*argc] is NULL and moves with the rest). */
static void argv_remove(int *argc, char **argv, int a, int n) {
    for (int b = a; b + n <= *argc; b++) argv[b] = argv[b + n];
    *argc -= n;
}

/* --page-timeout S / --page-memory MIB (every command that renders PDF pages honours them),
 * --video-timeout S / --video-memory MIB (every command that decodes videos) and --image-timeout
 * S / --image-memory MIB (still images) anywhere after the command: the sandboxes' bounds; and
 * --max-megapixels MP (*mp, 0 when absent): the pixels of one image, page or frame. Removed from
 * argv. 0 on success, else EXIT_USAGE. */
static int sandbox_options(int *argc, char **argv, media_pdf_sandbox *sb, media_video_sandbox *vsb,
                           media_image_sandbox *isb, double *mp) {
    *mp = 0;
    for (int a = 2; a < *argc && strcmp(argv[a], "--");) { /* after "--" every argument is a file */
        double *to = !strcmp(argv[a], "--page-timeout")      ? &sb->timeout_s
                     : !strcmp(argv[a], "--page-memory")     ? &sb->max_mb
                     : !strcmp(argv[a], "--video-timeout")   ? &vsb->timeout_s
                     : !strcmp(argv[a], "--video-memory")    ? &vsb->max_mb
                     : !strcmp(argv[a], "--image-timeout")   ? &isb->timeout_s
                     : !strcmp(argv[a], "--image-memory")    ? &isb->max_mb
                     : !strcmp(argv[a], "--max-megapixels")  ? mp
                                                             : NULL;
        if (!to) {
            a++;
            continue;
        }
        const int is_time = to == &sb->timeout_s || to == &vsb->timeout_s || to == &isb->timeout_s;
        /* megapixels: 0.001 (a 1000-pixel image) to 100000 (past any decoder's own bound) */
        if (!cli_num_option(argv[1], argv[a], a + 1 < *argc ? argv[a + 1] : NULL, to == mp ? 0.001 : 0,
                            to == mp ? 100000 : is_time ? 86400 : 999999, 0, to))
            return EXIT_USAGE;
        argv_remove(argc, argv, a, 2);
    }
    return 0;
}

int main(int argc, char **argv) {
    media_pdf_worker_main(argc, argv); /* the PDF renderer: this executable started again (media.h) */
    media_video_worker_main(argc, argv); /* the video decoder: the same */
    media_image_worker_main(argc, argv); /* the image decoder: the same */
    /* past a file size limit (ulimit -f) a write fails (EFBIG) and the command says so, naming
       the file, rather than ending on SIGXFSZ without a word (batch and ocr --resume keep what
       was written whole) */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, k_usage, NANOVL_VERSION);
        return EXIT_USAGE;
    }
    /* the global options may come before the command too (nanovl --backend cpu ask ...): moved
       just after it, where they are read */
    static const char *const k_global[] = {"--backend", "--page-timeout", "--page-memory", "--video-timeout",
                                           "--video-memory", "--image-timeout", "--image-memory", "--max-megapixels",
                                           NULL};
    int lead = 1; /* argv[1 .. lead-1]: global options and their values */
    for (;;) {
        int known = 0;
        for (int g = 0; k_global[g] && lead < argc; g++)
            if (!strcmp(argv[lead], k_global[g])) known = 2;
        if (lead < argc && !strncmp(argv[lead], "--backend=", 10)) known = 1;
        if (!known || lead + known > argc) break;
        lead += known;
    }
    if (lead > 1 && lead < argc) { /* argv[lead] is the command: argv = prog, command, options, rest */
        char *c = argv[lead];
        memmove(argv + 2, argv + 1, (size_t)(lead - 1) * sizeof *argv);
        argv[1] = c;
    } else if (lead > 1 || (argc == 2 && !strncmp(argv[1], "--", 2) && strcmp(argv[1], "--help") && strcmp(argv[1], "--version"))) {
        int global = lead > 1; /* (a global option alone, or with its value missing) */
        for (int g = 0; k_global[g] && !global; g++) global = !strcmp(argv[1], k_global[g]) || !strncmp(argv[1], "--backend=", 10);
        if (global) {
            fprintf(stderr, "nanovl: %s: %s (try 'nanovl --help')\n", argv[1],
                    lead > 1 ? "no command after the options" : "needs a value, then a command");
            return EXIT_USAGE;
        }
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) return output_checked("--help", cmd_help(0, NULL));
    /* --backend X anywhere after the command: NVL_BACKEND=X for this run (every command that loads
       a model takes its backend from there); removed before the command parses its options */
    for (int a = 2; a < argc && strcmp(argv[a], "--");) { /* (after "--" every argument is a file) */
        const char *v = NULL;
        int used = 0;
        if (!strcmp(argv[a], "--backend")) {
            if (a + 1 >= argc) {
                fprintf(stderr, "nanovl: --backend needs cpu, cuda or auto\n");
                return EXIT_USAGE;
            }
            v = argv[a + 1];
            used = 2;
        } else if (!strncmp(argv[a], "--backend=", 10)) {
            v = argv[a] + 10;
            used = 1;
        }
        if (!used) {
            a++;
            continue;
        }
        if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
            fprintf(stderr, "nanovl: --backend '%s': unknown backend (expected cpu, cuda or auto)\n", v);
            return EXIT_USAGE;
        }
        setenv("NVL_BACKEND", v, 1);
        argv_remove(&argc, argv, a, used);
    }
    /* PDF pages render, and videos and images decode, in processes of their own, bounded in time
       and memory */
    media_pdf_sandbox sb = media_pdf_sandbox_default();
    media_video_sandbox vsb = media_video_sandbox_default();
    media_image_sandbox isb = media_image_sandbox_default();
    sb.exe = vsb.exe = isb.exe = "/proc/self/exe"; /* this executable, even if its file was replaced since it started */
    double max_mp = 0;
    if (sandbox_options(&argc, argv, &sb, &vsb, &isb, &max_mp)) return EXIT_USAGE;
    if (max_mp > 0) media_set_default_max_pixels((int64_t)llround(max_mp * 1e6));
    media_pdf_set_sandbox(&sb);
    media_video_set_sandbox(&vsb);
    media_image_set_sandbox(&isb);
    /* every documented environment variable is checked before any command runs; NVL_THREADS applies */
    nvl_err env_err = {0};
    if (kern_env_check(&env_err) != NVL_OK || api_env_check(&env_err) != NVL_OK) {
        fprintf(stderr, "nanovl: %s\n", env_err.msg);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) return output_checked("--version", cmd_version(0, NULL));
    if (!strcmp(cmd, "help") && argc > 2) /* `nanovl help ask`: that command's help */
        for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
            if (!strcmp(argv[2], k_commands[i].name) && strcmp(argv[2], "help") && strcmp(argv[2], "version")) {
                char *h[] = {(char *)"--help", NULL};
                return output_checked("help", k_commands[i].fn(1, h));
            }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(cmd, k_commands[i].name)) {
            /* every subcommand prints its own usage for -h / --help; version and help print this */
            const int own_help = strcmp(cmd, "version") && strcmp(cmd, "help");
            for (int a = 2; a < argc && !own_help; a++)
                if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) return cmd_help(0, NULL);
            return output_checked(cmd, k_commands[i].fn(argc - 2, argv + 2));
        }
    fprintf(stderr, "nanovl: unknown command '%s' (try 'nanovl --help')\n", cmd);
    return EXIT_USAGE;
}
