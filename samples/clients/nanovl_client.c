/* A client for `nanovl serve` (docs/api.md) in C11 with libc (POSIX) only: copy it into a
 * pipeline. One request per run (or with --chat one per line of stdin, a conversation); events are
 * streamed as they arrive; Ctrl-C cancels the request on the server (a second Ctrl-C leaves at
 * once, which also cancels it: the connection closes).
 *
 *   cc -std=c11 -O2 -o nanovl_client nanovl_client.c
 *   nanovl_client --socket /run/nanovl.sock report.pdf "What is the total?"
 *   nanovl_client --socket /run/nanovl.sock --ocr scan.pdf --pages 1-3
 *   nanovl_client --socket /run/nanovl.sock --inline photo.jpg "Describe it."
 *   nanovl_client --socket /run/nanovl.sock --events chart.png "Which quarter is best?"
 *   nanovl_client --socket /run/nanovl.sock --chat report.pdf          # questions on stdin
 *
 * Files are sent as absolute paths (the server resolves a relative one against its own working
 * directory), or with --inline as base64 bytes (the server needs no access to the file then).
 * Output: the answer (or each OCR page with a marker) on stdout as it is generated, progress and
 * a usage line on stderr; with --events, every event line of the request as the server sent it.
 * Exit: 0 done, 1 an error event or a lost connection, 2 usage, 130 cancelled by Ctrl-C. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _XOPEN_SOURCE 700 /* POSIX 2008 with realpath */
#endif
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* t inside an HTML comment on stdout, as nanovl ocr writes it: a '>' that would end the comment
 * (after "--" or "--!") as &gt;, a '<' that would open one ("<!--") as &lt; */
static void comment_text(const char *t) {
  for (const char *m = t; *m; m++) {
    const size_t k = (size_t)(m - t);
    if (*m == '>' && ((k >= 2 && !strncmp(m - 2, "--", 2)) || (k >= 3 && !strncmp(m - 3, "--!", 3)))) fputs("&gt;", stdout);
    else if (*m == '<' && !strncmp(m, "<!--", 4)) fputs("&lt;", stdout);
    else putchar(*m);
  }
}

/* ---- a growable string ------------------------------------------------------------------ */

typedef struct { char *p; size_t n, cap; } buf;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nanovl_client: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void buf_add(buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) die("out of memory");
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void buf_str(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* a JSON string literal */
static void buf_json(buf *b, const char *s) {
  buf_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      buf_add(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      buf_add(b, esc, 6);
    } else {
      buf_add(b, s, 1);
    }
  }
  buf_add(b, "\"", 1);
}

static void buf_base64(buf *b, const unsigned char *d, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
    char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '='};
    buf_add(b, q, 4);
  }
}

/* ---- reading event lines: just enough JSON to pick top-level fields ----------------------- */

static const char *skip_ws(const char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
  return s;
}

/* past one JSON value (string, number, literal, object or array); NULL if malformed */
static const char *skip_value(const char *s) {
  s = skip_ws(s);
  if (*s == '"') {
    for (s++; *s && *s != '"'; s++)
      if (*s == '\\' && !*++s) return NULL;
    return *s ? s + 1 : NULL;
  }
  if (*s == '{' || *s == '[') {
    int depth = 0;
    for (; *s; s++) {
      if (*s == '"') {
        s = skip_value(s);
        if (!s) return NULL;
        s--;
      } else if (*s == '{' || *s == '[') {
        depth++;
      } else if ((*s == '}' || *s == ']') && --depth == 0) {
        return s + 1;
      }
    }
    return NULL;
  }
  while (*s && *s != ',' && *s != '}' && *s != ']' && *s != ' ' && *s != '\n') s++;
  return s;
}

static void put_utf8(buf *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), n = 2;
  else if (cp < 0x10000)
    u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 63)), u[2] = (char)(0x80 | (cp & 63)), n = 3;
  else
    u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 63)), u[2] = (char)(0x80 | (cp >> 6 & 63)),
    u[3] = (char)(0x80 | (cp & 63)), n = 4;
  buf_add(b, u, n);
}

static unsigned hex4(const char *s) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v = v << 4 | (unsigned)(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0);
  }
  return v;
}

