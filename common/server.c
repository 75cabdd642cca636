#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "clock.h"
#include "fcgi_conn.h"
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
    ccp_upstream *up = ccp_upstream_new(rt->cfg);
    if (!up) return 1;
    ccp_relay_serve(rt, up, &io);
    ccp_upstream_loop(up, true);
    ccp_upstream_free(up);
    return 0;
}

/* ---- FastCGI: preparing threads and the loop ------------------------------
 *
 * Preparing threads accept a request, read it, and run everything up to
 * the upstream call (routing, auth, adapters); then the loop thread carries
 * the transfer. The pool is elastic: a thread is started whenever the last
 * free one takes a request, up to WORKER_THREADS, and one idle for a while
 * ends, so an idle responder stays small and a burst never waits for a
 * thread busy with a stream. */

#define MIN_THREADS 2
#define IDLE_RETIRE_S 30
/* Descriptors kept back from the stream ceiling: the listen socket, the
 * loop's epoll and eventfd, the resolver, logs. */
#define FD_RESERVE 64

static struct {
    const ccp_runtime *rt;
    ccp_upstream *up;
    pthread_attr_t attr;
    pthread_mutex_t accept_lock;
    pthread_mutex_t lock; /* guards threads, busy */
    pthread_cond_t changed;
    int threads, busy;
    int max_threads;
    int max_streams;
    const char *stream_limit_name; /* which limit max_streams is */
    atomic_int stopping;
} pool = {
    .accept_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
};

static void *preparer(void *arg);

/* Called with pool.lock held. */
static bool start_thread_locked(void)
{
    pthread_t t;
    pool.threads++;
    if (pthread_create(&t, &pool.attr, preparer, NULL) != 0) {
        pool.threads--;
        return false;
    }
    return true;
}

/* Waits for the accept slot; false when this thread should end instead
 * (the service stops, or the pool has idle threads to spare). */
static bool take_accept_slot(void)
{
    for (;;) {
        if (atomic_load(&pool.stopping)) return false;
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += IDLE_RETIRE_S;
        int rc = pthread_mutex_timedlock(&pool.accept_lock, &deadline);
        if (rc == 0) {
            if (!atomic_load(&pool.stopping)) return true;
            pthread_mutex_unlock(&pool.accept_lock);
            return false;
        }
        pthread_mutex_lock(&pool.lock);
        bool spare = pool.threads - pool.busy > MIN_THREADS;
        pthread_mutex_unlock(&pool.lock);
        if (spare) return false;
    }
}

/* A request past the stream ceiling gets a fast 503: never a silent wait.
 * (At the thread ceiling a request waits in the listen queue only for
 * another to be prepared, which takes milliseconds, not a stream's life.) */
static void serve_conn(ccp_fcgi_conn *c, int busy)
{
    const ccp_runtime *rt = pool.rt;
    int open = ccp_upstream_open_count(pool.up);
    if (open + busy > pool.max_streams) {
        ccp_relay_refuse(rt, pool.up, &c->io, pool.stream_limit_name,
                         "this service carries its limit of %d open streams (%s); retry shortly", pool.max_streams,
                         pool.stream_limit_name);
    } else {
        ccp_relay_serve(rt, pool.up, &c->io);
    }
}

static void *preparer(void *arg)
{
    (void)arg;
    while (take_accept_slot()) {
        int rc;
        ccp_fcgi_conn *c = ccp_fcgi_conn_accept(0, &rc);
        pthread_mutex_unlock(&pool.accept_lock);
        if (!c) {
            if (atomic_load(&pool.stopping)) break;
            struct timespec ts = {0, 10 * 1000000L}; /* e.g. EMFILE: do not spin */
            nanosleep(&ts, NULL);
            continue;
        }
        pthread_mutex_lock(&pool.lock);
        int busy = ++pool.busy;
        if (pool.busy == pool.threads && pool.threads < pool.max_threads) start_thread_locked();
        pthread_mutex_unlock(&pool.lock);

        serve_conn(c, busy);

        pthread_mutex_lock(&pool.lock);
        pool.busy--;
        pthread_mutex_unlock(&pool.lock);
    }
    /* OpenSSL keeps per-thread state (its error queue) until told. */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&pool.lock);
    pool.threads--;
    pthread_cond_broadcast(&pool.changed);
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static void *loop_thread(void *arg)
{
    ccp_upstream_loop(arg, false);
    OPENSSL_thread_stop();
    return NULL;
}

/* Raises the soft descriptor limit to the hard one and derives how many
 * streams it carries: each needs the client connection and the upstream
 * one. */
static void size_limits(const ccp_config *cfg)
{
    struct rlimit rl;
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
                  "open files: %ld (the hard limit); streams at once: %d (by %s); request threads: up to %d", fds,
                  pool.max_streams, pool.stream_limit_name, pool.max_threads);
}

static int active_work(void)
{
    pthread_mutex_lock(&pool.lock);
    int busy = pool.busy;
    pthread_mutex_unlock(&pool.lock);
    return busy + ccp_upstream_open_count(pool.up);
}

