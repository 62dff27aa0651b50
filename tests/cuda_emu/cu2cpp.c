/* Rewrites a CUDA source for the CUDA emulator (tests/cuda_emu/include/cuda_emu.h): every kernel
 * launch `k<<<grid, block, smem, stream>>>(args);` becomes
 * `emu::launch(grid, block, smem, stream, k, args);` (keeping the launch's line count, so that
 * diagnostics name the .cu's lines), and `extern __shared__ T name[];` becomes a pointer to the
 * launch's dynamic shared memory. The result is C++ the host compiler builds against
 * tests/cuda_emu/include. A build tool (C, so that CI needs no Python).
 *
 *   cu2cpp IN.cu OUT.cpp
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[len] = 0, *n = (size_t)len;
    return s;
}

static int ident(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* The launch configuration's four fields (missing ones "0"), split at top-level commas. */
static void emit_cfg(FILE *o, const char *a, const char *b) {
    int fields = 0, depth = 0;
    const char *f0 = a;
    for (const char *p = a; p <= b; p++) {
        if (p < b && strchr("([{", *p)) depth++;
        if (p < b && strchr(")]}", *p)) depth--;
        if (p == b || (*p == ',' && depth == 0)) {
            for (const char *q = f0; q < p; q++) fputc(*q == '\n' ? ' ' : *q, o);
            fputs(", ", o);
            fields++;
            f0 = p + 1;
        }
    }
    for (; fields < 4; fields++) fputs("0, ", o);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cu2cpp IN.cu OUT.cpp\n");
        return 2;
    }
    size_t n = 0;
    char *s = slurp(argv[1], &n);
    if (!s) {
        fprintf(stderr, "cu2cpp: cannot read %s\n", argv[1]);
        return 1;
    }
    FILE *o = fopen(argv[2], "wb");
    if (!o) {
        fprintf(stderr, "cu2cpp: cannot write %s\n", argv[2]);
        return 1;
    }
    fprintf(o, "#line 1 \"%s\"\n", argv[1]);
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *l = strstr(p, "<<<");
        const char *sh = strstr(p, "extern __shared__");
        if (sh && (!l || sh < l)) { /* extern __shared__ T name[]; -> T *name = (T *)emu::dyn_smem(); */
            const char *semi = strchr(sh, ';'), *br = strchr(sh, '[');
            if (!semi || !br || br > semi) {
                fprintf(stderr, "cu2cpp: %s: an extern __shared__ declaration it does not understand\n", argv[1]);
                return 1;
            }
            fwrite(p, 1, (size_t)(sh - p), o);
            const char *t0 = sh + strlen("extern __shared__"), *nm = br;
            while (nm > t0 && isspace((unsigned char)nm[-1])) nm--;
            const char *ne = nm;
            while (nm > t0 && ident(nm[-1])) nm--;
            while (t0 < nm && isspace((unsigned char)*t0)) t0++;
            const char *te = nm;
            while (te > t0 && isspace((unsigned char)te[-1])) te--;
            fprintf(o, "%.*s *%.*s = (%.*s *)emu::dyn_smem();", (int)(te - t0), t0, (int)(ne - nm), nm, (int)(te - t0), t0);
            p = semi + 1;
            continue;
        }
        if (!l) {
            fwrite(p, 1, (size_t)(end - p), o);
            break;
        }
        /* the kernel's name before <<< (with template arguments, if any) */
        const char *k = l;
        while (k > p && isspace((unsigned char)k[-1])) k--;
        if (k > p && k[-1] == '>') { /* k<T><<<: back over the template arguments */
            int d = 0;
            do {
                k--;
                if (*k == '>') d++;
                if (*k == '<') d--;
            } while (k > p && d > 0);
        }
        while (k > p && ident(k[-1])) k--;
        const char *kname_end = l;
        while (kname_end > k && isspace((unsigned char)kname_end[-1])) kname_end--;
        const char *ce = strstr(l + 3, ">>>");
        const char *ap = ce ? strchr(ce, '(') : NULL;
        if (!ce || !ap) {
            fprintf(stderr, "cu2cpp: %s: a launch without >>>(...)\n", argv[1]);
            return 1;
        }
        int d = 0;
        const char *q = ap;
        for (; q < end; q++) {
            if (*q == '(') d++;
            if (*q == ')' && --d == 0) break;
        }
        if (q >= end) {
            fprintf(stderr, "cu2cpp: %s: unbalanced launch arguments\n", argv[1]);
            return 1;
        }
        fwrite(p, 1, (size_t)(k - p), o);
        fputs("emu::launch(", o);
        emit_cfg(o, l + 3, ce);
        fprintf(o, "%.*s", (int)(kname_end - k), k);
        const char *a0 = ap + 1;
        while (a0 < q && isspace((unsigned char)*a0)) a0++;
        if (a0 < q) {
            fputs(", ", o);
            for (const char *c = a0; c < q; c++) fputc(*c == '\n' ? ' ' : *c, o);
        }
        fputc(')', o);
        int lines = 0; /* the launch's line count kept */
        for (const char *c = k; c <= q; c++) lines += *c == '\n';
        while (lines-- > 0) fputc('\n', o);
        p = q + 1;
    }
    fclose(o);
    free(s);
    return 0;
}
