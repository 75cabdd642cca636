#define _GNU_SOURCE
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the shared counters need lock-free (address-free) atomics");

#define MAGIC 0x31736369727465ccULL /* "\xcc" "etrics1" */
/* Bumped whenever the segment's layout changes: a file of another layout
 * is rebuilt at start-up, never read as this one. */
#define LAYOUT 1

/* Seconds, as the le labels; the last bucket is +Inf. */
static const double bucket_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define BUCKETS (sizeof bucket_le / sizeof bucket_le[0] + 1)

typedef struct label {
    _Atomic uint32_t ready;
    uint32_t hash;
    char name[CCP_METRICS_NAME_MAX];
} label;

typedef struct series {
    _Atomic uint32_t ready;
    uint32_t key; /* route + 1 << 20 | adapter << 10 | status */
} series;

typedef struct hist {
    _Atomic uint64_t bucket[BUCKETS]; /* not cumulative; the count is their sum */
    _Atomic uint64_t sum_ns;
} hist;

/* One process's counters; index "table size" of each table is "other". */
typedef struct slot {
    _Atomic int32_t pid; /* 0: never claimed */
    _Atomic uint32_t live; /* cleared by a clean exit */
    _Atomic int64_t active;
    _Atomic uint64_t disconnects;
    _Atomic uint64_t requests[CCP_METRICS_SERIES + 1];
    hist duration[CCP_METRICS_ROUTES + 1];
    hist ttfb[CCP_METRICS_UPSTREAMS + 1];
    _Atomic uint64_t tokens[CCP_METRICS_MODELS + 1][CCP_TOKEN_KINDS];
    _Atomic uint64_t uperr[CCP_METRICS_UPSTREAMS + 1][CCP_UPERR_KINDS];
} __attribute__((aligned(64))) slot;

typedef struct segment {
    uint64_t magic;
    uint32_t layout;
    uint32_t size;
    int64_t created_unix;
    char service[CCP_METRICS_NAME_MAX];
    _Atomic uint32_t n_models, n_adapters, n_upstreams, n_series;
    label models[CCP_METRICS_MODELS];
    label adapters[CCP_METRICS_ADAPTERS];
    label upstreams[CCP_METRICS_UPSTREAMS];
    series series[CCP_METRICS_SERIES];
    slot slots[CCP_METRICS_SLOTS];
} segment;

struct ccp_metrics {
    segment *seg;
    slot *mine;
    int fd; /* -1: a private segment */
    char *path;
    char service[CCP_METRICS_NAME_MAX];
    char version[CCP_METRICS_NAME_MAX];
    const char *routes[CCP_METRICS_ROUTES];
    size_t route_count;
};

static const char *const uperr_names[CCP_UPERR_KINDS] = {"unreachable", "timeout",    "broken",
                                                         "status_5xx",  "status_429", "error_event"};

const char *ccp_upstream_error_name(ccp_upstream_error_kind k)
{
    return k < CCP_UPERR_KINDS ? uperr_names[k] : "other";
}

#define RELAXED memory_order_relaxed

/* ---- labels --------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n + 1 >= CCP_METRICS_NAME_MAX) return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._:/@+-", c)))
            return false;
    }
    return n > 0 && strcmp(s, "other") != 0 && strcmp(s, "none") != 0;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static uint32_t used(_Atomic uint32_t *count, uint32_t cap)
{
    uint32_t n = atomic_load_explicit(count, memory_order_acquire);
    return n < cap ? n : cap;
}

/* The id of name in the table, adding it when there is room; cap when the
 * table is full or the name unfit. Two processes adding the same name at
 * once may both add it: the scrape merges entries of equal names. */
static int intern(label *tab, _Atomic uint32_t *count, uint32_t cap, const char *name)
{
    if (!name || !name_ok(name)) return (int)cap;
    uint32_t h = fnv1a(name), n = used(count, cap);
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&tab[i].ready, memory_order_acquire) && tab[i].hash == h &&
            strcmp(tab[i].name, name) == 0)
            return (int)i;
    uint32_t i = atomic_fetch_add_explicit(count, 1, memory_order_acq_rel);
    if (i >= cap) return (int)cap;
    snprintf(tab[i].name, sizeof tab[i].name, "%s", name);
    tab[i].hash = h;
    atomic_store_explicit(&tab[i].ready, 1, memory_order_release);
    return (int)i;
}

