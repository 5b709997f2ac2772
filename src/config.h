/* config — every setting of metricastd, from one table.
 *
 * The option table (config_options()) is the single source of truth: the INI parser, the
 * METRICAST_* environment, the command-line flags, --help and the generated reference
 * all read it. Precedence: defaults < config file < environment < flags.
 *
 * Errors are returned as one line of text naming the setting and where it came from;
 * main() prints it and exits 2. Nothing here prints or exits. */
#ifndef MC_CONFIG_H
#define MC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_ERR_LEN 512

typedef struct cfg_addr {
    char host[64]; /* numeric IPv4 or IPv6 address */
    int port;      /* 0 = let the kernel choose (useful for tests) */
    bool off;      /* only for settings that accept "off" */
} cfg_addr_t;

/* A [kind.name] section of the config file that the option table does not describe:
 * alert rules ([alert.cpu_hot]) and tokens ([token.dashboard]). The INI loader collects
 * them verbatim, in file order, and checks only that the kind is known and that no key
 * repeats; their owners (alert rules, auth) validate the keys and values and report
 * errors naming the file and section. */
typedef struct cfg_kv {
    char *key, *value; /* owned */
} cfg_kv_t;

typedef struct cfg_section {
    char kind[16];   /* "alert", "token" */
    char name[128];  /* the part after the dot */
    char file[1024]; /* the file it came from */
    cfg_kv_t *kv;    /* owned array, in file order */
    size_t nkv;
} cfg_section_t;

typedef struct config {
    char config_file[1024];
    cfg_section_t *sections; /* owned (config_free); named sections, in file order */
    size_t nsections;
    cfg_addr_t listen;
    cfg_addr_t statsd;
    char data_dir[1024];
    double tick;            /* seconds */
    double aggregate_every; /* seconds */
    bool demo;
    char nats_url[512];
    char hub_id[65];          /* "": derived from the host name and port (hub_open) */
    char nats_prefix[128];    /* subject prefix of every bridged message */
    double nats_hub_timeout;  /* a hub silent this long is gone: its sources go offline */
    size_t nats_reconnect_buffer; /* bytes published while NATS is away, kept to resend */
    int threads; /* I/O loop threads; 0 = one per core */
    bool pin_threads; /* bind each I/O loop thread to one allowed CPU */
    int log_level;
    size_t http_max_header_bytes;
    size_t http_max_body_bytes;
    double http_header_timeout;
    double http_idle_timeout;
    size_t ws_max_message_bytes;
    double ws_ping_interval;
    double ws_idle_timeout;
    double health_max_loop_lag;
    double health_interval;
    int statsd_threads;
    size_t statsd_rcvbuf;
    double statsd_flush_interval;
    int max_series;
    int history_points;
    uint32_t ws_queue_messages;
    size_t ws_queue_bytes;
    double ws_overload_timeout;
    int ws_max_subscriptions;
    uint32_t events_retain;
    uint32_t src_queue_messages;
    size_t src_queue_bytes;
    int debug_session_metrics_fail_every;
    bool reset_store;
    double raw_retention, r60_retention, r3600_retention;
    uint32_t events_keep;
    double trend_deadband;
    double health_max_drop_ratio;
    bool health_critical_alerts;
    double report_interval; /* seconds; 0 = off */
    uint32_t alerts_history;
    double webhook_timeout;
    int webhook_retries;
    double webhook_backoff, webhook_backoff_max;
    uint32_t webhook_queue;
    /* access and limits (docs/SECURITY.md) */
    char allowed_origins[1024];
    int max_connections;        /* 0: the descriptor limit minus a reserve */
    int max_connections_per_ip; /* 0: no limit */
    int max_connection_rate_per_ip; /* new connections per second per IP; 0: no limit */
    int max_sources;
    char statsd_allow[1024];
    char tls_cert[1024]; /* empty: plain HTTP */
    char tls_key[1024];
    bool host_metrics;
    char host_proc[1024];
    char host_sys[1024];
    char debug_host_statfs_stall[1024];
} config_t;

