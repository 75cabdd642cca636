/* loop: one epoll event loop, run by one thread.
 *
 * Everything a loop carries (client connections, upstream transfers) is
 * touched only by its thread, so nothing on the request path takes a lock.
 * A watch is embedded in its owner; the loop calls its fn with the epoll
 * events. Memory handed to ccp_loop_defer_free is freed after the current
 * round of events, so an owner that dies inside a callback cannot be
 * touched by a later event of the same round. */
#ifndef CCP_LOOP_H
#define CCP_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ccp_loop ccp_loop;
typedef struct ccp_watch ccp_watch;

struct ccp_watch {
    int fd;
    uint32_t events; /* registered now (EPOLLIN, EPOLLOUT, EPOLLRDHUP...) */
    bool added;
    void (*fn)(ccp_watch *w, uint32_t events);
    void *ctx;
};

/* Called once per loop iteration; returns the ms until it wants to run
 * again (-1: no deadline). */
typedef long (*ccp_loop_tick_fn)(void *ctx);

/* NULL when the kernel refuses an epoll or eventfd descriptor. */
ccp_loop *ccp_loop_new(void);
void ccp_loop_free(ccp_loop *l);

/* Registers, changes or (events 0 and not wanted any more) keeps w.
 * Returns 0, or -1 when the fd cannot be watched (a regular file). */
int ccp_loop_watch(ccp_loop *l, ccp_watch *w, uint32_t events);
void ccp_loop_unwatch(ccp_loop *l, ccp_watch *w);

/* Up to four tick functions (timers of the modules on this loop), run in
 * the order given, at the top of each iteration: after the previous
 * round's events, before the loop waits. */
void ccp_loop_on_tick(ccp_loop *l, ccp_loop_tick_fn fn, void *ctx);
void ccp_loop_defer_free(ccp_loop *l, void *p);

/* Runs until ccp_loop_stop has been called and idle() holds (NULL: at once).
 * Plain CGI stops its loop before running it: it returns when its one
 * request is done. */
void ccp_loop_run(ccp_loop *l, bool (*idle)(void *ctx), void *ctx);
/* One round for a test: the ticks, a wait of at most timeout_ms, the
 * events, and the ticks again (so what the events wrote is sent). */
void ccp_loop_turn(ccp_loop *l, int timeout_ms);
/* Thread-safe: wakes the loop; run returns once idle() holds. */
void ccp_loop_stop(ccp_loop *l);
bool ccp_loop_stopping(const ccp_loop *l);

#endif