static int series_id(segment *s, uint32_t key)
{
    uint32_t n = used(&s->n_series, CCP_METRICS_SERIES);
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&s->series[i].ready, memory_order_acquire) && s->series[i].key == key) return (int)i;
    uint32_t i = atomic_fetch_add_explicit(&s->n_series, 1, memory_order_acq_rel);
    if (i >= CCP_METRICS_SERIES) return CCP_METRICS_SERIES;
    s->series[i].key = key;
    atomic_store_explicit(&s->series[i].ready, 1, memory_order_release);
    return (int)i;
}

int ccp_metrics_model(ccp_metrics *m, const char *name)
{
    return m ? intern(m->seg->models, &m->seg->n_models, CCP_METRICS_MODELS, name) : 0;
}

/* Adapters: ids 0..ADAPTERS-1, ADAPTERS "other", ADAPTERS + 1 "none". */
int ccp_metrics_adapter(ccp_metrics *m, const char *name)
{
    if (!m) return 0;
    if (!name) return CCP_METRICS_ADAPTERS + 1;
    return intern(m->seg->adapters, &m->seg->n_adapters, CCP_METRICS_ADAPTERS, name);
}

int ccp_metrics_upstream(ccp_metrics *m, const char *name)
{
    return m ? intern(m->seg->upstreams, &m->seg->n_upstreams, CCP_METRICS_UPSTREAMS, name) : 0;
}

/* ---- recording: relaxed adds to this process's slot --------------------- */

static void observe(hist *h, long long ns)
{
    if (ns < 0) ns = 0;
    size_t b = 0;
    while (b < BUCKETS - 1 && (double)ns > bucket_le[b] * 1e9) b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, RELAXED);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, RELAXED);
}

static int clamp(int v, int max)
{
    return v < 0 || v > max ? max : v;
}

void ccp_metrics_request(ccp_metrics *m, int route, int adapter, int status, long long duration_ns)
{
    if (!m) return;
    int r = route < 0 || (size_t)route >= m->route_count ? CCP_METRICS_ROUTES : route;
    int a = clamp(adapter, CCP_METRICS_ADAPTERS + 1);
    int st = status >= 100 && status <= 999 ? status : 0;
    uint32_t key = (uint32_t)(r + 1) << 20 | (uint32_t)a << 10 | (uint32_t)st;
    atomic_fetch_add_explicit(&m->mine->requests[series_id(m->seg, key)], 1, RELAXED);
    observe(&m->mine->duration[r], duration_ns);
}

void ccp_metrics_ttfb(ccp_metrics *m, int upstream, long long ttfb_ns)
{
    if (m) observe(&m->mine->ttfb[clamp(upstream, CCP_METRICS_UPSTREAMS)], ttfb_ns);
}

void ccp_metrics_tokens(ccp_metrics *m, int model, const ccp_usage *u)
{
    if (!m || !u->seen) return;
    int id = clamp(model, CCP_METRICS_MODELS);
    for (int k = 0; k < CCP_TOKEN_KINDS; k++)
        if (u->tokens[k] > 0) atomic_fetch_add_explicit(&m->mine->tokens[id][k], (uint64_t)u->tokens[k], RELAXED);
}

void ccp_metrics_upstream_error(ccp_metrics *m, int upstream, ccp_upstream_error_kind kind)
{
    if (!m || kind >= CCP_UPERR_KINDS) return;
    atomic_fetch_add_explicit(&m->mine->uperr[clamp(upstream, CCP_METRICS_UPSTREAMS)][kind], 1, RELAXED);
}

void ccp_metrics_client_disconnect(ccp_metrics *m)
{
    if (m) atomic_fetch_add_explicit(&m->mine->disconnects, 1, RELAXED);
}

void ccp_metrics_active(ccp_metrics *m, int delta)
{
    if (m) atomic_fetch_add_explicit(&m->mine->active, delta, RELAXED);
}

/* ---- the segment ------------------------------------------------------------ */

