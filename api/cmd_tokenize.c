/* `nanovl tokenize`: debug prompts with the tokenizer of a checkpoint.
 *   text on stdin -> ids;  --decode: ids on stdin -> text;  --chat: JSON messages -> prompt */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "chat.h"
#include "cli_util.h"
#include "commands.h"
#include "tokenizer.h"
#include "wire.h"

static const char *k_usage =
    "usage: nanovl tokenize (--model DIR | --tokenizer FILE|DIR) [--decode | --chat [--ids]] < input\n"
    "  (default)          text on stdin -> token ids, one line, space-separated\n"
    "  --special          add the file's special tokens (post_processor, e.g. BOS), as HF tokenizer(text)\n"
    "  --decode           ids on stdin -> text (special tokens included)\n"
    "  --chat             a JSON messages array on stdin -> the rendered prompt\n"
    "                     ([{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"...\"}]}])\n"
    "    --ids            print the rendered prompt's ids instead of its text (message text is plain\n"
    "                     text, as ask reads it: a typed <image> or <SPECIAL_12> stays text)\n"
    "    --no-generation-prompt, --think, --no-think\n"
    "    --native         nanovl's built-in Nano V2 rendering instead of the checkpoint's chat_template\n"
    "                     (used by default when tokenizer_config.json or chat_template.jinja has one)\n";

