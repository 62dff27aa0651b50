/* A four-page PDF for the PDF renderer's bounds (tests only; small synthetic input, not a golden):
 *   page 1, 4: filled shapes (ordinary pages; page 1 has a red rectangle, page 4 a green triangle)
 *   page 2:    an image XObject declared 30000 x 30000 with 96 bytes of data (Poppler allocates it
 *              whole: 3.5 GB resident unbounded, 7.8 s here)
 *   page 3:    4000 strokes with a 0.01 pt dash (cairo takes tens of seconds; 400 took 1.5-7 s on
 *              this 2-core VM, too close to the 2 s bounds the tests set)
 * Each rendering to a long side of a few hundred pixels. */
#ifndef TESTS_MEDIA_HOSTILE_PDF_H
#define TESTS_MEDIA_HOSTILE_PDF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends a PDF object; offsets[i] records where object i + 1 starts. */
static void obj(FILE *f, long *offsets, int i, const char *head, const char *stream, size_t n) {
    offsets[i] = ftell(f);
    fprintf(f, "%d 0 obj\n%s", i + 1, head);
    if (stream) {
        fprintf(f, "\nstream\n");
        fwrite(stream, 1, n, f);
        fprintf(f, "\nendstream");
    }
    fprintf(f, "\nendobj\n");
}

static void page_obj(FILE *f, long *off, int i, int contents, const char *res) {
    char h[256];
    snprintf(h, sizeof h, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << %s >> /Contents %d 0 R >>",
             res, contents);
    obj(f, off, i, h, NULL, 0);
}

static void stream_obj(FILE *f, long *off, int i, const char *dict_extra, const char *data, size_t n) {
    char h[256];
    snprintf(h, sizeof h, "<< /Length %zu %s>>", n, dict_extra);
    obj(f, off, i, h, data, n);
}

/* The xref table of the n objects at offsets off and the trailer (object 1 the catalog); closes f.
 * 1 when written. */
static inline int pdf_finish(FILE *f, const long *off, int n) {
    const long x = ftell(f);
    fprintf(f, "xref\n0 %d\n0000000000 65535 f \n", n + 1);
    for (int i = 0; i < n; i++) fprintf(f, "%010ld 00000 n \n", off[i]);
    fprintf(f, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", n + 1, x);
    return fclose(f) == 0;
}

/* A new PDF at path with its header and catalog (object 1, its pages object 2); NULL if it cannot
 * be made. */
static inline FILE *pdf_start(const char *path, long *off) {
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fprintf(f, "%%PDF-1.4\n");
    obj(f, off, 0, "<< /Type /Catalog /Pages 2 0 R >>", NULL, 0);
    return f;
}

static int hostile_pdf_write(const char *path) {
    long off[12];
    FILE *f = pdf_start(path, off);
    if (!f) return 0;
    obj(f, off, 1, "<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R 6 0 R] /Count 4 >>", NULL, 0);
    page_obj(f, off, 2, 7, "");
    page_obj(f, off, 3, 8, "/XObject << /Im0 11 0 R >>");
    page_obj(f, off, 4, 9, "");
    page_obj(f, off, 5, 10, "");
    const char *p1 = "1 0 0 rg 72 72 200 300 re f 0 0 1 RG 4 w 300 400 m 540 700 l S";
    stream_obj(f, off, 6, "", p1, strlen(p1));
    const char *p2 = "q 612 0 0 792 0 0 cm /Im0 Do Q";
    stream_obj(f, off, 7, "", p2, strlen(p2));
    const char *line = "[0.01] 0 d 1 w 0 0 m 612 792 l 612 0 l 0 792 l S\n";
    const size_t ll = strlen(line);
    char *p3 = malloc(4000 * ll + 1);
    if (!p3) return fclose(f), 0;
    for (int k = 0; k < 4000; k++) memcpy(p3 + (size_t)k * ll, line, ll);
    stream_obj(f, off, 8, "", p3, 4000 * ll);
    free(p3);
    const char *p4 = "0 0.6 0 rg 100 500 m 500 500 l 300 150 l h f";
    stream_obj(f, off, 9, "", p4, strlen(p4));
    static const char img[96] = {0};
    stream_obj(f, off, 10, "/Type /XObject /Subtype /Image /Width 30000 /Height 30000 /ColorSpace /DeviceRGB "
                           "/BitsPerComponent 8 ", img, sizeof img);
    return pdf_finish(f, off, 11);
}

/* Two pages past cairo's 32767-pixel side at 72 dpi (1 pt = 1 pixel), each with three fills at
 * whole points, so every pixel's colour follows from the page's geometry: page 1 is 40 x 36000 pt
 * (blue rows 0-9, red rows 32760-32774 across the 32767 boundary, green rows 35990-35999, the
 * rest white); page 2 is 36000 x 40 pt with the same in columns. (pdftoppm -r 72 renders both so.) */
static inline int long_pages_pdf_write(const char *path) {
    long off[6];
    FILE *f = pdf_start(path, off);
    if (!f) return 0;
    obj(f, off, 1, "<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>", NULL, 0);
    obj(f, off, 2, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 40 36000] /Contents 5 0 R >>", NULL, 0);
    obj(f, off, 3, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 36000 40] /Contents 6 0 R >>", NULL, 0);
    const char *tall = "0 0 1 rg 0 35990 40 10 re f 1 0 0 rg 0 3225 40 15 re f 0 1 0 rg 0 0 40 10 re f";
    stream_obj(f, off, 4, "", tall, strlen(tall));
    const char *wide = "0 0 1 rg 0 0 10 40 re f 1 0 0 rg 32760 0 15 40 re f 0 1 0 rg 35990 0 10 40 re f";
    stream_obj(f, off, 5, "", wide, strlen(wide));
    return pdf_finish(f, off, 6);
}

#endif // TESTS_MEDIA_HOSTILE_PDF_H
