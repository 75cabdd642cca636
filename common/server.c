#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "clock.h"
#include "fcgi_conn.h"
#include "loop.h"
#include "log.h"
#include "version.h"

extern char **environ;

/* ---- plain CGI: one request over stdio --------------------------------- */

static int cgi_read(ccp_io *io, char *buf, int n)
{
    (void)io;
    for (;;) {
        ssize_t got = read(STDIN_FILENO, buf, (size_t)n);
        if (got < 0 && errno == EINTR) continue;
        return got < 0 ? -1 : (int)got;
    }
}

static int cgi_write(ccp_io *io, const char *p, size_t n)
{
    (void)io;
    /* Unbuffered, blocking write(2): one request, and the CGI server reads
     * per event. */
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cgi_flush(ccp_io *io)
{
    (void)io;
    return 0;
}

static bool cgi_idle(void *ctx)
{
    return ccp_upstream_running(ctx) == 0;
}

static int serve_cgi(const ccp_runtime *rt)
{
    ccp_io io = {
        .envp = environ,
        .read = cgi_read,
        .write = cgi_write,
        .flush = cgi_flush,
        .hangup_fd = STDOUT_FILENO,
        .hangup_fd_readable = false,
    };
    ccp_loop *loop = ccp_loop_new();
    ccp_upstream *up = loop ? ccp_upstream_new(rt->cfg, loop) : NULL;
    if (!up) {
        ccp_loop_free(loop);
        return 1;
    }
    ccp_relay_serve(rt, up, &io);
    /* One request: the loop returns when its transfer (if any) is done. */
    ccp_loop_stop(loop);
    ccp_loop_run(loop, cgi_idle, up);
    ccp_upstream_free(up);
    ccp_loop_free(loop);
    return 0;
}

/* ---- FastCGI: one event loop per thread -------------------------------------
 *
 * Each worker thread runs one loop that accepts connections from the
 * shared listen socket (EPOLLEXCLUSIVE: one loop woken per connection),
 * reads their requests, prepares them (routing, auth, adapters) and carries
 * their upstream transfers: a request never changes threads, and nothing
 * on its path takes a lock. Past the stream ceiling a request gets a fast
 * 503, never a silent wait. */

/* Descriptors kept back from the stream ceiling: the listen socket, each
 * loop's epoll and eventfd, the resolver, logs. */
#define FD_RESERVE 64
/* Accepts per wake-up, so one loop does not take a whole burst. */
#define ACCEPT_BATCH 32
/* After EMFILE/ENFILE a loop stops accepting this long (else the level-
 * triggered listen socket would spin it). */
#define ACCEPT_PAUSE_MS 100

typedef struct worker {
    pthread_t thread;
    ccp_loop *loop;
    ccp_upstream *up;
    ccp_fcgi_host host;
    ccp_watch listen;
    long long accept_paused_until;
    bool stopped_accepting;
    atomic_bool forced; /* the grace is over: exit with connections open */
    long long idle_since; /* when this loop last saw the service idle; 0: busy */
} worker;

/* Set by any loop on a request, cleared by the one that trims. */
static atomic_bool worked_since_trim;

static struct {
    const ccp_runtime *rt;
    worker *workers;
    int count;
    int max_streams;
    const char *stream_limit_name;
} pool;

static int answering_now(void)
{
    int n = 0;
    for (int i = 0; i < pool.count; i++) n += atomic_load(&pool.workers[i].host.busy);
    return n;
}

static void on_request(void *ctx, ccp_io *io)
{
    worker *w = ctx;
    atomic_store(&worked_since_trim, true);
    ccp_relay_serve(pool.rt, w->up, io);
}

/* glibc keeps freed memory for reuse: after a peak of thousands of
 * streams the process would stay at its peak RSS. Once the whole service
 * has been idle for a second, it is handed back. */
#define TRIM_AFTER_IDLE_MS 1000

static long trim_when_idle(worker *w)
{
    if (answering_now() > 0) {
        w->idle_since = 0;
        return -1;
    }
    long long now = ccp_now_ms();
    if (!w->idle_since) w->idle_since = now;
    if (now - w->idle_since < TRIM_AFTER_IDLE_MS) return (long)(w->idle_since + TRIM_AFTER_IDLE_MS - now);
    if (atomic_exchange(&worked_since_trim, false)) malloc_trim(0);
    return -1;
}

static const char *over_limit(void *ctx, char *msg, size_t n)
{
    (void)ctx;
    /* busy counts the request asking already. */
    if (answering_now() <= pool.max_streams) return NULL;
    snprintf(msg, n, "this service carries its limit of %d streams at once (%s); retry shortly", pool.max_streams,
             pool.stream_limit_name);
    return pool.stream_limit_name;
}

static void on_listen(ccp_watch *lw, uint32_t events)
{
    (void)events;
    worker *w = lw->ctx;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lw->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            ccp_fcgi_conn_open(&w->host, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            ccp_log_event(CCP_LOG_ERROR, "limit_reached",
                          "cannot accept a connection: %s (open files: raise LimitNOFILE / ulimit -n, or lower "
                          "MAX_STREAMS); pausing accepts for %d ms",
                          strerror(errno), ACCEPT_PAUSE_MS);
            ccp_loop_unwatch(w->loop, lw);
            w->accept_paused_until = ccp_now_ms() + ACCEPT_PAUSE_MS;
        }
        return; /* EAGAIN: another loop took it, or none left */
    }
}

