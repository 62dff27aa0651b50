/* Internal header: included only by api/cmd_*.c. Small helpers shared by the subcommands. */
#ifndef API_CLI_UTIL_H
#define API_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads all of stdin into an nvl_malloc'ed NUL-terminated buffer (*len bytes). NULL on OOM. */
char *cli_read_stdin(size_t *len);
/* Parses "1 2, 3" (spaces, commas, newlines) into an nvl_malloc'ed array. 0 on a bad token. */
int cli_parse_ids(const char *s, int32_t **ids, int64_t *n);

#endif // API_CLI_UTIL_H