static bool pid_alive(int32_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static bool slot_live(slot *s)
{
    return atomic_load_explicit(&s->live, memory_order_acquire) && pid_alive(atomic_load(&s->pid));
}

static void fill_header(segment *s, const char *service)
{
    s->magic = MAGIC;
    s->layout = LAYOUT;
    s->size = (uint32_t)sizeof *s;
    s->created_unix = (int64_t)time(NULL);
    snprintf(s->service, sizeof s->service, "%s", service);
}

/* A never used slot, else one whose process is gone (its counts go on
 * from where they are). Under the file lock: only start-up claims. */
static slot *claim(segment *s)
{
    int32_t me = (int32_t)getpid();
    for (int i = 0; i < CCP_METRICS_SLOTS; i++)
        if (atomic_load(&s->slots[i].pid) == 0) {
            atomic_store(&s->slots[i].pid, me);
            atomic_store(&s->slots[i].live, 1);
            return &s->slots[i];
        }
    for (int i = 0; i < CCP_METRICS_SLOTS; i++)
        if (!slot_live(&s->slots[i])) {
            /* Gone without telling: its streams are not open any more. */
            atomic_store(&s->slots[i].active, 0);
            atomic_store(&s->slots[i].pid, me);
            atomic_store(&s->slots[i].live, 1);
            return &s->slots[i];
        }
    return NULL;
}

static int open_shared(ccp_metrics *m, const char *path, ccp_buf *err)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            ccp_buf_printf(err, "METRICS_FILE %s cannot be opened: %s", path, strerror(errno));
            return CCP_ERR;
        }
        struct stat st;
        if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0) {
            ccp_buf_printf(err, "METRICS_FILE %s cannot be locked: %s", path, strerror(errno));
            close(fd);
            return CCP_ERR;
        }
        if (st.st_nlink == 0) {
            /* The last process of a previous run removed it as we opened it. */
            close(fd);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            ccp_buf_printf(err, "METRICS_FILE %s is not a regular file", path);
            close(fd);
            return CCP_ERR;
        }
        bool fresh = (size_t)st.st_size != sizeof(segment);
        segment *s = NULL;
        if (!fresh) {
            s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (s == MAP_FAILED) s = NULL;
            if (s && (s->magic != MAGIC || s->layout != LAYOUT || s->size != sizeof *s)) {
                munmap(s, sizeof *s);
                s = NULL;
                fresh = true;
            }
        }
        if (fresh) {
            /* Empty, or of another layout (an older build): rebuilt. */
            if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)sizeof(segment)) != 0) {
                ccp_buf_printf(err, "METRICS_FILE %s cannot be sized: %s", path, strerror(errno));
                close(fd);
                return CCP_ERR;
            }
            s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (s == MAP_FAILED) s = NULL;
            if (s) fill_header(s, m->service);
        }
        if (!s) {
            ccp_buf_printf(err, "METRICS_FILE %s cannot be mapped: %s", path, strerror(errno));
            close(fd);
            return CCP_ERR;
        }
        if (strcmp(s->service, m->service) != 0) {
            ccp_buf_printf(err, "METRICS_FILE %s holds the counters of %.64s; give each service its own file", path,
                           s->service);
            munmap(s, sizeof *s);
            close(fd);
            return CCP_ERR;
        }
        m->mine = claim(s);
        flock(fd, LOCK_UN);
        if (!m->mine) {
            ccp_buf_printf(err, "METRICS_FILE %s: all %d process slots are held by live processes", path,
                           CCP_METRICS_SLOTS);
            munmap(s, sizeof *s);
            close(fd);
            return CCP_ERR;
        }
        m->seg = s;
        m->fd = fd;
        m->path = ccp_xstrdup(path);
        return CCP_OK;
    }
    ccp_buf_printf(err, "METRICS_FILE %s keeps being removed while it is opened", path);
    return CCP_ERR;
}

