/* metricastd — entry point: configuration, start-up checks, then the hub until a signal.
 *
 * Exit status: 0 after SIGINT/SIGTERM; 2 for a bad setting or an unusable port or
 * directory, with one line on stderr that names the setting.
 *
 * `--check-config FILE` loads FILE like --config (then the environment and flags), prints
 * the effective configuration as INI on stdout and exits 0, or 2 with the one-line error.
 *
 * Under systemd (Type=notify) the hub reports READY=1 once it listens and STOPPING=1 when
 * a stop signal arrives (src/notify.c). SIGHUP re-reads the configuration: alert rules and
 * the access policy (tokens, allowed origins) are applied in place (reload_steps below);
 * every other setting that changed is logged as needing a restart. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "alert.h"
#include "auth.h"
#include "config.h"
#include "demo.h"
#include "health.h"
#include "hub.h"
#include "log.h"
#include "notify.h"
#include "tls.h"
#include "version.h"

extern char **environ;

/* METRICAST_* names that are not daemon settings but belong to the clients. */
static const char *const client_env[] = {"METRICAST_CONFIG", "METRICAST_URL", "METRICAST_TOKEN"};

static void warn_unknown_env(void) {
    size_t n;
    const cfg_opt_t *o = config_options(&n);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "METRICAST_", 10) != 0) continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        bool known = false;
        for (size_t i = 0; i < sizeof client_env / sizeof *client_env && !known; i++)
            known = strlen(client_env[i]) == len && strncmp(*e, client_env[i], len) == 0;
        for (size_t i = 0; i < n && !known; i++) {
            char name[96] = "METRICAST_";
            size_t k = 10;
            for (const char *p = o[i].flag; *p && k + 1 < sizeof name; p++)
                name[k++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            name[k] = '\0';
            known = k == len && strncmp(*e, name, len) == 0;
        }
        if (!known) log_warn("unknown environment variable ignored", "name=%.*s", (int)len, *e);
    }
}

/* Lifts the soft descriptor limit to the hard one: every connection is a descriptor.
 * Returns the limit now in force. */
static unsigned long long raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (unsigned long long)rl.rlim_cur;
}

/* ---- --check-config ------------------------------------------------------------------ */

#define CHECK_HELP                                                                          \
    "  --check-config FILE                validate FILE (then environment and flags), print\n" \
    "                                     the effective configuration as INI, exit 0 or 2\n"

/* Rewrites "--check-config FILE" / "--check-config=FILE" into a trailing "--config FILE"
 * (so the checked file wins over any other --config). *check is set when found.
 * Returns the new argc, or -1 with err filled. out has room for argc + 2 entries. */
static int take_check_config(int argc, char **argv, char **out, bool *check,
                             char err[CFG_ERR_LEN]) {
    int n = 0;
    char *file = NULL;
    *check = false;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--check-config") == 0) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
                snprintf(err, CFG_ERR_LEN, "--check-config: missing FILE");
                return -1;
            }
            file = argv[++i];
            *check = true;
        } else if (i > 0 && strncmp(argv[i], "--check-config=", 15) == 0) {
            file = argv[i] + 15;
            *check = true;
            if (!*file) {
                snprintf(err, CFG_ERR_LEN, "--check-config: missing FILE");
                return -1;
            }
        } else {
            out[n++] = argv[i];
        }
    }
    if (file) {
        out[n++] = "--config";
        out[n++] = file;
    }
    out[n] = NULL;
    return n;
}

/* --help from the option table, plus the flags main() itself handles. */
static void print_usage(void) {
    char *usage = config_usage("metricastd");
    if (!usage) return;
    char *at = strstr(usage, "\n  --help");
    if (at) {
        fwrite(usage, 1, (size_t)(at - usage) + 1, stdout);
        fputs(CHECK_HELP, stdout);
        fputs(at + 1, stdout);
    } else {
        fputs(usage, stdout);
        fputs(CHECK_HELP, stdout);
    }
    free(usage);
}

/* ---- systemd notifications and SIGHUP, on the hub's loop -------------------------------
 * These handles live on hub.loop (main runs the hub thread) and are unreferenced, so they
 * never keep the loop alive; hub_close() closes them with the hub's own. */

static struct {
    hub_t *hub;
    const config_t *cfg;
    int argc;
    char **argv;
    uv_timer_t ready;
    uv_signal_t hup, term, intr;
    bool stopping_sent;
    demo_t *demo; /* --demo: started once listening, stopped before the workers */
} ctl;

