/* config_doc — reference documents rendered from the option table (config_options()).
 *
 * Used by tools/gen_config_doc.c (the build writes build/CONFIG.md, build/metricastd.8,
 * build/metricastd.conf) and by tests/unit/test_config_doc.c, which fails when the
 * committed docs/CONFIG.md, man/metricastd.8 or examples/metricastd.conf differ from what
 * this renders now. Refresh them with `make config-doc`. Every function returns a malloc'd
 * string (NULL on allocation failure); the caller frees. */
#ifndef MC_CONFIG_DOC_H
#define MC_CONFIG_DOC_H

/* docs/CONFIG.md */
char *config_doc_markdown(void);
/* man/metricastd.8: the template with the line "@OPTIONS@" replaced by one .TP entry per
 * option and "@VERSION@" by the project version. */
char *config_doc_man(const char *tmpl);
/* examples/metricastd.conf: every section and key, commented, loadable as is. */
char *config_doc_example(void);

#endif
