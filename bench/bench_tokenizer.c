/* bench_tokenizer: load time of a tokenizer.json and encode throughput on 1 MiB of mixed text.
 *
 *   bench_tokenizer TOKENIZER.json [TEXT_FILE]
 *
 * Without TEXT_FILE the text is mixed prose generated
 * here deterministically (English, code, numbers, CJK, emoji), repeated to 1 MiB. Reports the
 * median of 3 runs each. Excluded: nothing (load includes reading and parsing the file). */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/mapped_file.h"
#include "tokenizer.h"



int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER.json [TEXT_FILE]\n");
        return 2;
    }
    nvl_err err = {0};
    char *text = NULL;
    size_t len = 0;
    const size_t target = (size_t)1 << 20;
    if (argc > 2) {
        if (nvl_read_file(argv[2], (size_t)1 << 30, &text, &len, &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
    } else {
        static const char *parts[] = {
            "The quick brown fox jumps over the lazy dog. What is the total? It is $1,234.56 (2026-11-22).\n",
            "def forward(self, x):\n    return self.proj(torch.relu(x) ** 2)  # squared ReLU\n\n",
            "中文测试：这是一个句子。日本語のテキスト。한국어 텍스트입니다. ",
            "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 naïve café résumé Ångström\n",
            "   whitespace   runs\t\tand\n\n\nnewlines  1234567890 3.14159\n"};
        text = nvl_malloc(target + 256);
        while (len < target)
            for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
                size_t l = strlen(parts[i]);
                memcpy(text + len, parts[i], l);
                len += l;
            }
    }
    double tl[3], te[3];
    int64_t n_ids = 0;
    for (int r = 0; r < 3; r++) {
        llm_tokenizer *t = NULL;
        double a = nvl_now();
        if (llm_tokenizer_load(&t, argv[1], &err) != NVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        tl[r] = nvl_now() - a;
        int32_t *ids = NULL;
        a = nvl_now();
        llm_tokenizer_encode(t, text, len, &ids, &n_ids, &err);
        te[r] = nvl_now() - a;
        nvl_free(ids);
        llm_tokenizer_free(t);
    }
    qsort(tl, 3, sizeof *tl, bench_cmp_double);
    qsort(te, 3, sizeof *te, bench_cmp_double);
    printf("| %s | %.3f s | %.2f MiB | %.3f s | %.1f MiB/s | %lld tokens |\n", argv[1], tl[1],
           (double)len / (1 << 20), te[1], (double)len / (1 << 20) / te[1], (long long)n_ids);
    nvl_free(text);
    return 0;
}
