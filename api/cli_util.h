/* Internal header: included only by api/cmd_*.c. Small helpers shared by the subcommands. */
#ifndef API_CLI_UTIL_H
#define API_CLI_UTIL_H

#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* Reads all of stdin into an nvl_malloc'ed NUL-terminated buffer (*len bytes). NULL having said
 * why on stderr ("nanovl CMD: stdin: ..."): a read error (a directory, a closed descriptor) or
 * out of memory. */
char *cli_read_stdin(const char *cmd, size_t *len);
/* The media of file arguments args[0..n): each a path, or for "-" stdin as a file named "-", read
 * once per process (every "-" gets the same). Stdin that is a regular file (a redirect) read from
 * its start is given as itself; a pipe (or a file read part way) is copied, from where it stands,
 * to an unlinked temporary file in $TMPDIR (else /tmp), so a large video costs disk, not memory.
 * Either is opened by the engine through its /proc/self/fd path (errors name '-'), so nothing is
 * copied twice; without /proc it is given as mapped bytes. Returns an nvl_malloc'ed array (n + 1),
 * or NULL having said why on stderr ("nanovl CMD: ...": stdin is a terminal, empty, cannot be read,
 * no room for its copy; out of memory). */
struct api_media;
struct api_media *cli_media_args(const char *cmd, const char *const *args, int n);
/* 1 when paths a and b name the same existing file (device and inode: links and ./ forms too). */
int cli_same_file(const char *a, const char *b);
/* Parses "1 2, 3" (spaces, commas, newlines) into an nvl_malloc'ed array of token ids
 * 0..INT32_MAX. 0 on a bad token, with *bad at it (NULL when memory ran out); cli_say_bad_id
 * prints "nanovl CMD: WHAT: 'TOKEN' is not a token id (...)" for it. */
int cli_parse_ids(const char *s, int32_t **ids, int64_t *n, const char **bad);
void cli_say_bad_id(const char *cmd, const char *what, const char *bad);

/* Parses a whole number string v within lo..hi (NaN and infinities refused; integer: no
 * fraction): 1 and *out, else 0. cli_num_option prints "nanovl CMD: OPT needs ..." on failure. */
int cli_num(const char *v, double lo, double hi, int integer, double *out);
int cli_num_option(const char *cmd, const char *opt, const char *v, double lo, double hi, int integer, double *out);

/* --pages R's syntax ("1-3,7,10-": from 1, not backwards), checked before any document is open:
 * 1, or 0 having printed "nanovl CMD: --pages 'R': why" (a bad range failed every PDF in a run,
 * each on its own, and an image-only run took it without a word). With cap a page number past
 * 1000000 is refused too (a jobs file: no document to name its count); without, the document
 * says so when it opens. */
int cli_check_pages(const char *cmd, const char *pages, int cap);

/* Options shared by ask, ocr, batch and bench: --model, -h/--help (prints usage and the shared
 * options' help on stdout) and the model-side parameters. Consumes argv[*i] (and its value)
 * when it is one of them: returns 1; 2 for --help (the command exits 0); 0 when not one of
 * them; -1 for a bad value (message printed). */
struct api_ask_params;
int cli_ask_option(int argc, char **argv, int *i, struct api_ask_params *p, const char **model, const char *cmd,
                   const char *usage);
/* The help lines for those options. */
extern const char *const cli_ask_options_help;
/* Says on stderr (a note; the command goes on) when sampling options were given that greedy
 * decoding ignores: top_k > 0, top_p < 1, min_p > 0 or a seed with temperature 0 (the default),
 * as transformers warns when do_sample is off. */
struct llm_sampler_params;
void cli_sampling_note(const char *cmd, const struct llm_sampler_params *s);

/* Progress on stderr when it is a terminal (or forced), quiet otherwise: one line redrawn at
 * most ten times a second, cleared before other output. */
typedef struct cli_progress {
    int on;
    int shown;
    double last;
    char prefix[96]; /* e.g. "[3/12] " for batch */
    int last_stage;  /* a new stage is always shown */
    int text_tty;    /* the streamed text goes to a terminal: -1 not known yet (cli_progress_wrote) */
    int midline;     /* ...and its last line is not ended: drawing would erase it, so nothing is drawn */
} cli_progress;
/* Tells p what the command streamed to f (the answer, a page's Markdown): while a terminal's
 * line of it is unfinished, progress is not drawn (the "\r" redraw would wipe that line). */
void cli_progress_wrote(cli_progress *p, FILE *f, const char *s, size_t n);
void cli_progress_init(cli_progress *p, int force); /* force: -1 auto (isatty), 0 off, 1 on */
void cli_progress_show(cli_progress *p, int always, const char *fmt, ...);
void cli_progress_clear(cli_progress *p);
/* An api_callbacks.on_progress that draws api_progress on a cli_progress (user). */
struct api_progress;
void cli_on_progress(const struct api_progress *pr, void *user);

/* From a SIGINT/SIGTERM handler on a second signal: a step nothing interrupts (Poppler rendering
 * a dense page, tens of seconds) held the orderly cancel, and SIGINT/SIGTERM were ignored until it
 * ended. Says so on stderr (async-signal-safe) and _exit(130) at once; what the first signal
 * would have finished is left as it is. */
void cli_force_exit_on_second_signal(const char *cmd);

#endif // API_CLI_UTIL_H
