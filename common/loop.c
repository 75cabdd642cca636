#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "buf.h"

#define MAX_TICKS 6

typedef struct deferred {
    struct deferred *next;
} deferred;

struct ccp_loop {
    int epfd;
    ccp_watch wake;
    atomic_bool stopping;
    struct {
        ccp_loop_tick_fn fn;
        void *ctx;
    } ticks[MAX_TICKS];
    int tick_count;
    void **dead;
    size_t dead_count, dead_cap;
};

static void on_wake(ccp_watch *w, uint32_t events)
{
    (void)events;
    uint64_t n;
    while (read(w->fd, &n, sizeof n) > 0) {
    }
}

ccp_loop *ccp_loop_new(void)
{
    ccp_loop *l = ccp_xcalloc(1, sizeof *l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->wake.fn = on_wake;
    if (l->epfd < 0 || l->wake.fd < 0 || ccp_loop_watch(l, &l->wake, EPOLLIN) != 0) {
        ccp_loop_free(l);
        return NULL;
    }
    return l;
}

static void free_dead(ccp_loop *l)
{
    for (size_t i = 0; i < l->dead_count; i++) free(l->dead[i]);
    l->dead_count = 0;
}

void ccp_loop_free(ccp_loop *l)
{
    if (!l) return;
    free_dead(l);
    free(l->dead);
    if (l->wake.fd >= 0) close(l->wake.fd);
    if (l->epfd >= 0) close(l->epfd);
    free(l);
}

int ccp_loop_watch(ccp_loop *l, ccp_watch *w, uint32_t events)
{
    if (w->added && w->events == events) return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) != 0) return -1;
    w->added = true;
    w->events = events;
    return 0;
}

void ccp_loop_unwatch(ccp_loop *l, ccp_watch *w)
{
    if (!w->added) return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->added = false;
    w->events = 0;
}

void ccp_loop_on_tick(ccp_loop *l, ccp_loop_tick_fn fn, void *ctx)
{
    if (l->tick_count == MAX_TICKS) abort(); /* a wiring mistake, not a runtime condition */
    l->ticks[l->tick_count].fn = fn;
    l->ticks[l->tick_count].ctx = ctx;
    l->tick_count++;
}

void ccp_loop_defer_free(ccp_loop *l, void *p)
{
    if (l->dead_count == l->dead_cap) {
        l->dead_cap = l->dead_cap ? l->dead_cap * 2 : 64;
        l->dead = ccp_xrealloc(l->dead, l->dead_cap * sizeof *l->dead);
    }
    l->dead[l->dead_count++] = p;
}

/* The ticks; then, unless told to stop, one wait and its events. */
static bool turn(ccp_loop *l, bool (*idle)(void *ctx), void *ctx, long max_wait)
{
    struct epoll_event events[256];
    long wait = max_wait;
    for (int i = 0; i < l->tick_count; i++) {
        long t = l->ticks[i].fn(l->ticks[i].ctx);
        if (t >= 0 && (wait < 0 || t < wait)) wait = t;
    }
    free_dead(l);
    if (atomic_load(&l->stopping) && (!idle || idle(ctx))) return false;
    int n = epoll_wait(l->epfd, events, (int)(sizeof events / sizeof events[0]), (int)wait);
    if (n < 0 && errno != EINTR) return false;
    for (int i = 0; i < n; i++) {
        ccp_watch *w = events[i].data.ptr;
        w->fn(w, events[i].events);
    }
    return true;
}

void ccp_loop_run(ccp_loop *l, bool (*idle)(void *ctx), void *ctx)
{
    while (turn(l, idle, ctx, -1)) {
    }
    free_dead(l);
}

void ccp_loop_turn(ccp_loop *l, int timeout_ms)
{
    turn(l, NULL, NULL, timeout_ms);
    /* The ticks again: what this round's events wrote goes out now. */
    for (int i = 0; i < l->tick_count; i++) l->ticks[i].fn(l->ticks[i].ctx);
    free_dead(l);
}

void ccp_loop_stop(ccp_loop *l)
{
    atomic_store(&l->stopping, true);
    uint64_t one = 1;
    ssize_t w = write(l->wake.fd, &one, sizeof one);
    (void)w; /* EAGAIN: already woken */
}

bool ccp_loop_stopping(const ccp_loop *l)
{
    return atomic_load(&((ccp_loop *)l)->stopping);
}