static void notify_stopping(void) {
    if (ctl.stopping_sent) return;
    ctl.stopping_sent = true;
    mc_notify("STOPPING=1");
}

/* --demo: the hub's pre-stop hook asks the demo to close its sessions; the demo's thread
 * says when it has (the hub then stops the workers). */
static void demo_stopped(void *ctx) { hub_prestop_done(ctx); }
static void demo_prestop(void *ctx) { demo_request_stop(ctx); }

/* The demo is a client like any other: when tokens are configured it needs one (ingest and
 * publish scopes), given the way every client gets it, in METRICAST_TOKEN. */
static void start_demo(void) {
    const char *token = getenv("METRICAST_TOKEN");
    if (token && !*token) token = NULL;
    if (!token && auth_enabled(ctl.hub->auth))
        log_warn("demo: tokens are configured but METRICAST_TOKEN is not set; the hub will "
                 "refuse the demo sources",
                 "hint=\"set METRICAST_TOKEN to a token with the ingest and publish scopes\"");
    int rc = demo_start(&ctl.demo, ctl.hub->listen_addr, ctl.hub->statsd_addr, token,
                        demo_stopped, ctl.hub);
    if (rc < 0) {
        log_error("demo not started", "error=\"%s\"", strerror(-rc));
        return;
    }
    hub_set_prestop(ctl.hub, demo_prestop, ctl.demo);
}

/* Runs in the first loop iteration, after hub_run has started the workers and logged
 * "http listening": the listening socket is accepting. */
static void on_ready(uv_timer_t *t) {
    (void)t;
    if (ctl.hub->stopping) return;
    if (ctl.cfg->demo) start_demo();
    char msg[160];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on %s", ctl.hub->listen_addr);
    int rc = mc_notify(msg);
    if (rc < 0) log_warn("systemd notification failed", "error=\"%s\"", strerror(-rc));
}

static void on_stop_signal(uv_signal_t *s, int signum) {
    (void)s;
    (void)signum;
    notify_stopping(); /* the hub's own handler for the same signal does the stopping */
}

/* What SIGHUP applies in place. Each step reads `next` (the configuration just loaded, as
 * at start) and either applies its part to the running hub, returning how many changes it
 * applied and a summary for the log, or returns -1 with err filled and leaves the running
 * state as it was. Connections, subscriptions and everything else are untouched. To make
 * something else reloadable, add a step here (and say so in docs/OPERATIONS.md). */
typedef struct reload_step {
    const char *what;
    int (*apply)(hub_t *hub, const config_t *next, char *summary, size_t slen, char *err,
                 size_t errlen);
} reload_step_t;

static int reload_alert_rules(hub_t *hub, const config_t *next, char *summary, size_t slen,
                              char *err, size_t errlen) {
    alert_reload_t r;
    char aerr[ALERT_ERR_LEN];
    if (hub_reload_alerts(hub, next, aerr, &r) < 0) {
        snprintf(err, errlen, "%s", aerr);
        return -1;
    }
    snprintf(summary, slen, "rules=%zu added=%u changed=%u removed=%u kept=%u", hub->alerts.n,
             r.added, r.changed, r.removed, r.kept);
    return (int)(r.added + r.changed + r.removed);
}

/* Tokens and allowed origins: new requests use them at once, and every worker re-checks
 * its open WebSocket connections (access_recheck: a revoked or narrowed token closes its
 * connections with 1008, the others keep streaming). */
static int reload_access(hub_t *hub, const config_t *next, char *summary, size_t slen,
                         char *err, size_t errlen) {
    auth_t *a = NULL;
    char aerr[AUTH_ERR_LEN];
    if (auth_build(next, &a, aerr) != 0) {
        snprintf(err, errlen, "%s", aerr);
        return -1;
    }
    snprintf(summary, slen, "tokens=%zu allowed_origins=%zu", a->ntokens,
             a->norigins + (a->any_origin ? 1 : 0));
    if (auth_equal(a, hub->auth)) {
        auth_unref(a);
        return 0;
    }
    hub_set_auth(hub, a);
    return 1;
}

/* The TLS certificate and key (a renewed certificate, e.g. by certbot): read again from
 * the files named now, for new connections; open ones keep their session. Turning TLS on
 * or off changes what the port speaks: that needs a restart. */