int ccp_metrics_open(ccp_metrics **out, const char *path, const char *service, const char *version,
                     const char *const *routes, size_t route_count, ccp_buf *err)
{
    *out = NULL;
    ccp_metrics *m = ccp_xcalloc(1, sizeof *m);
    m->fd = -1;
    snprintf(m->service, sizeof m->service, "%s", service);
    snprintf(m->version, sizeof m->version, "%s", version);
    m->route_count = route_count < CCP_METRICS_ROUTES ? route_count : CCP_METRICS_ROUTES;
    for (size_t i = 0; i < m->route_count; i++) m->routes[i] = routes[i];
    if (path) {
        if (open_shared(m, path, err) != CCP_OK) goto error;
    } else {
        segment *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED) {
            ccp_buf_printf(err, "no memory for the metrics: %s", strerror(errno));
            goto error;
        }
        fill_header(s, service);
        m->seg = s;
        m->mine = claim(s);
    }
    /* The one upstream is there before its first request: its error
     * counters read 0 rather than nothing. */
    ccp_metrics_upstream(m, "default");
    *out = m;
    return CCP_OK;
error:
    free(m);
    return CCP_ERR;
}

void ccp_metrics_close(ccp_metrics *m)
{
    if (!m) return;
    if (m->fd >= 0) {
        flock(m->fd, LOCK_EX);
        atomic_store(&m->mine->live, 0);
        atomic_store(&m->mine->active, 0);
        bool others = false;
        for (int i = 0; i < CCP_METRICS_SLOTS && !others; i++)
            others = &m->seg->slots[i] != m->mine && atomic_load(&m->seg->slots[i].pid) && slot_live(&m->seg->slots[i]);
        /* The service is gone from this host: so are its counters. */
        if (!others) unlink(m->path);
        flock(m->fd, LOCK_UN);
        close(m->fd);
    }
    munmap(m->seg, sizeof *m->seg);
    free(m->path);
    free(m);
}

int ccp_metrics_default_path(int fd, const char *program, ccp_buf *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return CCP_ERR;
    ccp_buf id = {0};
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        size_t n = strnlen(un->sun_path, sizeof un->sun_path);
        if (n == 0) {
            ccp_buf_free(&id);
            return CCP_ERR; /* unnamed */
        }
        /* lighttpd names each process's socket <socket>-<n>. */
        size_t d = n;
        while (d > 0 && un->sun_path[d - 1] >= '0' && un->sun_path[d - 1] <= '9') d--;
        if (d < n && d > 0 && un->sun_path[d - 1] == '-') n = d - 1;
        ccp_buf_append_str(&id, "unix:");
        ccp_buf_append(&id, un->sun_path, n);
    } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        char host[INET6_ADDRSTRLEN] = "";
        int port;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
        ccp_buf_printf(&id, "tcp:%s:%d", host, port);
    } else {
        ccp_buf_free(&id);
        return CCP_ERR;
    }
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < id.len; i++) h = (h ^ (unsigned char)id.data[i]) * 1099511628211ULL;
    ccp_buf_free(&id);
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    ccp_buf_printf(out, "%s/%s-%016llx.metrics", dir, program, (unsigned long long)h);
    return CCP_OK;
}

/* ---- the scrape ------------------------------------------------------------------ */

/* canon[i]: the first entry of the table with the same name as entry i
 * (two processes may have added one name twice); entries not ready map to
 * the "other" entry (cap). */
static void canonical(const label *tab, uint32_t n, uint32_t cap, int *canon)
{
    for (uint32_t i = 0; i < n; i++) {
        canon[i] = (int)cap;
        if (!atomic_load_explicit(&((label *)tab)[i].ready, memory_order_acquire)) continue;
        canon[i] = (int)i;
        for (uint32_t j = 0; j < i; j++)
            if (canon[j] == (int)j && strcmp(tab[j].name, tab[i].name) == 0) {
                canon[i] = (int)j;
                break;
            }
    }
    canon[cap] = (int)cap;
}

static uint64_t ld(const _Atomic uint64_t *p)
{
    return atomic_load_explicit(p, RELAXED);
}

typedef struct scrape {
    ccp_metrics *m;
    segment *s;
    slot *slots[CCP_METRICS_SLOTS];
    int nslots;
} scrape;

