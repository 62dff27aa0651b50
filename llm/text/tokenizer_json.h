/* Internal to llm/text/tokenizer.c: the fast path for tokenizer.json's model.vocab and model.merges. */
#ifndef LLM_TOKENIZER_JSON_H
#define LLM_TOKENIZER_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_str {
    const char *s; /* NUL-terminated, in the lists' arena (or in cJSON strings) */
    uint32_t n;
} tok_str;

typedef struct tok_lists {
    int ok;
    char *arena;
    tok_str *vocab;
    int32_t *vocab_id;
    size_t n_vocab;
    tok_str *merge_a, *merge_b;
    size_t n_merges;
} tok_lists;

/* Decodes model.vocab and model.merges of the tokenizer.json text into L and blanks them in
 * text (replaced by {} / [] and spaces, same length), so that cJSON parses only the rest.
 * Returns 1 on success; 0 when the text is not laid out as expected (L empty, text untouched:
 * parse it whole with cJSON, which reports any error); -1 when out of memory. */
int tokjson_extract(char *text, size_t n, tok_lists *L);
void tok_lists_free(tok_lists *L);

#endif // LLM_TOKENIZER_JSON_H