/* decode the string literal at s (which starts with '"') into out */
static void decode_string(const char *s, const char *end, buf *out) {
  out->n = 0;
  buf_add(out, "", 0);
  for (s++; s < end - 1; s++) {
    if (*s != '\\') {
      buf_add(out, s, 1);
      continue;
    }
    char c = *++s;
    if (c == 'u' && end - s > 4) {
      unsigned cp = hex4(s + 1);
      s += 4;
      if (cp >= 0xD800 && cp < 0xDC00 && end - s > 6 && s[1] == '\\' && s[2] == 'u') {
        unsigned lo = hex4(s + 3);
        if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00), s += 6;
      }
      put_utf8(out, cp);
    } else {
      char r = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
      buf_add(out, &r, 1);
    }
  }
}

/* the top-level field `key` of the object `obj`: a string is decoded into out (returns 1), any
 * other value is copied as written (returns 2); 0 when absent */
static int json_get(const char *obj, const char *key, buf *out) {
  const char *s = skip_ws(obj);
  if (*s++ != '{') return 0;
  buf k = {0};
  int found = 0;
  for (;;) {
    s = skip_ws(s);
    if (*s != '"') break;
    const char *ke = skip_value(s);
    if (!ke) break;
    decode_string(s, ke, &k);
    s = skip_ws(ke);
    if (*s++ != ':') break;
    s = skip_ws(s);
    const char *ve = skip_value(s);
    if (!ve) break;
    if (strcmp(k.p, key) == 0) {
      if (*s == '"') {
        decode_string(s, ve, out);
        found = 1;
      } else {
        out->n = 0;
        buf_add(out, s, (size_t)(ve - s));
        found = 2;
      }
      break;
    }
    s = skip_ws(ve);
    if (*s++ != ',') break;
  }
  free(k.p);
  return found;
}

/* ---- the connection ------------------------------------------------------------------------ */

static volatile sig_atomic_t g_interrupts;
static void on_sigint(int sig) { (void)sig; g_interrupts++; }

static void send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) die("send: %s", strerror(errno));
    p += w, n -= (size_t)w;
  }
}

static void usage(int asked) { /* asked (-h, --help): stdout, exit 0; else a usage error */
  fputs("usage: nanovl_client --socket PATH [--ocr | --chat] [--inline] [--pages R] [--max-tokens N]\n"
        "                     [--no-think] [--events] FILE... [QUESTION]\n"
        "  the question is the last argument (none with --ocr or --chat); Ctrl-C cancels the request\n"
        "  --chat: a conversation, a question per line of stdin (/reset, /help, /exit as nanovl ask --chat)\n",
        asked ? stdout : stderr);
  exit(asked ? 0 : 2);
}