/* Returns the exit status; *cut_off counts requests still running at exit. */
static int serve_fastcgi(const ccp_runtime *rt, int *cut_off)
{
    if (FCGX_Init() != 0) {
        ccp_log_event(CCP_LOG_ERROR, "startup_failed", "FCGX_Init failed");
        return 1;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    /* Threads inherit the mask: only this thread receives the signals. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    pool.rt = rt;
    pool.max_threads = rt->cfg->worker_threads;
    pool.up = ccp_upstream_new(rt->cfg);
    if (!pool.up) {
        ccp_log_event(CCP_LOG_ERROR, "startup_failed", "the event loop could not be created: %s", strerror(errno));
        return 1;
    }
    size_limits(rt->cfg);

    pthread_attr_init(&pool.attr);
    size_t stack = (size_t)rt->cfg->worker_stack_kb * 1024;
#if defined(__SANITIZE_ADDRESS__)
    stack *= 4; /* ASan's redzones need room */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    stack *= 4;
#endif
#endif
    pthread_attr_setstacksize(&pool.attr, stack);
    pthread_attr_setdetachstate(&pool.attr, PTHREAD_CREATE_DETACHED);
    pthread_t loop;
    if (pthread_create(&loop, NULL, loop_thread, pool.up) != 0) {
        ccp_log_event(CCP_LOG_ERROR, "startup_failed", "the event loop thread could not be started");
        return 1;
    }
    pthread_mutex_lock(&pool.lock);
    int want = pool.max_threads < MIN_THREADS ? pool.max_threads : MIN_THREADS;
    for (int i = 0; i < want; i++) start_thread_locked();
    int started = pool.threads;
    pthread_mutex_unlock(&pool.lock);
    if (started == 0) {
        ccp_log_event(CCP_LOG_ERROR, "startup_failed", "no request thread could be started");
        return 1;
    }
    ccp_log_event(CCP_LOG_INFO, "listening",
                  "serving FastCGI on fd 0: one event loop for the streams, %d to %d request threads", started,
                  pool.max_threads);

    int sig = 0;
    sigwait(&sigs, &sig);
    atomic_store(&pool.stopping, 1);
    FCGX_ShutdownPending();
    /* Wakes the thread blocked in accept(2); running requests go on. */
    shutdown(0, SHUT_RDWR);
    ccp_log_event(CCP_LOG_INFO, "stopping", "signal %d: no new requests; waiting up to %d s for running ones", sig,
                  rt->cfg->shutdown_grace_s);

    long long deadline = ccp_now_ms() + (long long)rt->cfg->shutdown_grace_s * 1000;
    int left;
    while ((left = active_work()) > 0 && ccp_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (left) ccp_log_event(CCP_LOG_WARNING, "stopped", "%d requests still running were cut off", left);
    else ccp_log_event(CCP_LOG_INFO, "stopped", "all requests finished");
    ccp_upstream_stop(pool.up);
    pthread_join(loop, NULL);
    *cut_off = left;
    return 0;
}

/* ---- the program ------------------------------------------------------ */

static void usage(const ccp_service *s, FILE *f)
{
    fprintf(f,
            "Usage: %s [--help | --version | --check-config]\n"
            "\n"
            "cc-proxy %s responder (%s API). Run it under a FastCGI spawner\n"
            "(spawn-fcgi, lighttpd mod_fastcgi, systemd socket activation) with the\n"
            "listening socket on standard input, or as a plain CGI program.\n"
            "Configuration comes from the environment and the .env file named by\n"
            "CCPROXY_ENV_FILE (default ./.env); see the README.\n"
            "\n"
            "  --check-config  read the configuration as a start would, print it\n"
            "                  (secrets masked) and exit non-zero on any problem\n",
            s->program, s->name, s->dialect->name);
}

int ccp_server_main(const ccp_service *service, int argc, char **argv)
{
    bool check_only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(service, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", service->program, CCP_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else {
            fprintf(stderr, "%s: unknown argument %s\n", service->program, argv[i]);
            usage(service, stderr);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    static ccp_config cfg;
    ccp_buf err = {0};
    const ccp_config_names *names = &service->dialect->config_names;
    if (ccp_config_load(&cfg, names, &err) != CCP_OK) {
        fprintf(stderr, "%s: configuration error:\n%s", service->program, err.data);
        ccp_buf_free(&err);
        ccp_config_free(&cfg);
        return 2;
    }
    ccp_log_init(&cfg, service->name);

    ccp_adapters *adapters = NULL;
    if (ccp_adapters_load(&adapters, service->adapter_set, &cfg, &err) != CCP_OK) {
        fprintf(stderr, "%s: configuration error:\n%s\n", service->program, err.data);
        ccp_buf_free(&err);
        ccp_config_free(&cfg);
        return 2;
    }
    ccp_buf desc = {0};
    ccp_config_describe(&cfg, names, &desc);
    if (check_only) {
        printf("{%s}\n%s: configuration OK\n", desc.data, service->program);
        ccp_buf_free(&desc);
        ccp_adapters_free(adapters);
        ccp_config_free(&cfg);
        return 0;
    }
    if (ccp_upstream_global_init(&err) != CCP_OK) {
        fprintf(stderr, "%s: %s", service->program, err.data);
        return 1;
    }
    bool cgi = FCGX_IsCGI();
    if (!cgi) {
        ccp_buf_printf(&desc, ",\"version\":\"%s\"", CCP_VERSION);
        ccp_log_event_json(CCP_LOG_INFO, "startup", desc.data);
    }
    ccp_buf_free(&desc);

    /* Static: workers cut off at the end of SHUTDOWN_GRACE still point here
     * while the process exits. */
    static ccp_runtime rt;
    rt = (ccp_runtime){.service = service, .cfg = &cfg, .adapters = adapters};
    int cut_off = 0;
    int status = cgi ? serve_cgi(&rt) : serve_fastcgi(&rt, &cut_off);
    if (cut_off > 0) return status; /* do not free what running threads use */
    ccp_upstream_global_cleanup();
    ccp_adapters_free(adapters);
    ccp_config_free(&cfg);
    return status;
}
