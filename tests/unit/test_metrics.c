/* test_metrics: the shared counters. Threads adding at once give exact
 * totals; two handles on one file (as two processes) and a child process
 * that dies without closing all add up in one scrape; label tables stay
 * bounded; the exposition text is well formed. */
#include "unit.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "../../common/metrics.h"

static const char *const ROUTES[] = {"/v1/messages", "/health", "/", "/", "/metrics"};

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/ccp-unit-metrics-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    unlink(path); /* the segment creates it */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static ccp_metrics *open_at(const char *p)
{
    ccp_metrics *m = NULL;
    ccp_buf err = {0};
    if (ccp_metrics_open(&m, p, "claude-service", "9.9.9", ROUTES, UNIT_COUNT(ROUTES), &err) != CCP_OK)
        print_error("open: %s\n", err.data);
    ccp_buf_free(&err);
    assert_non_null(m);
    return m;
}

/* The value of the sample line that starts with series (name{labels}). */
static long long sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return atoll(p + n + 1);
    return -1;
}

static void render(ccp_metrics *m, ccp_buf *out)
{
    ccp_buf_reset(out);
    ccp_metrics_render(m, out);
}

#define THREADS 4
#define PER_THREAD 20000

typedef struct worker_arg {
    ccp_metrics *m;
    int n;
} worker_arg;

static void *hammer(void *arg)
{
    worker_arg *w = arg;
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    u.seen = true;
    u.tokens[CCP_TOKENS_INPUT] = 3;
    u.tokens[CCP_TOKENS_OUTPUT] = 5;
    int adapter = ccp_metrics_adapter(w->m, "cherry_studio");
    for (int i = 0; i < w->n; i++) {
        ccp_metrics_active(w->m, 1);
        ccp_metrics_request(w->m, 0, adapter, i % 2 ? 200 : 500, 1000000);
        ccp_metrics_tokens(w->m, ccp_metrics_model(w->m, i % 2 ? "claude-a" : "claude-b"), &u);
        ccp_metrics_upstream_error(w->m, ccp_metrics_upstream(w->m, "default"), CCP_UPERR_TIMEOUT);
        ccp_metrics_active(w->m, -1);
    }
    return NULL;
}

static void test_threads_give_exact_totals(void **state)
{
    (void)state;
    ccp_metrics *m = open_at(path);
    pthread_t t[THREADS];
    worker_arg a = {m, PER_THREAD};
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, &a), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    ccp_buf out = {0};
    render(m, &out);
    const long long half = THREADS * PER_THREAD / 2;
    assert_int_equal(sample(out.data, "ccproxy_requests_total{service=\"claude-service\",route=\"/v1/messages\","
                                      "adapter=\"cherry_studio\",status=\"200\"}"),
                     half);
    assert_int_equal(sample(out.data, "ccproxy_requests_total{service=\"claude-service\",route=\"/v1/messages\","
                                      "adapter=\"cherry_studio\",status=\"500\"}"),
                     half);
    assert_int_equal(
        sample(out.data, "ccproxy_tokens_total{service=\"claude-service\",model=\"claude-a\",kind=\"input\"}"), 3 * half);
    assert_int_equal(
        sample(out.data, "ccproxy_tokens_total{service=\"claude-service\",model=\"claude-b\",kind=\"output\"}"), 5 * half);
    assert_int_equal(sample(out.data, "ccproxy_upstream_errors_total{service=\"claude-service\",upstream=\"default\","
                                      "kind=\"timeout\"}"),
                     2 * half);
    assert_int_equal(sample(out.data, "ccproxy_request_duration_seconds_count{service=\"claude-service\","
                                      "route=\"/v1/messages\"}"),
                     2 * half);
    /* 1 ms each: every one in the 0.001.. buckets from le="0.005" up. */
    assert_int_equal(sample(out.data, "ccproxy_request_duration_seconds_bucket{service=\"claude-service\","
                                      "route=\"/v1/messages\",le=\"0.005\"}"),
                     2 * half);
    assert_int_equal(sample(out.data, "ccproxy_active_streams{service=\"claude-service\"}"), 0);
    assert_int_equal(sample(out.data, "ccproxy_build_info{service=\"claude-service\",version=\"9.9.9\"}"), 1);
    ccp_buf_free(&out);
    ccp_metrics_close(m);
    /* The last process gone: the file is removed. */
    assert_int_equal(access(path, F_OK), -1);
}

