/* libFuzzer target: a FastCGI connection fed arbitrary bytes, as records
 * from a web server, on a real loop over a socketpair. The first byte picks
 * how each request is answered (at once, with an abort, or left to the
 * hang-up), so the writer, the abort and the release paths run too. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/fcgi_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct state {
    int mode;
    ccp_io *held;
} state;

static void on_client(void *ctx, ccp_io_event event)
{
    state *s = ctx;
    if (event == CCP_IO_GONE && s->held) {
        ccp_io *io = s->held;
        s->held = NULL;
        ccp_io_finish(io);
    }
}

static void on_request(void *ctx, ccp_io *io)
{
    state *s = ctx;
    char buf[512];
    while (io->read(io, buf, sizeof buf) > 0) {
    }
    (void)ccp_http_param(io->envp, "REQUEST_URI");
    static const char answer[] = "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok";
    switch (s->mode % 3) {
    case 0:
        io->write(io, answer, sizeof answer - 1);
        ccp_io_finish(io);
        break;
    case 1:
        io->write(io, answer, sizeof answer - 1);
        io->abort(io);
        ccp_io_finish(io);
        break;
    default:
        if (s->held) { /* one held at a time: the earlier one ends now */
            ccp_io_finish(s->held);
        }
        io->on_client = on_client;
        io->on_client_ctx = s;
        s->held = io;
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return 0;
    state s = {.mode = data[0]};
    ccp_loop *loop = ccp_loop_new();
    if (!loop) return 0;
    ccp_fcgi_host host = {.loop = loop, .body_max = 1024, .params_max = 8192, .on_request = on_request, .ctx = &s};
    ccp_fcgi_host_init(&host);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    int bufsize = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    ccp_fcgi_conn_open(&host, sv[1]);
    ssize_t w = write(sv[0], data + 1, size - 1);
    (void)w;
    char sink[65536];
    for (int i = 0; i < 3; i++) {
        ccp_loop_turn(loop, 0);
        while (read(sv[0], sink, sizeof sink) > 0) {
        }
    }
    shutdown(sv[0], SHUT_WR); /* the web server hangs up */
    for (int i = 0; i < 3; i++) {
        ccp_loop_turn(loop, 0);
        while (read(sv[0], sink, sizeof sink) > 0) {
        }
    }
    if (s.held) ccp_io_finish(s.held);
    ccp_fcgi_close_idle(&host);
    ccp_loop_turn(loop, 0);
    if (host.open != 0) abort(); /* every connection let go of */
    close(sv[0]);
    ccp_loop_free(loop);
    return 0;
}
