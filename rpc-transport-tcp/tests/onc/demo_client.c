/* Calls DESCRIBE twice through the rpcgen-generated client stub (demo_clnt.c), over
 * TCP or UDP, to a server on 127.0.0.1:PORT (no rpcbind: the port is given), and
 * prints each summary on a line. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

static int describe(CLIENT *clnt, record *rec) {
    summary *res = describe_1(rec, clnt);
    if (res == NULL) {
        clnt_perror(clnt, "describe");
        return 1;
    }
    printf("%s total=%d\n", res->text, res->total);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: demo_client PORT tcp|udp\n");
        return 2;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int sock = RPC_ANYSOCK;
    CLIENT *clnt;
    if (strcmp(argv[2], "tcp") == 0) {
        clnt = clnttcp_create(&addr, DEMO_PROG, DEMO_V1, &sock, 0, 0);
    } else {
        struct timeval wait = {1, 0};
        clnt = clntudp_create(&addr, DEMO_PROG, DEMO_V1, wait, &sock);
    }
    if (clnt == NULL) {
        clnt_pcreateerror("create");
        return 1;
    }

    int values[3] = {1, 2, 3};
    point origin = {5, 6};
    record rec;
    rec.name = "hello";
    rec.values.values_len = 3;
    rec.values.values_val = values;
    rec.origin = &origin;
    rec.s.kind = 1;
    rec.s.shape_u.radius = 7;
    if (describe(clnt, &rec) != 0) {
        return 1;
    }

    rec.name = "empty";
    rec.values.values_len = 0;
    rec.values.values_val = NULL;
    rec.origin = NULL;
    rec.s.kind = 0;
    rec.s.shape_u.center.x = -1;
    rec.s.shape_u.center.y = 2;
    if (describe(clnt, &rec) != 0) {
        return 1;
    }

    rec.name = "other";
    rec.s.kind = 9;
    if (describe(clnt, &rec) != 0) {
        return 1;
    }
    clnt_destroy(clnt);
    return 0;
}