static void add_media(buf *req, const char *path, int inline_bytes) {
  buf_str(req, "{\"type\":\"file\",");
  if (inline_bytes) {
    struct stat sb; /* a regular file only: a FIFO would block the read, a directory fails it */
    if (stat(path, &sb) != 0) die("%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) die("%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: %s", path, strerror(errno));
    buf data = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_add(&data, chunk, n);
    if (ferror(f)) die("%s: read error", path);
    fclose(f);
    buf_str(req, "\"data\":\"");
    buf_base64(req, (const unsigned char *)(data.p ? data.p : ""), data.n);
    buf_str(req, "\",\"name\":");
    buf_json(req, path);
    free(data.p);
  } else {
    char abs[PATH_MAX];
    if (!realpath(path, abs)) die("%s: %s", path, strerror(errno));
    buf_str(req, "\"path\":");
    buf_json(req, abs);
  }
  buf_str(req, "}");
}

/* Sends req (a request line with id) on fd and streams its events until its done or error event:
 * the answer (or each OCR page with a marker) on stdout, progress on stderr; with events every
 * event line as the server sent it. *in holds bytes read past the last line (kept for the next
 * request on the connection); with answer, the done's answer is copied there. Ctrl-C sends a
 * cancel for id; a second one leaves. Returns 0 done, 1 an error event or a lost connection, 130
 * cancelled by Ctrl-C (or 130 and *left = 1 after a second Ctrl-C). */
static int run_request(int fd, const char *id, const buf *req, int ocr, int events, buf *in, buf *answer, int *left) {
  send_all(fd, req->p, req->n);
  buf v = {0}, w = {0};
  int cancel_sent = 0, rc = -1;
  g_interrupts = 0;
  while (rc < 0) {
    if (g_interrupts > 1) {
      fputs("\nnanovl_client: interrupted\n", stderr);
      rc = 130;
      *left = 1;
      break;
    }
    if (g_interrupts == 1 && !cancel_sent) {
      buf c = {0};
      buf_str(&c, "{\"v\":1,\"type\":\"cancel\",\"target\":");
      buf_json(&c, id);
      buf_str(&c, "}\n");
      send_all(fd, c.p, c.n);
      free(c.p);
      cancel_sent = 1;
      fputs("\nnanovl_client: cancelling (Ctrl-C again to leave at once)\n", stderr);
    }
    char *nl = in->n ? memchr(in->p, '\n', in->n) : NULL;
    if (!nl) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        die("poll: %s", strerror(errno));
      }
      char chunk[65536];
      ssize_t r = recv(fd, chunk, sizeof chunk, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        fprintf(stderr, "nanovl_client: the server closed the connection\n");
        rc = 1;
        *left = 1;
        break;
      }
      buf_add(in, chunk, (size_t)r);
      continue;
    }
    *nl = 0;
    const char *line = in->p;
    /* match on id: the events of this request (or id null: the connection's own trouble) */
    int has_id = json_get(line, "id", &v);
    int ours = has_id == 1 ? strcmp(v.p, id) == 0 : 1;
    if (ours && json_get(line, "event", &v) == 1) {
      if (events) printf("%s\n", line), fflush(stdout);
      if (!strcmp(v.p, "token")) {
        if (!events && json_get(line, "reasoning", &w) == 2 && strcmp(w.p, "true") != 0 &&
            json_get(line, "text", &w) == 1) {
          fputs(w.p, stdout);
          fflush(stdout);
        }
      } else if (!strcmp(v.p, "progress")) {
        buf stage = {0}, item = {0}, done = {0}, total = {0};
        json_get(line, "stage", &stage), json_get(line, "item", &item);
        json_get(line, "done", &done), json_get(line, "total", &total);
        const int known = total.p && strcmp(total.p, "0") != 0; /* (total 0: not known yet) */
        fprintf(stderr, "\r[%s] %s %s%s%s", stage.p ? stage.p : "", item.p ? item.p : "", done.p ? done.p : "",
                known ? "/" : "", known ? total.p : "");
        free(stage.p), free(item.p), free(done.p), free(total.p);
      } else if (!strcmp(v.p, "notice")) {
        if (json_get(line, "message", &w) == 1) fprintf(stderr, "\nnote: %s\n", w.p);
      } else if (!strcmp(v.p, "page")) {
        if (!events) {
          buf file = {0}, page = {0};
          json_get(line, "file", &file);
          int pg = json_get(line, "page", &page) == 2;
          if (pg) printf("<!-- page %s: ", page.p); /* as nanovl ocr marks them */
          else fputs("<!-- image: ", stdout);
          comment_text(file.p ? file.p : "");
          fputs(" -->\n\n", stdout);
          if (json_get(line, "text", &w) == 1) printf("%s\n\n", w.p);
          fflush(stdout);
          free(file.p), free(page.p);
        }
        if (json_get(line, "error", &w) == 2) fprintf(stderr, "page error: %s\n", w.p);
      } else if (!strcmp(v.p, "done")) {
        buf usage_obj = {0}, pt = {0}, ct = {0};
        json_get(line, "usage", &usage_obj);
        if (usage_obj.p) json_get(usage_obj.p, "prompt_tokens", &pt), json_get(usage_obj.p, "completion_tokens", &ct);
        if (!events && !ocr) putchar('\n');
        if (ocr) {
          json_get(line, "failed_pages", &w);
          fprintf(stderr, "\n[done: %s failed pages]\n", w.p ? w.p : "0");
        } else {
          fprintf(stderr, "\n[done: %s prompt tokens, %s generated]\n", pt.p ? pt.p : "-", ct.p ? ct.p : "-");
        }
        if (answer) {
          answer->n = 0;
          buf_str(answer, json_get(line, "answer", &w) == 1 ? w.p : "");
        }
        free(usage_obj.p), free(pt.p), free(ct.p);
        rc = 0;
        /* a cancel that came too late still gets its done: a stopped answer is "cancelled" */
        if (json_get(line, "finish_reason", &w) == 1 && !strcmp(w.p, "cancelled")) rc = 130;
      } else if (!strcmp(v.p, "error")) {
        buf code = {0};
        json_get(line, "code", &code);
        json_get(line, "message", &w);
        fprintf(stderr, "\nerror: %s: %s\n", code.p ? code.p : "?", w.p ? w.p : "");
        rc = cancel_sent && code.p && !strcmp(code.p, "cancelled") ? 130 : 1;
        free(code.p);
      }
    }
    size_t rest = in->n - (size_t)(nl + 1 - in->p);
    memmove(in->p, nl + 1, rest);
    in->n = rest;
  }
  free(v.p), free(w.p);
  return rc;
}