static int reload_tls(hub_t *hub, const config_t *next, char *summary, size_t slen, char *err,
                      size_t errlen) {
    bool want = next->tls_cert[0] || next->tls_key[0];
    if (!hub->tls && !want) {
        snprintf(summary, slen, "tls=off");
        return 0;
    }
    if (!hub->tls || !want) {
        snprintf(err, errlen, "turning TLS %s needs a restart", want ? "on" : "off");
        return -1;
    }
    char terr[TLS_ERR_LEN];
    if (!next->tls_key[0] || !next->tls_cert[0]) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
    if (tls_server_reload(hub->tls, next->tls_cert, next->tls_key, terr) != 0) {
        snprintf(err, errlen, "%s", terr);
        return -1;
    }
    char desc[300];
    tls_server_describe(hub->tls, desc, sizeof desc);
    snprintf(summary, slen, "%s", desc);
    return 1;
}

static const reload_step_t reload_steps[] = {
    {"alert rules", reload_alert_rules},
    {"access policy", reload_access},
    {"tls certificate", reload_tls},
};

/* Options one of the reload_steps applies: not reported as needing a restart. */
static bool reloadable(const cfg_opt_t *o) {
    return (strcmp(o->section, "server") == 0 && strcmp(o->key, "allowed_origins") == 0) ||
           strcmp(o->section, "tls") == 0;
}

/* --tls-cert / --tls-key: both or neither, files that load, and not with --demo (its
 * client library speaks no TLS). 0, or -1 with err filled (exit 2). */
static int check_tls(const config_t *cfg, char err[CFG_ERR_LEN]) {
    if (!cfg->tls_cert[0] && !cfg->tls_key[0]) return 0;
    if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
        snprintf(err, CFG_ERR_LEN, "%s: --tls-cert and --tls-key go together ([tls] cert and key)",
                 cfg->tls_cert[0] ? "--tls-key missing" : "--tls-cert missing");
        return -1;
    }
    if (cfg->demo) {
        snprintf(err, CFG_ERR_LEN, "--demo with --tls-cert: the demo's sources use libmetricast, "
                 "which has no TLS; run the demo on a plain hub");
        return -1;
    }
    tls_server_t *s = NULL;
    char terr[TLS_ERR_LEN];
    if (tls_server_open(&s, cfg->tls_cert, cfg->tls_key, terr) != 0) {
        snprintf(err, CFG_ERR_LEN, "%s", terr);
        return -1;
    }
    tls_server_free(s);
    return 0;
}

/* SIGHUP: re-read the configuration exactly as at start (file, environment, flags), apply
 * what reload_steps cover, and report every other setting that differs (restart needed). */
static void on_hup(uv_signal_t *s, int signum) {
    (void)s;
    (void)signum;
    mc_notify("RELOADING=1");
    config_t *next = calloc(1, sizeof *next);
    char err[CFG_ERR_LEN], q[CFG_ERR_LEN + 16];
    cfg_action_t action;
    if (!next) {
        log_error("reload failed", "error=\"out of memory\"");
    } else if (config_load(next, ctl.argc, ctl.argv, environ, &action, err) != 0) {
        log_error("reload: configuration invalid, keeping the running one", "error=%s",
                  log_quote(err, q, sizeof q));
    } else {
        size_t n;
        const cfg_opt_t *o = config_options(&n);
        int changed = 0, applied = 0, failed = 0;
        char a[1100], b[1100], qa[1200], qb[1200];
        for (size_t i = 0; i < n; i++) {
            if (reloadable(&o[i])) continue;
            config_value_str(ctl.cfg, &o[i], true, a, sizeof a);
            config_value_str(next, &o[i], true, b, sizeof b);
            if (strcmp(a, b) == 0) continue;
            changed++;
            log_warn("reload: setting changed, restart to apply", "setting=%s.%s running=%s new=%s",
                     o[i].section, o[i].key, log_quote(a, qa, sizeof qa),
                     log_quote(b, qb, sizeof qb));
        }
        for (size_t i = 0; i < sizeof reload_steps / sizeof reload_steps[0]; i++) {
            char summary[256] = "", serr[ALERT_ERR_LEN + 64];
            int rc = reload_steps[i].apply(ctl.hub, next, summary, sizeof summary, serr, sizeof serr);
            if (rc < 0) {
                failed++;
                char msg[128];
                snprintf(msg, sizeof msg, "reload: %s invalid, keeping the running ones",
                         reload_steps[i].what);
                log_error(msg, "error=%s", log_quote(serr, q, sizeof q));
            } else {
                applied += rc;
                char msg[128];
                snprintf(msg, sizeof msg, "reload: %s applied", reload_steps[i].what);
                log_info(msg, "%s", summary);
            }
        }
        log_info("reload requested", "changed=%d applied=%d failed=%d note=\"alert rules, "
                 "the access policy and the TLS certificate reload in place; other settings "
                 "need a restart\"", changed,
                 applied, failed);
    }
    if (next) config_free(next);
    free(next);
    mc_notify("READY=1");
}

