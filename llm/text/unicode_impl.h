/* Internal header: included only by llm/ sources. UTF-8 primitives shared by the tokenizer. */
#ifndef LLM_UNICODE_IMPL_H
#define LLM_UNICODE_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* Valid sequence at s: returns its length (1..4) and the code point; invalid: returns 0 and
 * *bad = length of the maximal invalid subpart (>= 1). n = bytes available. */
int nvl_utf8_next(const unsigned char *s, size_t n, uint32_t *cp, int *bad);
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the length. */
int nvl_utf8_put(uint32_t cp, char *out);

#endif // LLM_UNICODE_IMPL_H