/* The worker's timer: resumes accepting, and on stop lets go of the
 * listen socket and of idle kept connections. */
static long worker_tick(void *ctx)
{
    worker *w = ctx;
    if (ccp_loop_stopping(w->loop)) {
        if (!w->stopped_accepting) {
            w->stopped_accepting = true;
            ccp_loop_unwatch(w->loop, &w->listen);
        }
        ccp_fcgi_close_idle(&w->host);
        return -1;
    }
    long wait = atomic_load(&worked_since_trim) ? trim_when_idle(w) : -1;
    if (w->accept_paused_until) {
        long long left = w->accept_paused_until - ccp_now_ms();
        if (left > 0) return wait >= 0 && wait < left ? wait : (long)left;
        w->accept_paused_until = 0;
        ccp_loop_watch(w->loop, &w->listen, EPOLLIN | EPOLLEXCLUSIVE);
    }
    return wait;
}

static bool worker_idle(void *ctx)
{
    worker *w = ctx;
    return atomic_load(&w->host.busy) == 0 && (w->host.open == 0 || atomic_load(&w->forced));
}

/* Writes the log lines of the round: before the answers go out (a client
 * that has its answer finds its line written), and again after, for what
 * sending them logged, so no line waits through the loop's sleep. */
static long log_tick(void *ctx)
{
    (void)ctx;
    ccp_log_flush();
    return -1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    ccp_log_batch(true);
    ccp_loop_run(w->loop, worker_idle, w);
    ccp_log_batch(false);
    OPENSSL_thread_stop(); /* OpenSSL keeps per-thread state until told */
    return NULL;
}

/* Raises the soft descriptor limit to the hard one and derives how many
 * streams it carries: each needs the client connection and the upstream
 * one. */
static void size_limits(const ccp_config *cfg)
{
    struct rlimit rl = {0};
    long fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t old = rl.rlim_cur;
            rl.rlim_cur = rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
        }
        fds = rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
    }
    long by_fds = (fds - FD_RESERVE) / 2;
    if (by_fds < 1) by_fds = 1;
    pool.max_streams = cfg->max_streams;
    pool.stream_limit_name = "MAX_STREAMS";
    if (by_fds < pool.max_streams) {
        pool.max_streams = (int)by_fds;
        pool.stream_limit_name = "the open-files limit, RLIMIT_NOFILE";
    }
    ccp_log_event(CCP_LOG_INFO, "limits",
                  "open files: %ld (raised to the hard limit); streams at once: %d (by %s); event loops: %d", fds,
                  pool.max_streams, pool.stream_limit_name, pool.count);
}

static bool start_worker(worker *w, const ccp_runtime *rt, size_t stack)
{
    w->loop = ccp_loop_new();
    w->up = w->loop ? ccp_upstream_new(rt->cfg, w->loop) : NULL;
    if (!w->up) return false;
    w->host = (ccp_fcgi_host){
        .loop = w->loop,
        .body_max = rt->cfg->max_body_bytes,
        /* The parameters are the headers (as HTTP_* variables, so a little
         * longer) and the CGI variables, which repeat the URL: past twice the
         * header total and 64 KiB the headers are over their limit anyway,
         * and the rest is counted, not kept (fcgi_conn.h). */
        .params_max = 2 * rt->cfg->max_header_total_bytes + (64u << 10),
        .on_request = on_request,
        .ctx = w,
    };
    w->listen = (ccp_watch){.fd = 0, .fn = on_listen, .ctx = w};
    ccp_loop_on_tick(w->loop, worker_tick, w);
    ccp_loop_on_tick(w->loop, log_tick, NULL);
    ccp_fcgi_host_init(&w->host); /* flushes what the others wrote */
    ccp_loop_on_tick(w->loop, log_tick, NULL);
    if (ccp_loop_watch(w->loop, &w->listen, EPOLLIN | EPOLLEXCLUSIVE) != 0) return false;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack);
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    return rc == 0;
}