static void hist_sum(scrape *sc, size_t off, uint64_t out[BUCKETS], uint64_t *sum)
{
    for (int i = 0; i < sc->nslots; i++) {
        const hist *h = (const hist *)((const char *)sc->slots[i] + off);
        for (size_t b = 0; b < BUCKETS; b++) out[b] += ld(&h->bucket[b]);
        *sum += ld(&h->sum_ns);
    }
}

static void hist_render(ccp_buf *out, const char *name, const char *labels, const uint64_t b[BUCKETS], uint64_t sum)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < BUCKETS; i++) {
        cum += b[i];
        if (i + 1 < BUCKETS) ccp_buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bucket_le[i],
                                            (unsigned long long)cum);
        else ccp_buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    ccp_buf_printf(out, "%s_sum{%s} %.9f\n%s_count{%s} %llu\n", name, labels, (double)sum / 1e9, name, labels,
                   (unsigned long long)cum);
}

static const char *label_name(const label *tab, int id, int cap)
{
    return id >= cap ? "other" : tab[id].name;
}

static void render_requests(scrape *sc, ccp_buf *out, const int *acanon, const int *rcanon)
{
    segment *s = sc->s;
    uint32_t n = used(&s->n_series, CCP_METRICS_SERIES);
    /* Series merged by their canonical labels. */
    uint32_t keys[CCP_METRICS_SERIES + 1];
    uint64_t counts[CCP_METRICS_SERIES + 1];
    int nk = 0;
    for (uint32_t i = 0; i <= n; i++) {
        uint32_t key;
        if (i == n) key = UINT32_MAX; /* "other" */
        else if (!atomic_load_explicit(&s->series[i].ready, memory_order_acquire)) continue;
        else {
            uint32_t k = s->series[i].key;
            int r = (int)(k >> 20) - 1, a = (int)(k >> 10 & 0x3ff), st = (int)(k & 0x3ff);
            r = rcanon[clamp(r, CCP_METRICS_ROUTES)];
            a = a <= CCP_METRICS_ADAPTERS ? acanon[a] : a;
            key = (uint32_t)(r + 1) << 20 | (uint32_t)a << 10 | (uint32_t)st;
        }
        uint64_t c = 0;
        size_t idx = i == n ? CCP_METRICS_SERIES : i;
        for (int j = 0; j < sc->nslots; j++) c += ld(&sc->slots[j]->requests[idx]);
        if (i == n && !c) continue;
        int at = 0;
        while (at < nk && keys[at] != key) at++;
        if (at == nk) {
            keys[nk] = key;
            counts[nk++] = 0;
        }
        counts[at] += c;
    }
    for (int i = 0; i < nk; i++) {
        if (keys[i] == UINT32_MAX) {
            ccp_buf_printf(out,
                           "ccproxy_requests_total{service=\"%s\",route=\"other\",adapter=\"other\",status=\"other\"} "
                           "%llu\n",
                           sc->m->service, (unsigned long long)counts[i]);
            continue;
        }
        int r = (int)(keys[i] >> 20) - 1, a = (int)(keys[i] >> 10 & 0x3ff), st = (int)(keys[i] & 0x3ff);
        const char *route = r < (int)sc->m->route_count ? sc->m->routes[r] : "other";
        const char *adapter = a == CCP_METRICS_ADAPTERS + 1 ? "none" : label_name(s->adapters, a, CCP_METRICS_ADAPTERS);
        char status[8];
        snprintf(status, sizeof status, "%d", st);
        ccp_buf_printf(out, "ccproxy_requests_total{service=\"%s\",route=\"%s\",adapter=\"%s\",status=\"%s\"} %llu\n",
                       sc->m->service, route, adapter, st ? status : "other", (unsigned long long)counts[i]);
    }
}