static void install_control(hub_t *hub, const config_t *cfg, int argc, char **argv) {
    ctl.hub = hub;
    ctl.cfg = cfg;
    ctl.argc = argc;
    ctl.argv = argv;
    if (uv_timer_init(&hub->loop, &ctl.ready) == 0) {
        uv_timer_start(&ctl.ready, on_ready, 0, 0);
        uv_unref((uv_handle_t *)&ctl.ready);
    }
    struct {
        uv_signal_t *h;
        uv_signal_cb cb;
        int sig;
    } sigs[] = {{&ctl.hup, on_hup, SIGHUP},
                {&ctl.term, on_stop_signal, SIGTERM},
                {&ctl.intr, on_stop_signal, SIGINT}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        if (uv_signal_init(&hub->loop, sigs[i].h) != 0) continue;
        uv_signal_start(sigs[i].h, sigs[i].cb, sigs[i].sig);
        uv_unref((uv_handle_t *)sigs[i].h);
    }
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-write is an error code, not death */
    signal(SIGHUP, SIG_IGN);  /* until the hub's loop handles it: a reload must not kill */

    static config_t cfg; /* static: large, and lives as long as the process */
    cfg_action_t action;
    char err[CFG_ERR_LEN];
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) return 2;
    bool check = false;
    int nargs = take_check_config(argc, argv, args, &check, err);
    if (nargs < 0 || config_load(&cfg, nargs, args, environ, &action, err) != 0) {
        fprintf(stderr, "metricastd: %s\n", err);
        free(args);
        return 2;
    }
    if (action == CFG_HELP) {
        print_usage();
        free(args);
        return 0;
    }
    if (action == CFG_VERSION) {
        printf("metricastd %s\n", MC_VERSION);
        free(args);
        return 0;
    }
    log_setup((log_level_t)cfg.log_level, STDERR_FILENO);
    {
        /* alert rules are checked here, before anything starts (hub_open parses them again) */
        alert_ruleset_t rs;
        char aerr[ALERT_ERR_LEN];
        if (alert_rules_parse(&cfg, &rs, aerr) < 0) {
            fprintf(stderr, "metricastd: %s\n", aerr);
            config_free(&cfg);
            free(args);
            return 2;
        }
        alert_ruleset_free(&rs);
        /* so are the tokens and allowed origins (hub_open builds the policy again) */
        auth_t *a = NULL;
        char terr[AUTH_ERR_LEN];
        if (auth_build(&cfg, &a, terr) != 0) {
            fprintf(stderr, "metricastd: %s\n", terr);
            config_free(&cfg);
            free(args);
            return 2;
        }
        auth_unref(a);
        /* and the TLS files (hub_open loads them again) */
        if (check_tls(&cfg, err) != 0) {
            fprintf(stderr, "metricastd: %s\n", err);
            config_free(&cfg);
            free(args);
            return 2;
        }
    }
    warn_unknown_env();
    if (check) {
        char *ini = config_dump_ini(&cfg);
        free(args);
        if (!ini) return 2;
        fputs(ini, stdout);
        free(ini);
        return fflush(stdout) == 0 ? 0 : 2;
    }

    int rc = health_mkdirs(cfg.data_dir);
    if (rc == 0) rc = health_probe_dir(cfg.data_dir);
    if (rc != 0) {
        fprintf(stderr, "metricastd: --data %s: not a usable directory: %s\n", cfg.data_dir,
                strerror(-rc));
        free(args);
        return 2;
    }
    unsigned long long max_fds = raise_fd_limit();

    static hub_t hub;
    char herr[HUB_ERR_LEN];
    if (hub_open(&hub, &cfg, herr) != 0) {
        fprintf(stderr, "metricastd: %s\n", herr);
        hub_close(&hub);
        free(args);
        return 2;
    }
    /* a few descriptors go to the listener, loops, log and store; the rest to clients */
    log_info("file descriptor limit", "max_fds=%llu max_connections=%llu", max_fds,
             max_fds > 64 ? max_fds - 64 : 0);
    install_control(&hub, &cfg, nargs, args);
    int status = hub_run(&hub);
    notify_stopping();
    demo_free(ctl.demo); /* stopped already, unless the pre-stop wait ran out */
    ctl.demo = NULL;
    hub_close(&hub);
    free(args);
    return status;
}