static void test_two_processes_and_a_dead_one_add_up(void **state)
{
    (void)state;
    ccp_metrics *a = open_at(path), *b = open_at(path);
    ccp_metrics_request(a, 1, ccp_metrics_adapter(a, NULL), 200, 5);
    ccp_metrics_request(b, 1, ccp_metrics_adapter(b, NULL), 200, 5);
    ccp_metrics_active(b, 2);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* Another process: counts, holds a stream open, and dies without closing. */
        ccp_metrics *c = NULL;
        ccp_buf err = {0};
        if (ccp_metrics_open(&c, path, "claude-service", "9.9.9", ROUTES, UNIT_COUNT(ROUTES), &err) != CCP_OK)
            _exit(3);
        for (int i = 0; i < 7; i++) ccp_metrics_request(c, 1, ccp_metrics_adapter(c, NULL), 200, 5);
        ccp_metrics_active(c, 5);
        ccp_metrics_client_disconnect(c);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ccp_buf out = {0};
    render(a, &out);
    const char *health = "ccproxy_requests_total{service=\"claude-service\",route=\"/health\",adapter=\"none\","
                         "status=\"200\"}";
    assert_int_equal(sample(out.data, health), 9);
    assert_int_equal(sample(out.data, "ccproxy_client_disconnects_total{service=\"claude-service\"}"), 1);
    /* The dead one's open streams are not open. */
    assert_int_equal(sample(out.data, "ccproxy_active_streams{service=\"claude-service\"}"), 2);
    assert_int_equal(sample(out.data, "ccproxy_processes{service=\"claude-service\"}"), 2);

    /* A restarted process takes a slot and the counts only grow. */
    ccp_metrics_close(b);
    ccp_metrics *c = open_at(path);
    ccp_metrics_request(c, 1, ccp_metrics_adapter(c, NULL), 200, 5);
    render(c, &out);
    assert_int_equal(sample(out.data, health), 10);
    assert_int_equal(sample(out.data, "ccproxy_active_streams{service=\"claude-service\"}"), 0);
    ccp_buf_free(&out);
    ccp_metrics_close(c);
    ccp_metrics_close(a);
}

static void test_routes_merge_by_pattern_and_unknown_is_other(void **state)
{
    (void)state;
    ccp_metrics *m = open_at(NULL);
    ccp_metrics_request(m, 2, ccp_metrics_adapter(m, NULL), 200, 1); /* GET / */
    ccp_metrics_request(m, 3, ccp_metrics_adapter(m, NULL), 200, 1); /* HEAD / */
    ccp_metrics_request(m, -1, ccp_metrics_adapter(m, NULL), 404, 1);
    ccp_metrics_request(m, 99, ccp_metrics_adapter(m, "bad label\""), 7, 1);
    ccp_buf out = {0};
    render(m, &out);
    assert_int_equal(
        sample(out.data, "ccproxy_requests_total{service=\"claude-service\",route=\"/\",adapter=\"none\",status=\"200\"}"),
        2);
    assert_int_equal(unit_count_str(out.data, "route=\"/\",adapter"), 1);
    assert_int_equal(sample(out.data, "ccproxy_requests_total{service=\"claude-service\",route=\"other\","
                                      "adapter=\"none\",status=\"404\"}"),
                     1);
    assert_int_equal(sample(out.data, "ccproxy_requests_total{service=\"claude-service\",route=\"other\","
                                      "adapter=\"other\",status=\"other\"}"),
                     1);
    assert_int_equal(sample(out.data, "ccproxy_request_duration_seconds_count{service=\"claude-service\","
                                      "route=\"other\"}"),
                     2);
    ccp_buf_free(&out);
    ccp_metrics_close(m);
}

static void test_models_are_bounded(void **state)
{
    (void)state;
    ccp_metrics *m = open_at(NULL);
    ccp_usage u;
    ccp_usage_init(&u, CCP_USAGE_MESSAGES);
    u.seen = true;
    u.tokens[CCP_TOKENS_INPUT] = 1;
    char name[32];
    for (int i = 0; i < CCP_METRICS_MODELS + 20; i++) {
        snprintf(name, sizeof name, "model-%03d", i);
        ccp_metrics_tokens(m, ccp_metrics_model(m, name), &u);
    }
    /* A name that could carry anything odd is never a label. */
    ccp_metrics_tokens(m, ccp_metrics_model(m, "sk-ant x\"y"), &u);
    ccp_metrics_tokens(m, ccp_metrics_model(m, NULL), &u);
    ccp_buf out = {0};
    render(m, &out);
    assert_int_equal(unit_count_str(out.data, ",kind=\"input\"}"), CCP_METRICS_MODELS + 1);
    assert_int_equal(sample(out.data, "ccproxy_tokens_total{service=\"claude-service\",model=\"model-099\",kind=\"input\"}"), 1);
    assert_int_equal(sample(out.data, "ccproxy_tokens_total{service=\"claude-service\",model=\"model-100\",kind=\"input\"}"), -1);
    assert_int_equal(sample(out.data, "ccproxy_tokens_total{service=\"claude-service\",model=\"other\",kind=\"input\"}"), 22);
    assert_null(strstr(out.data, "sk-ant"));
    ccp_buf_free(&out);
    ccp_metrics_close(m);
}

