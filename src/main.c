/* metricastd — entry point: configuration, start-up checks, then the hub until a signal.
 *
 * Exit status: 0 after SIGINT/SIGTERM; 2 for a bad setting or an unusable port or
 * directory, with one line on stderr that names the setting. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "hub.h"
#include "log.h"
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

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-write is an error code, not death */

    static config_t cfg; /* static: large, and lives as long as the process */
    cfg_action_t action;
    char err[CFG_ERR_LEN];
    if (config_load(&cfg, argc, argv, environ, &action, err) != 0) {
        fprintf(stderr, "metricastd: %s\n", err);
        return 2;
    }
    if (action == CFG_HELP) {
        char *usage = config_usage("metricastd");
        if (usage) fputs(usage, stdout);
        free(usage);
        return 0;
    }
    if (action == CFG_VERSION) {
        printf("metricastd %s\n", MC_VERSION);
        return 0;
    }
    log_setup((log_level_t)cfg.log_level, STDERR_FILENO);
    warn_unknown_env();

    int rc = health_mkdirs(cfg.data_dir);
    if (rc == 0) rc = health_probe_dir(cfg.data_dir);
    if (rc != 0) {
        fprintf(stderr, "metricastd: --data %s: not a usable directory: %s\n", cfg.data_dir,
                strerror(-rc));
        return 2;
    }
    unsigned long long max_fds = raise_fd_limit();

    static hub_t hub;
    char herr[HUB_ERR_LEN];
    if (hub_open(&hub, &cfg, herr) != 0) {
        fprintf(stderr, "metricastd: %s\n", herr);
        hub_close(&hub);
        return 2;
    }
    /* a few descriptors go to the listener, loops, log and store; the rest to clients */
    log_info("file descriptor limit", "max_fds=%llu max_connections=%llu", max_fds,
             max_fds > 64 ? max_fds - 64 : 0);
    if (cfg.nats_url[0] || cfg.demo)
        log_info("settings accepted for later stages",
                 "nats=%s demo=%s note=\"NATS scale-out and demo sources are not part of this "
                 "build\"",
                 cfg.nats_url[0] ? cfg.nats_url : "none", cfg.demo ? "true" : "false");
    int status = hub_run(&hub);
    hub_close(&hub);
    return status;
}