/* Returns the exit status. Every loop thread is joined before it returns
 * (those cut off at the end of SHUTDOWN_GRACE too), so nothing runs on. */
static int serve_fastcgi(ccp_runtime *rt)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    /* Threads inherit the mask: only this thread receives the signals. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* Every loop accepts from it; one that finds nothing must not block. */
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

    rt->over_limit = over_limit;
    pool.rt = rt;
    pool.count = rt->cfg->worker_threads;
    pool.workers = ccp_xcalloc((size_t)pool.count, sizeof *pool.workers);
    size_limits(rt->cfg);
    size_t stack = (size_t)rt->cfg->worker_stack_kb * 1024;
#if defined(__SANITIZE_ADDRESS__)
    stack *= 4; /* ASan's redzones need room */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    stack *= 4;
#endif
#endif
    int started = 0;
    for (int i = 0; i < pool.count; i++) {
        if (!start_worker(&pool.workers[i], rt, stack)) {
            ccp_log_event(CCP_LOG_ERROR, "startup_failed", "event loop %d could not be started: %s", i,
                          strerror(errno));
            break;
        }
        started++;
    }
    if (started < pool.count) {
        for (int i = 0; i < started; i++) ccp_loop_stop(pool.workers[i].loop);
        for (int i = 0; i < started; i++) pthread_join(pool.workers[i].thread, NULL);
        return 1;
    }
    ccp_log_event(CCP_LOG_INFO, "listening", "serving FastCGI on fd 0 with %d event loops", started);

    int sig = 0;
    sigwait(&sigs, &sig);
    ccp_log_event(CCP_LOG_INFO, "stopping", "signal %d: no new requests; waiting up to %d s for running ones", sig,
                  rt->cfg->shutdown_grace_s);
    for (int i = 0; i < pool.count; i++) ccp_loop_stop(pool.workers[i].loop);

    long long deadline = ccp_now_ms() + (long long)rt->cfg->shutdown_grace_s * 1000;
    int left;
    while ((left = answering_now()) > 0 && ccp_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (left) ccp_log_event(CCP_LOG_WARNING, "stopped", "%d requests still running were cut off", left);
    else ccp_log_event(CCP_LOG_INFO, "stopped", "all requests finished");
    /* The cut-off ones end as if their clients had left (logged 499). */
    for (int i = 0; i < pool.count; i++) {
        atomic_store(&pool.workers[i].forced, true);
        ccp_upstream_cancel_all(pool.workers[i].up);
    }
    for (int i = 0; i < pool.count; i++) pthread_join(pool.workers[i].thread, NULL);
    for (int i = 0; i < pool.count; i++) {
        ccp_upstream_free(pool.workers[i].up);
        ccp_loop_free(pool.workers[i].loop);
    }
    free(pool.workers);
    return 0;
}

/* ---- the service's counters ------------------------------------------------ */

/* Maps the service's shared counters: METRICS_FILE, else the file named
 * after the FastCGI listen socket; plain CGI without METRICS_FILE counts
 * its one request privately. A file that cannot be used costs the shared
 * view, never the service: the process then counts privately, and says so. */
static ccp_metrics *open_metrics(const ccp_service *s, const ccp_config *cfg, bool cgi)
{
    const char *routes[CCP_METRICS_ROUTES];
    size_t n = s->route_count < CCP_METRICS_ROUTES ? s->route_count : CCP_METRICS_ROUTES;
    for (size_t i = 0; i < n; i++) routes[i] = s->routes[i].pattern;
    ccp_buf path = {0}, err = {0};
    if (cfg->metrics_file) ccp_buf_append_str(&path, cfg->metrics_file);
    else if (!cgi) ccp_metrics_default_path(0, s->program, &path);
    ccp_metrics *m = NULL;
    if (ccp_metrics_open(&m, path.len ? path.data : NULL, s->name, CCP_VERSION, routes, n, &err) != CCP_OK) {
        ccp_log_event(CCP_LOG_WARNING, "metrics_private",
                      "%s; this process's counters are its own, /metrics on it shows only them", err.data);
        ccp_buf_reset(&err);
        ccp_metrics_open(&m, NULL, s->name, CCP_VERSION, routes, n, &err);
    } else if (path.len && !cgi) {
        ccp_log_event(CCP_LOG_INFO, "metrics", "counters shared through %s", path.data);
    }
    ccp_buf_free(&path);
    ccp_buf_free(&err);
    return m;
}

/* ---- the program ------------------------------------------------------ */

