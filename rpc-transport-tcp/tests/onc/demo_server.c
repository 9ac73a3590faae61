/* The DESCRIBE procedure of demo.x for an rpcgen-generated C server: the main and the
 * dispatch come from `rpcgen -s tcp -s udp demo.x` (which registers the program with
 * rpcbind for both protocols at ports the kernel picks). It answers as the Rust
 * service of onc_rpcgen.rs does: the record in words, and the sum of its values. */
#include <stdio.h>
#include <string.h>

#include "demo.h"

summary *describe_1_svc(record *rec, struct svc_req *req) {
    static summary result;
    static char text[256];
    char *at = text;
    size_t left = sizeof text;
    int n;
    (void)req;

#define APPEND(...)                                   \
    do {                                              \
        n = snprintf(at, left, __VA_ARGS__);          \
        if (n < 0 || (size_t)n >= left) goto full;    \
        at += n;                                      \
        left -= (size_t)n;                            \
    } while (0)

    int total = 0;
    APPEND("%s values=[", rec->name);
    for (unsigned i = 0; i < rec->values.values_len; i++) {
        APPEND("%s%d", i ? ", " : "", rec->values.values_val[i]);
        total += rec->values.values_val[i];
    }
    APPEND("] origin=");
    if (rec->origin) {
        APPEND("%d,%d", rec->origin->x, rec->origin->y);
    } else {
        APPEND("none");
    }
    switch (rec->s.kind) {
    case 0:
        APPEND(" shape=center %d,%d", rec->s.shape_u.center.x, rec->s.shape_u.center.y);
        break;
    case 1:
        APPEND(" shape=radius %d", rec->s.shape_u.radius);
        break;
    default:
        APPEND(" shape=kind %d", rec->s.kind);
        break;
    }
full:
    result.text = text;
    result.total = total;
    return &result;
}