static void print_ids(const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = getenv("NANOVL_MODEL");
    int decode = 0, chat = 0, want_ids = 0, native = 0, add_special = 0;
    llm_chat_options co = llm_chat_options_default();
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(k_usage, stdout);
            return 0;
        }
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--model") || !strcmp(argv[i], "--tokenizer")) && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--chat")) chat = 1;
        else if (!strcmp(argv[i], "--ids")) want_ids = 1;
        else if (!strcmp(argv[i], "--native")) native = 1;
        else if (!strcmp(argv[i], "--special")) add_special = 1;
        else if (!strcmp(argv[i], "--no-generation-prompt")) co.add_generation_prompt = 0;
        else if (!strcmp(argv[i], "--think")) co.think = 1;
        else if (!strcmp(argv[i], "--no-think")) co.think = 0;
        else if (!strcmp(argv[i], "--model") || !strcmp(argv[i], "--tokenizer")) {
            fprintf(stderr, "nanovl tokenize: %s needs a value\n%s", argv[i], k_usage);
            return EXIT_USAGE;
        } else {
            fprintf(stderr, "nanovl tokenize: unknown argument '%s'\n%s", argv[i], k_usage);
            return EXIT_USAGE;
        }
    }
    const char *clash = decode && chat ? "--decode and --chat are two modes: one at a time"
                        : want_ids && !chat ? "--ids goes with --chat (text -> ids is the default mode)"
                        : add_special && (decode || chat) ? "--special goes with the default mode (text -> ids)"
                        : (native || !co.add_generation_prompt || co.think >= 0) && !chat
                            ? "--native, --no-generation-prompt, --think and --no-think go with --chat"
                            : NULL;
    if (!path || clash) {
        fprintf(stderr, "%s%s%s%s", clash ? "nanovl tokenize: " : "", clash ? clash : "", clash ? "\n" : "", k_usage);
        return EXIT_USAGE;
    }
    nvl_err err = {0};
    llm_tokenizer *tok = NULL;
    if (llm_tokenizer_load(&tok, path, &err) != NVL_OK) {
        fprintf(stderr, "nanovl tokenize: %s\n", err.msg);
        return 1;
    }
    size_t len = 0;
    char *in = cli_read_stdin("tokenize", &len);
    int rc = 1;
    int32_t *ids = NULL;
    int64_t n = 0;
    char *text = NULL;
    cJSON *root = NULL;
    llm_chat_message *msgs = NULL;
    int nm = 0;
    char **owned = NULL;
    int n_owned = 0;
    if (!in) goto done;
    if (decode) {
        const char *bad = NULL;
        if (memchr(in, 0, len)) {
            fprintf(stderr, "nanovl tokenize --decode: stdin holds a NUL byte (ids are text: 1 2 3)\n");
            rc = EXIT_USAGE;
            goto done;
        }
        if (!cli_parse_ids(in, &ids, &n, &bad)) {
            cli_say_bad_id("tokenize --decode", "stdin", bad);
            rc = EXIT_USAGE;
            goto done;
        }
        size_t tl = 0, cl = 0;
        char *clean = NULL;
        if (llm_tokenizer_decode(tok, ids, n, &text, &tl, &err) != NVL_OK) {
            fprintf(stderr, "nanovl tokenize: %s\n", err.msg);
            goto done;
        }
        /* text, as tokenizers' decode gives it: bytes that are not UTF-8 (a token ending mid
           character) become U+FFFD (they were written raw) */
        if (llm_utf8_sanitize(text, tl, &clean, &cl) != NVL_OK) {
            fprintf(stderr, "nanovl tokenize: out of memory\n");
            goto done;
        }
        fwrite(clean, 1, cl, stdout);
        nvl_free(clean);
        rc = 0;
    } else if (chat) {
        if (nvl_json_parse(&root, in, len, "stdin", &err) != NVL_OK ||
            llm_chat_messages_from_json(root, &msgs, &nm, &err) != NVL_OK) {
            fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg);
            goto done;
        }
        if (api_json_has_nul(in, len)) { /* (cJSON's strings end at one: the rest of the text was lost) */
            fprintf(stderr, "nanovl tokenize --chat: stdin: a string holds a NUL character (\\u0000 or a raw 0 byte), "
                            "which no message may (ask and serve refuse it too)\n");
            goto done;
        }
        /* message text is plain text, as nanovl ask reads it: typed markers and special tokens
           stay text */
        if (llm_chat_escape_messages(tok, msgs, nm, &owned, &n_owned, &err) != NVL_OK) {
            fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg);
            goto done;
        }
        size_t tl = 0;
        char *tmpl = NULL;
        cJSON *special = NULL;
        if (!native) { /* the checkpoint's own template, from the directory (or the tokenizer file's) */
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", path);
            struct stat sb;
            if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
                char *slash = strrchr(dir, '/');
                if (slash) *slash = 0;
                else snprintf(dir, sizeof dir, ".");
            }
            if (llm_chat_template_load(dir, &tmpl, &special, &err) != NVL_OK) {
                fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg);
                goto done;
            }
        }
        nvl_status rst = tmpl ? llm_chat_render_template(tmpl, msgs, nm, &co, special, &text, &tl, &err)
                              : llm_chat_render(msgs, nm, &co, &text, &tl, &err);
        nvl_free(tmpl);
        cJSON_Delete(special);
        if (rst != NVL_OK) {
            fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg);
            goto done;
        }
        if (want_ids) {
            if (llm_chat_encode_rendered(tok, text, tl, &ids, &n, &err) != NVL_OK) {
                fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg); /* (it exited 1 without a word) */
                goto done;
            }
            print_ids(ids, n);
        } else {
            char *shown = NULL;
            size_t sl = 0;
            if (llm_chat_unescape(text, tl, &shown, &sl, &err) != NVL_OK) {
                fprintf(stderr, "nanovl tokenize --chat: %s\n", err.msg);
                goto done;
            }
            fwrite(shown, 1, sl, stdout);
            nvl_free(shown);
        }
        rc = 0;
    } else {
        if ((add_special ? llm_tokenizer_encode_special(tok, in, len, &ids, &n, &err) : llm_tokenizer_encode(tok, in, len, &ids, &n, &err)) !=
            NVL_OK) {
            fprintf(stderr, "nanovl tokenize: %s\n", err.msg);
            goto done;
        }
        print_ids(ids, n);
        rc = 0;
    }
done:
    for (int i = 0; i < n_owned; i++) nvl_free(owned[i]);
    nvl_free(owned);
    llm_chat_messages_free(msgs, nm);
    cJSON_Delete(root);
    nvl_free(text);
    nvl_free(ids);
    nvl_free(in);
    llm_tokenizer_free(tok);
    return rc;
}