/* The request's params object ("params":{...}) */
static void add_params(buf *req, const char *pages, long max_tokens, int no_think) {
  buf_str(req, ",\"params\":{");
  const char *sep = "";
  char num[48];
  if (pages) buf_str(req, "\"pages\":"), buf_json(req, pages), sep = ",";
  if (max_tokens > 0) {
    snprintf(num, sizeof num, "%s\"max_tokens\":%ld", sep, max_tokens);
    buf_str(req, num);
    sep = ",";
  }
  if (no_think) buf_str(req, sep), buf_str(req, "\"think\":false");
  buf_str(req, "}");
}

/* What a line of a conversation is (leading blanks dropped), as `nanovl ask --chat` reads it: 0
 * a question; 1 /exit or /quit; 2 /reset; 3 /help; -1 a /word that is no command (said); -2 a
 * command with more after it (said). */
static int chat_command(const char *q) {
  if (q[0] != '/') return 0;
  size_t w = 1;
  while ((q[w] >= 'a' && q[w] <= 'z') || (q[w] >= 'A' && q[w] <= 'Z')) w++;
  if (w == 1 || (q[w] && q[w] != ' ' && q[w] != '\t')) return 0;
  char word[16] = "";
  for (size_t i = 0; i < w && i + 1 < sizeof word; i++) word[i] = (char)(q[i] >= 'A' && q[i] <= 'Z' ? q[i] + 32 : q[i]);
  int cmd = w >= sizeof word ? -1
            : !strcmp(word, "/exit") || !strcmp(word, "/quit") ? 1
            : !strcmp(word, "/reset")                          ? 2
            : !strcmp(word, "/help")                           ? 3
                                                               : -1;
  const char *rest = q + w;
  while (*rest == ' ' || *rest == '\t') rest++;
  if (cmd == -1) fprintf(stderr, "%.*s is not a command (/help lists them; to ask a question that begins so, put a word "
                                 "before it)\n", (int)(w > 64 ? 64 : w), q);
  else if (*rest) fprintf(stderr, "%.*s takes nothing after it\n", (int)w, q), cmd = -2;
  return cmd;
}

/* --chat: a question per line of stdin, each sent with the conversation before it (the files with
 * the first question, then each answer as an "assistant" turn and the next question), as
 * `nanovl ask --chat` asks them. Returns 0, 1 a turn failed or was cancelled, 130 Ctrl-C at the
 * prompt (or twice during an answer). */
static int chat(int fd, const buf *parts, const char *pages, long max_tokens, int no_think, int events) {
  buf hist = {0}, in = {0}, answer = {0}, req = {0};
  char *line = NULL;
  size_t cap = 0;
  int rc = 0, turn = 0, left = 0;
  for (;;) {
    if (isatty(STDIN_FILENO)) fputs("> ", stderr);
    g_interrupts = 0;
    errno = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
      if (g_interrupts || errno == EINTR) fputc('\n', stderr), rc = 130; /* Ctrl-C at the prompt: the end */
      break;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
    const char *q = line;
    while (*q == ' ' || *q == '\t') q++;
    if (!*q) continue;
    const int cmd = chat_command(q);
    if (cmd == 1) break;
    if (cmd == 2) {
      hist.n = 0;
      if (hist.p) hist.p[0] = 0;
      fputs("(a new conversation about the same files)\n", stderr);
      continue;
    }
    if (cmd == 3)
      fputs("a question per line; /reset starts the conversation again; /exit, /quit or end of input ends; Ctrl-C "
            "cancels an answer, at the prompt it ends\n", stderr);
    if (cmd) continue;
    char id[64];
    snprintf(id, sizeof id, "c-%ld-%d", (long)getpid(), ++turn);
    /* the turn: the files go with the first question only */
    buf user = {0};
    buf_str(&user, "{\"role\":\"user\",\"content\":");
    if (!hist.n) buf_str(&user, "["), buf_add(&user, parts->p, parts->n), buf_str(&user, ",{\"type\":\"text\",\"text\":");
    buf_json(&user, q);
    buf_str(&user, hist.n ? "}" : "}]}");
    req.n = 0;
    buf_str(&req, "{\"v\":1,\"id\":");
    buf_json(&req, id);
    buf_str(&req, ",\"messages\":[");
    if (hist.n) buf_add(&req, hist.p, hist.n), buf_str(&req, ",");
    buf_add(&req, user.p, user.n);
    buf_str(&req, "]");
    add_params(&req, pages, max_tokens, no_think);
    buf_str(&req, "}\n");
    const int r = run_request(fd, id, &req, 0, events, &in, &answer, &left);
    if (r == 0) { /* the turn joins the conversation; a failed or cancelled one is left out */
      if (hist.n) buf_str(&hist, ",");
      buf_add(&hist, user.p, user.n);
      buf_str(&hist, ",{\"role\":\"assistant\",\"content\":");
      buf_json(&hist, answer.p ? answer.p : "");
      buf_str(&hist, "}");
    } else {
      rc = 1;
    }
    free(user.p);
    if (left) {
      rc = r;
      break;
    }
  }
  free(hist.p), free(in.p), free(answer.p), free(req.p), free(line);
  return rc;
}

