/* netacl — a list of networks (CIDRs, IPv4 and IPv6) and whether an address is in one.
 * Pure; immutable once parsed, so any thread may read it.
 *
 * Syntax: comma-separated "10.0.0.0/8", "192.168.1.7" (a /32), "fd00::/8", "::1". An
 * IPv4 network also matches the IPv4-mapped IPv6 form (::ffff:10.1.2.3) of its
 * addresses, since a dual-stack socket reports IPv4 senders that way. */
#ifndef MC_NETACL_H
#define MC_NETACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

typedef struct netacl_entry {
    uint8_t addr[16]; /* IPv4 in the first 4 bytes */
    uint8_t family;   /* 4 or 6 */
    uint8_t bits;
} netacl_entry_t;

typedef struct netacl {
    netacl_entry_t *v; /* owned */
    size_t n;
} netacl_t;

/* Parses list into acl (empty list: n = 0). 0, or -EINVAL with err naming the bad item
 * (acl left empty), or -ENOMEM. */
int netacl_parse(netacl_t *acl, const char *list, char *err, size_t errlen);
void netacl_free(netacl_t *acl);
/* Whether sa (AF_INET or AF_INET6) is inside one of the networks. */
bool netacl_match(const netacl_t *acl, const struct sockaddr *sa);

#endif
