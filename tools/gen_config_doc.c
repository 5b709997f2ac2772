/* gen_config_doc TEMPLATE OUTDIR — writes OUTDIR/CONFIG.md, OUTDIR/metricastd.8 (from the
 * man page TEMPLATE, man/metricastd.8.in) and OUTDIR/metricastd.conf from the option
 * table. Run by the build; `make config-doc` copies the results over the committed
 * docs/CONFIG.md, man/metricastd.8 and examples/metricastd.conf. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_doc.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *t = realloc(s, cap *= 2);
            if (!t) free(s);
            s = t;
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

static int emit(const char *dir, const char *name, char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!text) {
        fprintf(stderr, "gen_config_doc: %s: out of memory\n", path);
        return 1;
    }
    FILE *f = fopen(path, "wb");
    int bad = !f || fputs(text, f) < 0;
    if (f && fclose(f) != 0) bad = 1;
    if (bad) perror(path);
    free(text);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: gen_config_doc MAN_TEMPLATE OUTDIR\n");
        return 2;
    }
    char *tmpl = slurp(argv[1]);
    if (!tmpl) {
        perror(argv[1]);
        return 1;
    }
    int bad = emit(argv[2], "CONFIG.md", config_doc_markdown());
    bad |= emit(argv[2], "metricastd.8", config_doc_man(tmpl));
    bad |= emit(argv[2], "metricastd.conf", config_doc_example());
    free(tmpl);
    return bad;
}
