/* api/: what users touch: the engine, the Unix-socket server and the CLI.
 *
 * So far: checkpoint inspection (`nanovl inspect`) and the engine behind `nanovl ask`.
 *
 *   int usable = 0;
 *   st = api_inspect("ckpt/", stdout, &usable, &err);
 */
#ifndef API_API_H
#define API_API_H

#include <stdio.h>

#include "base/status.h"
#include "llm.h"

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

// ---------------------------------------------------------------------------
// The engine: a whole VL checkpoint answering a question about files.
//
//   api_engine *e = NULL;
//   st = api_engine_open(&e, "NVIDIA-Nemotron-Nano-12B-v2-VL-BF16/", &err);
//   api_ask_params p = api_ask_params_default();
//   st = api_engine_ask(e, files, n_files, "What is the total?", &p, on_token, user, &res, &err);
//   api_ask_result_free(&res); api_engine_close(e);
//
// Pipeline: media (images; PDF pages as images; video frames) -> tiles -> RADIO -> pixel
// shuffle -> mlp1 (-> EVS for videos) -> Nano V2 chat prompt with <img><image>...</img> spans ->
// prefill with the vision rows at the <image> positions -> generation.

typedef struct api_engine api_engine;

typedef struct api_ask_params {
    int max_tiles;      /* per image, 1..12 (default: the checkpoint's max_num_tiles) */
    const char *pages;  /* PDF page range "1-3,7" (NULL: all, within media limits) */
    double dpi;         /* PDF render DPI (0: long side) */
    int long_side;      /* PDF render long side in px (0: MEDIA_PDF_DEFAULT_LONG_SIDE) */
    double fps;         /* video sampling rate (default 2) */
    int max_frames;     /* default 128 */
    double evs;         /* video pruning rate q; < 0: the checkpoint's video_pruning_rate */
    int think;          /* -1: from the message (default on); 0 off; 1 on */
    int64_t max_tokens; /* default 1024 */
    llm_sampler_params sampler;
} api_ask_params;
api_ask_params api_ask_params_default(void);

typedef struct api_ask_result {
    int32_t *prompt_ids; int64_t n_prompt;   /* the prompt as fed (media expanded) */
    int32_t *ids; int64_t n_ids;             /* generated tokens */
    float *first_logits;                     /* (n_vocab) logits after the prompt */
    int64_t n_image_tokens;                  /* <image> positions filled with vision rows */
    double t_media, t_vision, t_prefill, t_generate; /* seconds per stage */
} api_ask_result;
void api_ask_result_free(api_ask_result *r);

nvl_status api_engine_open(api_engine **out, const char *dir, nvl_err *err);
void api_engine_close(api_engine *e);
int64_t api_engine_n_vocab(const api_engine *e);
/* on_token (may be NULL) gets every generated token; return non-zero to stop. */
nvl_status api_engine_ask(api_engine *e, const char *const *files, int n_files, const char *question,
                          const api_ask_params *p, llm_token_fn on_token, void *user, api_ask_result *res,
                          nvl_err *err);
/* The engine's tokenizer (valid while e lives), for streaming decode. */
const struct llm_tokenizer *api_engine_tokenizer(const api_engine *e);

#ifdef __cplusplus
}
#endif

#endif // API_API_H
