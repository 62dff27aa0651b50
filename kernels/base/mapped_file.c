/* mmap-based read-only file mapping with a read() fallback. */
#include "mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

struct nvl_mapped_file {
    uint8_t *data;
    size_t size;
    int mapped; /* 1: munmap on close; 0: nvl_free */
    char *path;
};

static nvl_status open_error(nvl_err *err, const char *what, const char *path, int e) {
    return nvl_err_set(err, e == ENOENT ? NVL_ERR_NOT_FOUND : NVL_ERR_IO, "%s '%s': %s", what,
                       path, strerror(e));
}

/* Reads fd to EOF into a growing buffer (for files that cannot be mapped). */
static nvl_status read_all(int fd, uint8_t **out, size_t *len, size_t max_bytes, const char *path,
                           nvl_err *err) {
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = nvl_malloc(cap + 1);
    if (!buf) return nvl_err_set(err, NVL_ERR_NOMEM, "reading '%s': out of memory", path);
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                nvl_free(buf);
                return nvl_err_set(err, NVL_ERR_LIMIT, "'%s' is larger than the limit of %zu bytes",
                                   path, max_bytes);
            }
            size_t ncap = cap * 2;
            uint8_t *nb = nvl_realloc(buf, ncap + 1);
            if (!nb) {
                nvl_free(buf);
                return nvl_err_set(err, NVL_ERR_NOMEM, "reading '%s': out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            nvl_free(buf);
            return nvl_err_set(err, NVL_ERR_IO, "reading '%s': %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n > max_bytes) {
        nvl_free(buf);
        return nvl_err_set(err, NVL_ERR_LIMIT, "'%s' is larger than the limit of %zu bytes", path,
                           max_bytes);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return NVL_OK;
}

nvl_status nvl_mapped_file_open(nvl_mapped_file **out, const char *path, nvl_err *err) {
    *out = NULL;
    /* O_NONBLOCK: a FIFO is refused below, not waited on (a checkpoint's model.safetensors that
       was a FIFO hung generate; one linked to /dev/zero was read until memory ran out: a review) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return open_error(err, "cannot open", path, errno);
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        int e = errno;
        close(fd);
        return open_error(err, "cannot stat", path, e);
    }
    if (!S_ISREG(stt.st_mode)) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_IO, "'%s' is a %s, expected a regular file", path,
                           S_ISDIR(stt.st_mode) ? "directory" : S_ISFIFO(stt.st_mode) ? "FIFO"
                           : S_ISCHR(stt.st_mode) ? "character device" : S_ISSOCK(stt.st_mode) ? "socket"
                           : S_ISBLK(stt.st_mode) ? "block device" : "special file");
    }
    nvl_mapped_file *f = nvl_calloc(1, sizeof *f);
    char *p = nvl_strdup(path);
    if (!f || !p) {
        nvl_free(f);
        nvl_free(p);
        close(fd);
        return nvl_err_set(err, NVL_ERR_NOMEM, "mapping '%s': out of memory", path);
    }
    f->path = p;
    nvl_status st = NVL_OK;
    f->size = (size_t)stt.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            f->data = m;
            f->mapped = 1;
        } else {
            const int fl = fcntl(fd, F_GETFL);
            if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            st = read_all(fd, &f->data, &f->size, f->size + 1, path, err); /* (+1: read_all stops at a full buffer of max_bytes) */
        }
    }
    close(fd);
    if (st != NVL_OK) {
        nvl_mapped_file_close(f);
        return st;
    }
    *out = f;
    return NVL_OK;
}

void nvl_mapped_file_close(nvl_mapped_file *f) {
    if (!f) return;
    if (f->mapped)
        munmap(f->data, f->size);
    else
        nvl_free(f->data);
    nvl_free(f->path);
    nvl_free(f);
}

const uint8_t *nvl_mapped_file_data(const nvl_mapped_file *f) { return f->data; }
size_t nvl_mapped_file_size(const nvl_mapped_file *f) { return f->size; }
const char *nvl_mapped_file_path(const nvl_mapped_file *f) { return f->path; }

nvl_status nvl_read_file(const char *path, size_t max_bytes, char **out, size_t *len, nvl_err *err) {
    *out = NULL;
    if (len) *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading blocks until a writer comes (a config.json that is
       a FIFO hung every command); it is refused below, and cleared for anything else */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return open_error(err, "cannot open", path, errno);
    struct stat stt;
    const int have = fstat(fd, &stt) == 0;
    if (have && (S_ISDIR(stt.st_mode) || S_ISFIFO(stt.st_mode) || S_ISSOCK(stt.st_mode))) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_IO, "'%s' is a %s, expected a file", path,
                           S_ISDIR(stt.st_mode) ? "directory" : S_ISFIFO(stt.st_mode) ? "FIFO" : "socket");
    }
    const int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (have && S_ISREG(stt.st_mode) && (uint64_t)stt.st_size > max_bytes) {
        close(fd);
        return nvl_err_set(err, NVL_ERR_LIMIT, "'%s' has %lld bytes, above the limit of %zu", path,
                           (long long)stt.st_size, max_bytes);
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    nvl_status st = read_all(fd, &buf, &n, max_bytes, path, err);
    close(fd);
    if (st != NVL_OK) return st;
    *out = (char *)buf;
    if (len) *len = n;
    return NVL_OK;
}
