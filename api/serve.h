/* `nanovl serve`: the Unix-socket JSON API (protocol in docs/api.md). Internal to api/. */
#ifndef API_SERVE_H
#define API_SERVE_H

#include <stddef.h>

#include "api.h"

typedef struct api_server_opts {
    const char *socket_path;
    int socket_mode;            /* permissions of the socket file (default 0600) */
    size_t max_request_bytes;   /* one request line (default 64 MiB: inline media) */
    int max_queue;              /* requests waiting, all clients (default 64) */
    int max_per_client;         /* queued + running per connection (default 4) */
    double rate_per_min;        /* requests per minute per connection (default 600; 0 = no limit) */
    size_t max_pending_output;  /* unread event bytes before a client is dropped (default 16 MiB) */
    int max_clients;            /* connections (default 64) */
    double idle_timeout_s;      /* a connection idle (nothing queued, running or unsent) or in the
                                 * middle of a line for this long is closed (default 300; 0 never) */
    int max_batch;              /* requests running together in the engine (default 16; the engine
                                 * must be opened with at least as many slots) */
    const char *model_name;     /* reported by "status" */
    const char *const *allow;   /* directories media paths must lie in (after realpath); NULL: any */
    int n_allow;
    int quiet;                  /* no request log on stderr */
    void (*on_ready)(const char *socket_path, void *user); /* listening */
    void *user;
} api_server_opts;
api_server_opts api_server_opts_default(void);

/* Serves until SIGTERM/SIGINT (then drains). @return NVL_OK after a clean shutdown;
 * NVL_ERR_BUSY when a live server holds the path or it is not a socket; NVL_ERR_IO. */
nvl_status api_serve(api_engine *e, const api_server_opts *o, nvl_err *err);

#endif // API_SERVE_H