static void usage(const ccp_service *s, FILE *f)
{
    fprintf(f,
            "Usage: %s [--help | --version | --check-config | --print-config-env]\n"
            "\n"
            "cc-proxy %s responder (%s API). Run it under a FastCGI spawner\n"
            "(spawn-fcgi, lighttpd mod_fastcgi, systemd socket activation) with the\n"
            "listening socket on standard input, or as a plain CGI program.\n"
            "Configuration comes from the environment and the .env file named by\n"
            "CCPROXY_ENV_FILE (default ./.env); see the README.\n"
            "\n"
            "  --check-config  read the configuration as a start would, print it\n"
            "                  (secrets masked) and exit non-zero on any problem\n"
            "  --print-config-env  read it the same way and print every variable as a\n"
            "                  shell-quoted NAME='value' line (the value given, else the\n"
            "                  default; secrets as given) for scripts that configure\n"
            "                  the responders; exit non-zero on any problem\n",
            s->program, s->name, s->dialect->name);
}

/* Blocks from this size up are mapped on their own (see mallopt below):
 * above every per-request scratch buffer of a short request, so those keep
 * coming from the arenas' free lists. */
#define MMAP_THRESHOLD_BYTES (256 * 1024)

int ccp_server_main(const ccp_service *service, int argc, char **argv)
{
    bool check_only = false, print_env = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(service, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", service->program, CCP_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--print-config-env") == 0) {
            print_env = true;
        } else {
            fprintf(stderr, "%s: unknown argument %s\n", service->program, argv[i]);
            usage(service, stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    /* glibc raises its mmap threshold to the largest block freed (up to 32
     * MiB), and from then on big buffers (an SSE event held whole, a held
     * answer) come from a thread's arena, whose top malloc_trim does not
     * give back: one 5 MB event left 4 MB resident per loop thread for
     * good. A fixed threshold keeps such buffers mapped on their own, so
     * freeing one returns it to the kernel. */
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);

    static ccp_config cfg;
    ccp_buf err = {0}, desc = {0};
    ccp_adapters *adapters = NULL;
    ccp_pool *upstreams = NULL;
    int status = 2; /* a configuration error, unless said otherwise */
    const ccp_config_names *names = &service->config_names;
    if (ccp_config_load(&cfg, names, &err) != CCP_OK) {
        fprintf(stderr, "%s: configuration error:\n%s", service->program, err.data);
        goto done;
    }
    if (print_env) {
        /* The variables alone (no adapter table): what the scripts forward. */
        ccp_config_print_env(&cfg, names, &desc);
        fputs(ccp_buf_cstr(&desc), stdout);
        status = fflush(stdout) == 0 ? 0 : 1;
        goto done;
    }
    ccp_log_init(&cfg, service->name);

    if (ccp_adapters_load(&adapters, service->adapter_set, &cfg, &err) != CCP_OK ||
        ccp_pool_load(&upstreams, service->adapter_set, &cfg, &err) != CCP_OK) {
        fprintf(stderr, "%s: configuration error:\n%s\n", service->program, err.data);
        goto done;
    }
    ccp_config_describe(&cfg, names, &desc);
    ccp_buf_append_char(&desc, ',');
    ccp_pool_describe_config(upstreams, &desc);
    if (check_only) {
        printf("{%s}\n%s: configuration OK\n", desc.data, service->program);
        status = 0;
        goto done;
    }
    if (ccp_upstream_global_init(&err) != CCP_OK) {
        fprintf(stderr, "%s: %s", service->program, err.data);
        status = 1;
        goto done;
    }
    bool cgi = FCGX_IsCGI();
    if (!cgi) {
        ccp_buf_printf(&desc, ",\"version\":\"%s\"", CCP_VERSION);
        ccp_log_event_json(CCP_LOG_INFO, "startup", desc.data);
    }
    ccp_buf_free(&desc);

    ccp_runtime rt = {.service = service, .cfg = &cfg, .adapters = adapters, .pool = upstreams};
    rt.metrics = open_metrics(service, &cfg, cgi);
    /* Every upstream's error counters read 0 before its first failure. */
    for (size_t i = 0; rt.metrics && i < ccp_pool_count(upstreams); i++)
        ccp_metrics_upstream(rt.metrics, ccp_pool_at(upstreams, i)->name);
    status = cgi ? serve_cgi(&rt) : serve_fastcgi(&rt);
    ccp_metrics_close(rt.metrics);
    ccp_upstream_global_cleanup();
done:
    /* One owner for everything above, whichever way it ended. */
    ccp_buf_free(&err);
    ccp_buf_free(&desc);
    ccp_pool_free(upstreams);
    ccp_adapters_free(adapters);
    ccp_config_free(&cfg);
    return status;
}