int main(int argc, char **argv) {
  const char *sock = NULL, *pages = NULL;
  long max_tokens = 0;
  int ocr = 0, inline_bytes = 0, no_think = 0, events = 0, nargs = 0, chat_mode = 0;
  char **args = calloc((size_t)argc, sizeof *args);
  if (!args) die("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--socket") && i + 1 < argc) sock = argv[++i];
    else if (!strcmp(a, "--pages") && i + 1 < argc) pages = argv[++i];
    else if (!strcmp(a, "--max-tokens") && i + 1 < argc) {
      char *end = NULL;
      errno = 0;
      max_tokens = strtol(argv[++i], &end, 10);
      if (errno || end == argv[i] || *end || max_tokens < 1) die("--max-tokens: expected a whole number >= 1, got '%s'", argv[i]);
    }
    else if (!strcmp(a, "--ocr")) ocr = 1;
    else if (!strcmp(a, "--chat")) chat_mode = 1;
    else if (!strcmp(a, "--inline")) inline_bytes = 1;
    else if (!strcmp(a, "--no-think")) no_think = 1;
    else if (!strcmp(a, "--events")) events = 1;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage(1);
    else if (a[0] == '-' && a[1] == '-') usage(0);
    else args[nargs++] = argv[i];
  }
  if (ocr && chat_mode) usage(0);
  int nfiles = ocr || chat_mode ? nargs : nargs - 1;
  if (!sock || nfiles < 1) usage(0);

  /* the media parts, as absolute paths or bytes */
  buf parts = {0};
  for (int i = 0; i < nfiles; i++) {
    if (i) buf_str(&parts, ",");
    add_media(&parts, args[i], inline_bytes);
  }

  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock) >= sizeof addr.sun_path) die("socket path too long: %s", sock);
  strcpy(addr.sun_path, sock);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("%s: %s", sock, strerror(errno));

  struct sigaction sa = {0};
  sa.sa_handler = on_sigint; /* no SA_RESTART: poll() and the prompt's read return EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);

  int rc;
  if (chat_mode) {
    rc = chat(fd, &parts, pages, max_tokens, no_think, events);
  } else {
    char id[64];
    snprintf(id, sizeof id, "c-%ld", (long)getpid());
    /* the request: {"v":1,"id":...,"type":"ocr","files":[...]} or a user message with the media
     * parts and the question */
    buf req = {0}, in = {0};
    buf_str(&req, "{\"v\":1,\"id\":");
    buf_json(&req, id);
    if (ocr) {
      buf_str(&req, ",\"type\":\"ocr\",\"files\":[");
      buf_add(&req, parts.p, parts.n);
      buf_str(&req, "]");
    } else {
      buf_str(&req, ",\"messages\":[{\"role\":\"user\",\"content\":[");
      buf_add(&req, parts.p, parts.n);
      buf_str(&req, ",{\"type\":\"text\",\"text\":");
      buf_json(&req, args[nargs - 1]);
      buf_str(&req, "}]}]");
    }
    add_params(&req, pages, max_tokens, no_think);
    buf_str(&req, "}\n");
    int left = 0;
    rc = run_request(fd, id, &req, ocr, events, &in, NULL, &left);
    free(req.p), free(in.p);
  }
  close(fd);
  free(parts.p), free(args);
  return rc;
}