typedef enum {
    CFG_T_ADDR,     /* host:port */
    CFG_T_ADDR_OFF, /* host:port or "off" */
    CFG_T_PATH,
    CFG_T_NATS_URL,
    CFG_T_SECONDS, /* "1.5", "500ms", "10s", "2m", "1h" */
    CFG_T_SIZE,    /* "4096", "64k", "4m", "1g" (binary multiples) */
    CFG_T_INT,
    CFG_T_BOOL,
    CFG_T_LOG_LEVEL,
    CFG_T_U32,
    CFG_T_RATIO, /* a fraction: "0.05" or "5%" */
    CFG_T_FILE,    /* a path that may be left empty (an optional file) */
    CFG_T_ORIGINS, /* comma-separated scheme://host[:port] origins, or "*" */
    CFG_T_NETS,    /* comma-separated networks: 10.0.0.0/8, ::1, ... */
    CFG_T_HUB_ID,  /* 1..64 of [A-Za-z0-9_-], or empty (derived) */
    CFG_T_SUBJECT, /* a NATS subject prefix: tokens of [A-Za-z0-9_-] separated by '.' */
} cfg_type_t;

typedef struct cfg_opt {
    const char *section; /* INI section */
    const char *key;     /* INI key */
    const char *flag;    /* command-line flag without "--"; env is METRICAST_<FLAG> */
    const char *metavar;
    cfg_type_t type;
    size_t offset; /* into config_t */
    const char *def;
    double min, max; /* numeric range, inclusive (ignored when min == max) */
    const char *help;
} cfg_opt_t;

typedef enum { CFG_RUN = 0, CFG_HELP, CFG_VERSION } cfg_action_t;

/* The option table, in --help order. */
const cfg_opt_t *config_options(size_t *n);

/* Fills c with every option's default and no named sections. Never fails (the defaults
 * are valid). c must not hold sections yet (config_free first when reusing one). */
void config_defaults(config_t *c);
/* Frees c's named sections; c's options stay as they are. */
void config_free(config_t *c);

/* The kinds of named sections the loader accepts ("alert", "token"), NULL-terminated. */
const char *const *config_section_kinds(void);
/* The value of key in s, or NULL. */
const char *config_section_get(const cfg_section_t *s, const char *key);
/* True for a key whose value must never be printed (see config_is_secret). */
bool config_key_is_secret(const char *key);

/* Loads defaults, then the file (--config or METRICAST_CONFIG), then env (a NULL-terminated
 * "K=V" array, usually environ), then argv. 0 and *action, or -EINVAL with err filled. */
int config_load(config_t *c, int argc, char **argv, char *const *env, cfg_action_t *action,
                char err[CFG_ERR_LEN]);

/* Applies one INI file. 0, or -EINVAL / -ENOENT with err filled. A line longer than the
 * INI reader's buffer (199 bytes; comments excepted) is an error naming it. */
int config_load_file(config_t *c, const char *path, char err[CFG_ERR_LEN]);
/* The same for an INI text held in memory (len bytes, borrowed; need not end in NUL),
 * named `name` in errors and in the sections it adds (as a file's path is): fuzzing and
 * tests. 0, -EINVAL or -ENOMEM with err filled. */
int config_load_text(config_t *c, const char *text, size_t len, const char *name,
                     char err[CFG_ERR_LEN]);

/* Sets one option from text; origin ("--tick", "file x line 3") prefixes the error. */
int config_set(config_t *c, const cfg_opt_t *o, const char *value, const char *origin,
               char err[CFG_ERR_LEN]);

/* Writes --help text (generated from the table) into a malloc'd string; caller frees. */
char *config_usage(const char *prog);

/* Value parsers, exported for tests and for other modules' settings (alert `for`). */
int config_parse_seconds(const char *s, double *out);
int config_parse_size(const char *s, size_t *out);
int config_parse_addr(const char *s, cfg_addr_t *out); /* also accepts "[::1]:port" */
int config_parse_bool(const char *s, bool *out);
/* Formats an address as host:port ([v6]:port); out ≥ 80 bytes. */
const char *config_addr_str(const cfg_addr_t *a, char *out, size_t outlen);

/* ---- effective configuration (--check-config, reload diffs, generated docs) ---------- */

/* True for options whose value must never be printed: the key or flag contains "secret",
 * "token", "password", "passwd" or "credential". New secret options need no other change. */
bool config_is_secret(const cfg_opt_t *o);
/* Writes o's current value in c as text config_set() accepts back ("500ms", "64k",
 * "127.0.0.1:9750", "true"). With mask, secret options print as "********" (when set) and
 * a URL's user:password@ part as "***@". Returns out. */
const char *config_value_str(const config_t *c, const cfg_opt_t *o, bool mask, char *out,
                             size_t outlen);
/* The whole effective configuration as an INI file that --config loads back: every option,
 * grouped by section in table order, secrets masked. malloc'd; caller frees. */
char *config_dump_ini(const config_t *c);

#endif
