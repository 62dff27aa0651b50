/* api/: what users touch: the engine, the Unix-socket server and the CLI.
 *
 * So far: checkpoint inspection, shared by `nanovl inspect` and the tests.
 *
 *   int usable = 0;
 *   st = api_inspect("ckpt/", stdout, &usable, &err);
 */
#ifndef API_API_H
#define API_API_H

#include <stdio.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a human-readable summary of the checkpoint at path (a directory or a .safetensors /
 * index file) to out: architecture, layer pattern, sizes, tensor count, bytes by dtype,
 * quantization, and every problem found. *usable is 1 when the language model (and the vision
 * tower, when the config declares one) can be loaded.
 * @return NVL_OK when the summary could be made (even if it lists problems); otherwise the
 * error that stopped it (unreadable directory, damaged safetensors, invalid config.json). */
nvl_status api_inspect(const char *path, FILE *out, int *usable, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // API_API_H
