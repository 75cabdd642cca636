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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "version.h"

extern char **environ;

/* ---- transports ------------------------------------------------------- */

static int fcgi_read(ccp_io *io, char *buf, int n)
{
    FCGX_Request *r = io->ctx;
    return FCGX_GetStr(buf, n, r->in);
}

static int fcgi_write(ccp_io *io, const char *p, size_t n)
{
    FCGX_Request *r = io->ctx;
    /* A failed write marks the stream closed; later calls keep failing,
     * and FCGX_FFlush on a closed stream returns 0, so check the error. */
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (FCGX_PutStr(p, chunk, r->out) != chunk || FCGX_GetError(r->out)) return -1;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

static int fcgi_flush(ccp_io *io)
{
    FCGX_Request *r = io->ctx;
    if (FCGX_FFlush(r->out) != 0 || FCGX_GetError(r->out)) return -1;
    return 0;
}

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
    /* Unbuffered write(2): CGI output reaches the server per event. */
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

/* ---- worker pool ------------------------------------------------------ */

static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static atomic_int stopping;
static int workers_running;

static void *worker(void *arg)
{
    const ccp_runtime *rt = arg;
    FCGX_Request req;
    FCGX_InitRequest(&req, 0, FCGI_FAIL_ACCEPT_ON_INTR);
    ccp_upstream *up = NULL;
    for (;;) {
        /* libfcgi's threaded pattern: one thread in accept at a time. */
        pthread_mutex_lock(&accept_lock);
        int rc = atomic_load(&stopping) ? -1 : FCGX_Accept_r(&req);
        pthread_mutex_unlock(&accept_lock);
        if (rc < 0) {
            if (atomic_load(&stopping)) break;
            struct timespec ts = {0, 10 * 1000000L}; /* e.g. EMFILE: do not spin */
            nanosleep(&ts, NULL);
            continue;
        }
        if (!up) up = ccp_upstream_new(rt->cfg); /* lazily: idle workers stay small */
        ccp_io io = {
            .envp = req.envp,
            .read = fcgi_read,
            .write = fcgi_write,
            .flush = fcgi_flush,
            .hangup_fd = req.ipcFd,
            .hangup_fd_readable = true,
            .ctx = &req,
        };
        if (up) {
            ccp_relay_serve(rt, up, &io);
        } else {
            static const char msg[] = "Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n"
                                      "ccproxy: cannot create an upstream handle\n";
            fcgi_write(&io, msg, sizeof msg - 1);
        }
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 0);
    ccp_upstream_free(up);
    /* OpenSSL keeps per-thread state (its error queue) until told. */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&done_lock);
    workers_running--;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

/* Returns the exit status; *cut_off counts workers still running at exit. */
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
    /* Workers inherit the mask: only this thread receives the signals. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    size_t stack = (size_t)rt->cfg->worker_stack_kb * 1024;
#if defined(__SANITIZE_ADDRESS__)
    stack *= 4; /* ASan's redzones need room */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    stack *= 4;
#endif
#endif
    pthread_attr_setstacksize(&attr, stack);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int started = 0;
    for (int i = 0; i < rt->cfg->worker_threads; i++) {
        pthread_t t;
        pthread_mutex_lock(&done_lock);
        workers_running++;
        pthread_mutex_unlock(&done_lock);
        if (pthread_create(&t, &attr, worker, (void *)rt) != 0) {
            pthread_mutex_lock(&done_lock);
            workers_running--;
            pthread_mutex_unlock(&done_lock);
            break;
        }
        started++;
    }
    pthread_attr_destroy(&attr);
    if (started == 0) {
        ccp_log_event(CCP_LOG_ERROR, "startup_failed", "no worker thread could be started");
        return 1;
    }
    ccp_log_event(CCP_LOG_INFO, "listening", "serving FastCGI on fd 0 with %d worker threads", started);

    int sig = 0;
    sigwait(&sigs, &sig);
    atomic_store(&stopping, 1);
    FCGX_ShutdownPending();
    /* Wakes the thread blocked in accept(2); running requests go on. */
    shutdown(0, SHUT_RDWR);
    ccp_log_event(CCP_LOG_INFO, "stopping", "signal %d: no new requests; waiting up to %d s for running ones", sig,
                  rt->cfg->shutdown_grace_s);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += rt->cfg->shutdown_grace_s;
    pthread_mutex_lock(&done_lock);
    while (workers_running > 0)
        if (pthread_cond_timedwait(&done_cond, &done_lock, &deadline) == ETIMEDOUT) break;
    int left = workers_running;
    pthread_mutex_unlock(&done_lock);
    if (left) ccp_log_event(CCP_LOG_WARNING, "stopped", "%d requests still running were cut off", left);
    else ccp_log_event(CCP_LOG_INFO, "stopped", "all requests finished");
    *cut_off = left;
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
    ccp_upstream_free(up);
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