void ccp_metrics_render(ccp_metrics *m, ccp_buf *out)
{
    if (!m) return;
    scrape sc = {.m = m, .s = m->seg};
    segment *s = m->seg;
    int live = 0;
    int64_t active = 0;
    for (int i = 0; i < CCP_METRICS_SLOTS; i++) {
        slot *sl = &s->slots[i];
        if (!atomic_load(&sl->pid)) continue; /* never touched: not even read */
        sc.slots[sc.nslots++] = sl;
        if (slot_live(sl)) {
            live++;
            active += atomic_load_explicit(&sl->active, RELAXED);
        }
    }
    const char *svc = m->service;

    ccp_buf_printf(out,
                   "# HELP ccproxy_build_info The responder's version.\n# TYPE ccproxy_build_info gauge\n"
                   "ccproxy_build_info{service=\"%s\",version=\"%s\"} 1\n"
                   "# HELP process_start_time_seconds When the service's counters began (its first process "
                   "started), in Unix seconds.\n# TYPE process_start_time_seconds gauge\n"
                   "process_start_time_seconds %lld\n"
                   "# HELP ccproxy_processes Live responder processes of the service on this host.\n"
                   "# TYPE ccproxy_processes gauge\nccproxy_processes{service=\"%s\"} %d\n",
                   svc, m->version, (long long)s->created_unix, svc, live);

    int acanon[CCP_METRICS_ADAPTERS + 1], mcanon[CCP_METRICS_MODELS + 1], ucanon[CCP_METRICS_UPSTREAMS + 1];
    int rcanon[CCP_METRICS_ROUTES + 1];
    uint32_t na = used(&s->n_adapters, CCP_METRICS_ADAPTERS), nm = used(&s->n_models, CCP_METRICS_MODELS),
             nu = used(&s->n_upstreams, CCP_METRICS_UPSTREAMS);
    canonical(s->adapters, na, CCP_METRICS_ADAPTERS, acanon);
    canonical(s->models, nm, CCP_METRICS_MODELS, mcanon);
    canonical(s->upstreams, nu, CCP_METRICS_UPSTREAMS, ucanon);
    for (size_t i = 0; i < m->route_count; i++) {
        rcanon[i] = (int)i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->routes[j], m->routes[i]) == 0) {
                rcanon[i] = (int)j;
                break;
            }
    }
    for (size_t i = m->route_count; i <= CCP_METRICS_ROUTES; i++) rcanon[i] = CCP_METRICS_ROUTES;

    ccp_buf_append_str(out, "# HELP ccproxy_requests_total Requests answered, by route, adapter and status "
                            "(499: the client left).\n# TYPE ccproxy_requests_total counter\n");
    render_requests(&sc, out, acanon, rcanon);

    ccp_buf_append_str(out, "# HELP ccproxy_request_duration_seconds The whole exchange, request to last byte.\n"
                            "# TYPE ccproxy_request_duration_seconds histogram\n");
    char labels[256];
    for (size_t r = 0; r <= CCP_METRICS_ROUTES; r++) {
        if (r < m->route_count ? rcanon[r] != (int)r : r != CCP_METRICS_ROUTES) continue;
        uint64_t b[BUCKETS] = {0}, sum = 0;
        for (size_t j = r; j <= CCP_METRICS_ROUTES; j++)
            if ((size_t)rcanon[j] == r && (j < m->route_count || j == CCP_METRICS_ROUTES))
                hist_sum(&sc, offsetof(slot, duration) + j * sizeof(hist), b, &sum);
        uint64_t count = 0;
        for (size_t i = 0; i < BUCKETS; i++) count += b[i];
        if (!count) continue;
        snprintf(labels, sizeof labels, "service=\"%s\",route=\"%s\"", svc,
                 r < m->route_count ? m->routes[r] : "other");
        hist_render(out, "ccproxy_request_duration_seconds", labels, b, sum);
    }

    ccp_buf_append_str(out, "# HELP ccproxy_upstream_ttfb_seconds Request sent upstream to its first byte back.\n"
                            "# TYPE ccproxy_upstream_ttfb_seconds histogram\n");
    for (uint32_t u = 0; u <= nu; u++) {
        int id = u == nu ? CCP_METRICS_UPSTREAMS : (int)u;
        if (ucanon[id] != id) continue;
        uint64_t b[BUCKETS] = {0}, sum = 0;
        for (uint32_t j = 0; j <= nu; j++) {
            int jid = j == nu ? CCP_METRICS_UPSTREAMS : (int)j;
            if (ucanon[jid] == id) hist_sum(&sc, offsetof(slot, ttfb) + (size_t)jid * sizeof(hist), b, &sum);
        }
        uint64_t count = 0;
        for (size_t i = 0; i < BUCKETS; i++) count += b[i];
        if (!count && id == CCP_METRICS_UPSTREAMS) continue;
        snprintf(labels, sizeof labels, "service=\"%s\",upstream=\"%s\"", svc,
                 label_name(s->upstreams, id, CCP_METRICS_UPSTREAMS));
        hist_render(out, "ccproxy_upstream_ttfb_seconds", labels, b, sum);
    }

    ccp_buf_printf(out,
                   "# HELP ccproxy_active_streams Relayed exchanges open now.\n# TYPE ccproxy_active_streams gauge\n"
                   "ccproxy_active_streams{service=\"%s\"} %lld\n",
                   svc, (long long)(active > 0 ? active : 0));

    ccp_buf_append_str(out, "# HELP ccproxy_tokens_total Tokens the upstream reported, by model and kind "
                            "(disjoint kinds: their sum is the total).\n# TYPE ccproxy_tokens_total counter\n");
    for (uint32_t i = 0; i <= nm; i++) {
        int id = i == nm ? CCP_METRICS_MODELS : (int)i;
        if (mcanon[id] != id) continue;
        uint64_t t[CCP_TOKEN_KINDS] = {0};
        bool any = false;
        for (uint32_t j = 0; j <= nm; j++) {
            int jid = j == nm ? CCP_METRICS_MODELS : (int)j;
            if (mcanon[jid] != id) continue;
            for (int k = 0; k < sc.nslots; k++)
                for (int kind = 0; kind < CCP_TOKEN_KINDS; kind++) t[kind] += ld(&sc.slots[k]->tokens[jid][kind]);
        }
        for (int kind = 0; kind < CCP_TOKEN_KINDS; kind++) any = any || t[kind];
        if (id == CCP_METRICS_MODELS && !any) continue;
        for (int kind = 0; kind < CCP_TOKEN_KINDS; kind++)
            ccp_buf_printf(out, "ccproxy_tokens_total{service=\"%s\",model=\"%s\",kind=\"%s\"} %llu\n", svc,
                           label_name(s->models, id, CCP_METRICS_MODELS), ccp_token_kind_name((ccp_token_kind)kind),
                           (unsigned long long)t[kind]);
    }

    ccp_buf_append_str(out, "# HELP ccproxy_upstream_errors_total Upstream failures, by upstream and kind.\n"
                            "# TYPE ccproxy_upstream_errors_total counter\n");
    for (uint32_t u = 0; u <= nu; u++) {
        int id = u == nu ? CCP_METRICS_UPSTREAMS : (int)u;
        if (ucanon[id] != id) continue;
        uint64_t e[CCP_UPERR_KINDS] = {0};
        bool any = false;
        for (uint32_t j = 0; j <= nu; j++) {
            int jid = j == nu ? CCP_METRICS_UPSTREAMS : (int)j;
            if (ucanon[jid] != id) continue;
            for (int k = 0; k < sc.nslots; k++)
                for (int kind = 0; kind < CCP_UPERR_KINDS; kind++) e[kind] += ld(&sc.slots[k]->uperr[jid][kind]);
        }
        for (int kind = 0; kind < CCP_UPERR_KINDS; kind++) any = any || e[kind];
        if (id == CCP_METRICS_UPSTREAMS && !any) continue;
        for (int kind = 0; kind < CCP_UPERR_KINDS; kind++)
            ccp_buf_printf(out, "ccproxy_upstream_errors_total{service=\"%s\",upstream=\"%s\",kind=\"%s\"} %llu\n",
                           svc, label_name(s->upstreams, id, CCP_METRICS_UPSTREAMS), uperr_names[kind],
                           (unsigned long long)e[kind]);
    }

    uint64_t gone = 0;
    for (int k = 0; k < sc.nslots; k++) gone += ld(&sc.slots[k]->disconnects);
    ccp_buf_printf(out,
                   "# HELP ccproxy_client_disconnects_total Exchanges whose client left before the end.\n"
                   "# TYPE ccproxy_client_disconnects_total counter\n"
                   "ccproxy_client_disconnects_total{service=\"%s\"} %llu\n",
                   svc, (unsigned long long)gone);
}