static void test_exposition_is_well_formed(void **state)
{
    (void)state;
    ccp_metrics *m = open_at(NULL);
    ccp_metrics_request(m, 0, ccp_metrics_adapter(m, "default"), 200, 2500000000LL);
    ccp_metrics_ttfb(m, ccp_metrics_upstream(m, "default"), 300000000LL);
    ccp_buf out = {0};
    render(m, &out);
    /* Every line: a comment, or name{labels} value. */
    for (const char *p = out.data; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (*p != '#') {
            const char *brace = memchr(p, '{', (size_t)(nl - p)), *space = memchr(p, ' ', (size_t)(nl - p));
            assert_non_null(space);
            if (brace && brace < space) assert_non_null(memchr(brace, '}', (size_t)(space - brace)));
        }
        p = nl + 1;
    }
    assert_int_equal(sample(out.data, "ccproxy_request_duration_seconds_bucket{service=\"claude-service\","
                                      "route=\"/v1/messages\",le=\"1\"}"),
                     0);
    assert_int_equal(sample(out.data, "ccproxy_request_duration_seconds_bucket{service=\"claude-service\","
                                      "route=\"/v1/messages\",le=\"2.5\"}"),
                     1);
    assert_int_equal(sample(out.data, "ccproxy_upstream_ttfb_seconds_bucket{service=\"claude-service\","
                                      "upstream=\"default\",le=\"+Inf\"}"),
                     1);
    assert_non_null(strstr(out.data, "ccproxy_upstream_ttfb_seconds_sum{service=\"claude-service\",upstream=\"default\"} 0.3"));
    assert_non_null(strstr(out.data, "# TYPE ccproxy_requests_total counter\n"));
    assert_non_null(strstr(out.data, "process_start_time_seconds "));
    ccp_buf_free(&out);
    ccp_metrics_close(m);
}

static void test_a_file_of_another_service_or_kind_is_refused(void **state)
{
    (void)state;
    ccp_metrics *m = open_at(path), *other = NULL;
    ccp_buf err = {0};
    assert_int_equal(ccp_metrics_open(&other, path, "codex-service", "1", ROUTES, 1, &err), CCP_ERR);
    assert_null(other);
    assert_non_null(strstr(err.data, "claude-service"));
    ccp_buf_reset(&err);
    assert_int_equal(ccp_metrics_open(&other, "/", "claude-service", "1", ROUTES, 1, &err), CCP_ERR);
    ccp_buf_reset(&err);
    assert_int_equal(ccp_metrics_open(&other, "/nonexistent-dir/x.metrics", "claude-service", "1", ROUTES, 1, &err),
                     CCP_ERR);
    assert_non_null(strstr(err.data, "cannot be opened"));
    ccp_buf_free(&err);
    ccp_metrics_close(m);

    /* A stale file of another layout (or garbage) is rebuilt, not read. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("garbage", f);
    fclose(f);
    m = open_at(path);
    ccp_buf out = {0};
    render(m, &out);
    assert_non_null(strstr(out.data, "ccproxy_processes{service=\"claude-service\"} 1"));
    ccp_buf_free(&out);
    ccp_metrics_close(m);
}

static void test_default_path_names_the_socket(void **state)
{
    (void)state;
    ccp_buf a = {0}, b = {0};
    assert_int_equal(ccp_metrics_default_path(-1, "ccproxy-claude", &a), CCP_ERR);
    int s1 = socket(AF_UNIX, SOCK_STREAM, 0), s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un u1 = {.sun_family = AF_UNIX}, u2 = {.sun_family = AF_UNIX};
    snprintf(u1.sun_path, sizeof u1.sun_path, "%s.sock-0", path);
    snprintf(u2.sun_path, sizeof u2.sun_path, "%s.sock-1", path);
    assert_int_equal(bind(s1, (struct sockaddr *)&u1, sizeof u1), 0);
    assert_int_equal(bind(s2, (struct sockaddr *)&u2, sizeof u2), 0);
    assert_int_equal(ccp_metrics_default_path(s1, "ccproxy-claude", &a), CCP_OK);
    assert_int_equal(ccp_metrics_default_path(s2, "ccproxy-claude", &b), CCP_OK);
    /* lighttpd's per-process sockets of one name share one file. */
    assert_string_equal(a.data, b.data);
    assert_non_null(strstr(a.data, "ccproxy-claude-"));
    unlink(u1.sun_path);
    unlink(u2.sun_path);
    close(s1);
    close(s2);
    ccp_buf_free(&a);
    ccp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threads_give_exact_totals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes_and_a_dead_one_add_up, setup, teardown),
        cmocka_unit_test(test_routes_merge_by_pattern_and_unknown_is_other),
        cmocka_unit_test(test_models_are_bounded),
        cmocka_unit_test(test_exposition_is_well_formed),
        cmocka_unit_test_setup_teardown(test_a_file_of_another_service_or_kind_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_path_names_the_socket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
