/* notify — systemd's readiness protocol (sd_notify) without libsystemd.
 *
 * When NOTIFY_SOCKET is set (Type=notify units), mc_notify("READY=1") sends one datagram
 * to that AF_UNIX socket: a filesystem path, or an abstract name written with a leading
 * '@'. Without NOTIFY_SOCKET it does nothing and returns 0. Never blocks, never exits. */
#ifndef MC_NOTIFY_H
#define MC_NOTIFY_H

/* 1 sent, 0 nothing to do (no NOTIFY_SOCKET), or -errno. */
int mc_notify(const char *state);

#endif
