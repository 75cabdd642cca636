/* pool: the upstreams file is checked with clear messages, the default is a
 * pool of one, rendezvous order is sticky, weighted and moves only a
 * removed upstream's keys, and the cool-down skips, backs off and resets. */
#include "unit.h"

#include <math.h>

#include "../../common/pool.h"

static ccp_config base_cfg(void)
{
    ccp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_base_url = "https://api.anthropic.com";
    cfg.upstream_auth_style = CCP_AUTH_AUTO;
    cfg.access_count = 1; /* a server-held key is allowed */
    return cfg;
}

static ccp_pool *load_ok(const char *text, const ccp_config *cfg)
{
    ccp_pool *p = NULL;
    ccp_buf err = {0};
    int rc = ccp_pool_load_text(&p, text, strlen(text), "pool.json", "claude", cfg, &err);
    if (rc != CCP_OK) fprintf(stderr, "unexpected error: %s\n", ccp_buf_cstr(&err));
    assert_int_equal(rc, CCP_OK);
    assert_non_null(p);
    ccp_buf_free(&err);
    return p;
}

static size_t find(const ccp_pool *p, const char *name)
{
    for (size_t i = 0; i < ccp_pool_count(p); i++)
        if (strcmp(ccp_pool_at(p, i)->name, name) == 0) return i;
    fail_msg("no upstream %s", name);
    return 0;
}

static void test_pool_of_one(void **state)
{
    (void)state;
    ccp_config cfg = base_cfg();
    cfg.server_api_key = "sk-server";
    cfg.upstream_auth_style = CCP_AUTH_BEARER;
    ccp_pool *p = NULL;
    ccp_buf err = {0};
    assert_int_equal(ccp_pool_load(&p, "claude", &cfg, &err), CCP_OK);
    assert_int_equal(ccp_pool_count(p), 1);
    const ccp_pool_upstream *u = ccp_pool_at(p, 0);
    assert_string_equal(u->name, "default");
    assert_string_equal(u->base_url, "https://api.anthropic.com");
    assert_string_equal(u->api_key, "sk-server");
    assert_int_equal(u->auth_style, CCP_AUTH_BEARER);
    assert_int_equal(ccp_pool_max_attempts(p), 1);
    assert_true(ccp_pool_holds_keys(p));
    assert_false(ccp_pool_maps_models(p));
    size_t order[4];
    assert_int_equal(ccp_pool_order(p, "k", 1, "any-model", 1000, order, 4), 1);
    ccp_pool_free(p);

    /* A file without this service's section leaves it a pool of one. */
    cfg.server_api_key = NULL;
    p = load_ok("{\"codex\":[{\"name\":\"x\",\"base_url\":\"http://127.0.0.1:1\"}]}", &cfg);
    assert_int_equal(ccp_pool_count(p), 1);
    assert_string_equal(ccp_pool_at(p, 0)->name, "default");
    assert_null(ccp_pool_at(p, 0)->api_key);
    assert_false(ccp_pool_holds_keys(p));
    ccp_pool_free(p);
    ccp_buf_free(&err);
}

static void test_fields(void **state)
{
    (void)state;
    ccp_config cfg = base_cfg();
    setenv("CCP_UNIT_POOL_KEY", "sk-from-env", 1);
    ccp_pool *p = load_ok("{\"claude\":["
                          "{\"name\":\"a\",\"base_url\":\"https://u:pw@a.example/api/\",\"api_key\":\"env:CCP_UNIT_POOL_KEY\","
                          "\"weight\":3,\"priority\":2,\"models\":{\"claude-x\":\"up-x\",\"*\":\"*\"},"
                          "\"headers\":{\"x-tenant\":\"t1\"},\"auth_style\":\"bearer\"},"
                          "{\"name\":\"b\",\"base_url\":\"http://b.example\",\"api_key\":\"sk-literal\"},"
                          "{\"name\":\"c\",\"base_url\":\"http://c.example\",\"models\":{\"claude-y\":\"y2\"}}]}",
                          &cfg);
    assert_int_equal(ccp_pool_count(p), 3);
    assert_int_equal(ccp_pool_max_attempts(p), 3);
    const ccp_pool_upstream *a = ccp_pool_at(p, 0), *c = ccp_pool_at(p, 2);
    assert_string_equal(a->base_url, "https://u:pw@a.example/api");
    assert_string_equal(a->api_key, "sk-from-env");
    assert_string_equal(a->key_env, "CCP_UNIT_POOL_KEY");
    assert_int_equal(a->weight, 3);
    assert_int_equal(a->priority, 2);
    assert_int_equal(a->auth_style, CCP_AUTH_BEARER);
    assert_string_equal(ccp_headers_get(&a->headers, "x-tenant"), "t1");
    assert_true(ccp_pool_maps_models(p));

    const char *m;
    assert_true(ccp_pool_takes(a, "claude-x", &m));
    assert_string_equal(m, "up-x");
    assert_true(ccp_pool_takes(a, "claude-other", &m)); /* "*": "*" */
    assert_null(m);
    assert_true(ccp_pool_takes(c, "claude-y", &m));
    assert_string_equal(m, "y2");
    assert_false(ccp_pool_takes(c, "claude-x", &m));
    assert_true(ccp_pool_takes(c, NULL, &m)); /* no model: any upstream */

    /* Only a and b take claude-x... and c does not: the order routes by model. */
    size_t order[8];
    assert_int_equal(ccp_pool_order(p, "key", 3, "claude-x", 1000, order, 8), 2);
    assert_int_equal(order[0], 0); /* priority 2 first */
    assert_int_equal(ccp_pool_order(p, "key", 3, "claude-y", 1000, order, 8), 3);
    assert_int_equal(ccp_pool_order(p, "key", 3, "nobody-has-it", 1000, order, 1), 1);

    /* Descriptions never show a key, a URL's credentials or a header value. */
    ccp_buf d = {0};
    ccp_pool_describe_config(p, &d);
    ccp_pool_describe(p, 1000, &d);
    const char *text = ccp_buf_cstr(&d);
    assert_null(strstr(text, "sk-from-env"));
    assert_null(strstr(text, "sk-literal"));
    assert_null(strstr(text, "pw@"));
    assert_null(strstr(text, "t1"));
    assert_non_null(strstr(text, "env:CCP_UNIT_POOL_KEY (***)"));
    assert_non_null(strstr(text, "\"x-tenant\""));
    assert_non_null(strstr(text, "https://***@a.example/api"));
    assert_non_null(strstr(text, "\"key\":\"server\""));
    assert_non_null(strstr(text, "\"key\":\"client\""));
    ccp_buf_free(&d);
    ccp_pool_free(p);
    unsetenv("CCP_UNIT_POOL_KEY");
}

#define ONE(extra) "{\"claude\":[{\"name\":\"a\",\"base_url\":\"http://a.example\"" extra "}]}"

static void test_bad_files(void **state)
{
    (void)state;
    unsetenv("CCP_UNIT_POOL_MISSING");
    static const struct {
        const char *what, *text, *want[3];
    } cases[] = {
        {"not JSON", "{\"claude\":[", {"pool.json", "not valid JSON"}},
        {"top level a list", "[]", {"pool.json", "top level must be an object"}},
        {"unknown top key", "{\"claud\":[]}", {"top level", "\"claud\""}},
        {"section not a list", "{\"claude\":{}}", {"\"claude\" must be a list of 1 to"}},
        {"empty section", "{\"claude\":[]}", {"\"claude\" must be a list of 1 to"}},
        {"upstream not an object", "{\"claude\":[3]}", {"claude upstream #1", "must be an object"}},
        {"no name", "{\"claude\":[{\"base_url\":\"http://a\"}]}", {"upstream #1", "\"name\" is required"}},
        {"bad name", "{\"claude\":[{\"name\":\"a b\",\"base_url\":\"http://a\"}]}", {"upstream #1", "\"name\""}},
        {"no base_url", "{\"claude\":[{\"name\":\"a\"}]}", {"upstream \"a\"", "\"base_url\" is required"}},
        {"bad base_url", "{\"claude\":[{\"name\":\"a\",\"base_url\":\"ftp://a\"}]}", {"upstream \"a\"", "base_url"}},
        {"url with query", "{\"claude\":[{\"name\":\"a\",\"base_url\":\"http://a/?x=1\"}]}", {"upstream \"a\"", "no query"}},
        {"unknown field", ONE(",\"wieght\":2"), {"upstream \"a\"", "\"wieght\""}},
        {"weight zero", ONE(",\"weight\":0"), {"upstream \"a\"", "\"weight\""}},
        {"weight a string", ONE(",\"weight\":\"2\""), {"upstream \"a\"", "\"weight\""}},
        {"priority a float", ONE(",\"priority\":1.5"), {"upstream \"a\"", "\"priority\""}},
        {"models a list", ONE(",\"models\":[]"), {"upstream \"a\"", "\"models\""}},
        {"models empty", ONE(",\"models\":{}"), {"upstream \"a\"", "\"models\""}},
        {"model to a number", ONE(",\"models\":{\"x\":1}"), {"upstream \"a\"", "\"x\" must map"}},
        {"headers a list", ONE(",\"headers\":[]"), {"upstream \"a\"", "\"headers\""}},
        {"header bad name", ONE(",\"headers\":{\"a b\":\"v\"}"), {"upstream \"a\"", "not a header name"}},
        {"header auth", ONE(",\"headers\":{\"Authorization\":\"v\"}"), {"upstream \"a\"", "api_key"}},
        {"header value lines", ONE(",\"headers\":{\"x-a\":\"v\\r\\nx: y\"}"), {"upstream \"a\"", "one line"}},
        {"auth_style", ONE(",\"auth_style\":\"basic\""), {"upstream \"a\"", "auth_style"}},
        {"key empty", ONE(",\"api_key\":\"\""), {"upstream \"a\"", "api_key"}},
        {"key two lines", ONE(",\"api_key\":\"sk\\nx\""), {"upstream \"a\"", "one line"}},
        {"env: without name", ONE(",\"api_key\":\"env:\""), {"upstream \"a\"", "must name"}},
        {"env: unset", ONE(",\"api_key\":\"env:CCP_UNIT_POOL_MISSING\""),
         {"upstream \"a\"", "CCP_UNIT_POOL_MISSING", "not set"}},
        {"duplicate name",
         "{\"claude\":[{\"name\":\"a\",\"base_url\":\"http://a\"},{\"name\":\"A\",\"base_url\":\"http://b\"}]}",
         {"upstream #2", "\"A\" is taken by upstream #1"}},
    };
    ccp_config cfg = base_cfg();
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_pool *p = (ccp_pool *)1;
        ccp_buf err = {0};
        int rc = ccp_pool_load_text(&p, cases[i].text, strlen(cases[i].text), "pool.json", "claude", &cfg, &err);
        if (rc != CCP_ERR) fail_msg("%s: loaded", cases[i].what);
        assert_null(p);
        for (size_t k = 0; k < 3 && cases[i].want[k]; k++)
            if (!strstr(ccp_buf_cstr(&err), cases[i].want[k]))
                fail_msg("%s: message %s lacks %s", cases[i].what, ccp_buf_cstr(&err), cases[i].want[k]);
        ccp_buf_free(&err);
    }
    /* A key given out to anyone: the server key's rule, per upstream. */
    cfg.access_count = 0;
    ccp_pool *p = NULL;
    ccp_buf err = {0};
    const char *t = ONE(",\"api_key\":\"sk-secret-value\"");
    assert_int_equal(ccp_pool_load_text(&p, t, strlen(t), "pool.json", "claude", &cfg, &err), CCP_ERR);
    assert_non_null(strstr(ccp_buf_cstr(&err), "ACCESS_KEYS"));
    assert_null(strstr(ccp_buf_cstr(&err), "sk-secret-value"));
    ccp_buf_free(&err);
    /* A missing file names the variable and the path. */
    cfg.upstreams_file = "/nonexistent/pool.json";
    assert_int_equal(ccp_pool_load(&p, "claude", &cfg, &err), CCP_ERR);
    assert_non_null(strstr(ccp_buf_cstr(&err), "UPSTREAMS_FILE=/nonexistent/pool.json"));
    ccp_buf_free(&err);
}

/* The pool a, b, c, ... of n equal upstreams (weights from w when given). */
static ccp_pool *pool_of(size_t n, const long *w, const char *skip)
{
    ccp_buf t = {0};
    ccp_buf_append_str(&t, "{\"claude\":[");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        char name[8];
        snprintf(name, sizeof name, "u%zu", i);
        if (skip && strcmp(skip, name) == 0) continue;
        ccp_buf_printf(&t, "%s{\"name\":\"%s\",\"base_url\":\"http://%s.example\",\"weight\":%ld}", first ? "" : ",",
                       name, name, w ? w[i] : 1L);
        first = false;
    }
    ccp_buf_append_str(&t, "]}");
    ccp_config cfg = base_cfg();
    ccp_pool *p = load_ok(t.data, &cfg);
    ccp_buf_free(&t);
    return p;
}

static const char *winner(const ccp_pool *p, size_t key)
{
    char k[32];
    snprintf(k, sizeof k, "client-%zu", key);
    size_t order[CCP_POOL_MAX];
    assert_true(ccp_pool_order(p, k, strlen(k), NULL, 1000, order, CCP_POOL_MAX) >= 1);
    return ccp_pool_at(p, order[0])->name;
}

#define KEYS 20000

static void test_removal_moves_only_its_keys(void **state)
{
    (void)state;
    ccp_pool *all = pool_of(5, NULL, NULL), *without = pool_of(5, NULL, "u2"), *again = pool_of(5, NULL, NULL);
    size_t moved = 0, owned = 0;
    for (size_t k = 0; k < KEYS; k++) {
        const char *before = winner(all, k), *after = winner(without, k);
        /* The same key goes to the same upstream from any pool built alike. */
        assert_string_equal(before, winner(again, k));
        if (strcmp(before, "u2") == 0) {
            owned++;
            assert_string_not_equal(after, "u2");
        } else {
            if (strcmp(before, after) != 0) moved++;
        }
    }
    assert_int_equal(moved, 0);
    /* u2 had about a fifth of the keys (a generous bound). */
    assert_true(owned > KEYS / 10 && owned < KEYS * 3 / 10);
    ccp_pool_free(all);
    ccp_pool_free(without);
    ccp_pool_free(again);
}

static void test_weights_honoured(void **state)
{
    (void)state;
    static const long w[] = {1, 2, 5};
    ccp_pool *p = pool_of(3, w, NULL);
    size_t got[3] = {0};
    for (size_t k = 0; k < KEYS; k++) got[winner(p, k)[1] - '0']++;
    for (size_t i = 0; i < 3; i++) {
        double want = KEYS * (double)w[i] / 8.0;
        /* within 15% of the weight's share: far outside chance at 20,000 keys */
        if (fabs((double)got[i] - want) > 0.15 * want)
            fail_msg("u%zu: %zu of %d keys, weight share %.0f", i, got[i], KEYS, want);
    }
    ccp_pool_free(p);
}

static void test_score_form(void **state)
{
    (void)state;
    ccp_pool *p = pool_of(2, (const long[]){1, 4}, NULL);
    uint64_t h = ccp_pool_key_hash("k", 1);
    double s0 = ccp_pool_score(ccp_pool_at(p, 0), h), s1 = ccp_pool_score(ccp_pool_at(p, 1), h);
    assert_true(s0 > 0 && isfinite(s0) && s1 > 0 && isfinite(s1));
    assert_true(ccp_pool_key_hash("k", 1) != ccp_pool_key_hash("l", 1));
    ccp_pool_free(p);
}

static void test_priority_groups(void **state)
{
    (void)state;
    ccp_config cfg = base_cfg();
    ccp_pool *p = load_ok("{\"claude\":[{\"name\":\"low\",\"base_url\":\"http://l\",\"priority\":-1,\"weight\":1000},"
                          "{\"name\":\"hi1\",\"base_url\":\"http://h1\",\"priority\":5},"
                          "{\"name\":\"hi2\",\"base_url\":\"http://h2\",\"priority\":5}]}",
                          &cfg);
    size_t order[3];
    for (int k = 0; k < 200; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        assert_int_equal(ccp_pool_order(p, key, strlen(key), NULL, 1000, order, 3), 3);
        assert_int_equal(ccp_pool_at(p, order[2])->priority, -1); /* the lower group only after the higher */
        assert_int_equal(ccp_pool_at(p, order[0])->priority, 5);
    }
    /* With both of the higher group cooling, the lower one is first. */
    ccp_pool_failed(p, find(p, "hi1"), -1, 1000);
    ccp_pool_failed(p, find(p, "hi2"), -1, 1000);
    assert_int_equal(ccp_pool_order(p, "x", 1, NULL, 1500, order, 3), 1);
    assert_string_equal(ccp_pool_at(p, order[0])->name, "low");
    ccp_pool_free(p);
}

static void test_cool_down(void **state)
{
    (void)state;
    ccp_pool *p = pool_of(2, NULL, NULL);
    size_t a = 0, b = 1, order[2];
    long long t = 10000;
    /* 1 s, doubling per failure in a row, at most 60 s. */
    ccp_pool_failed(p, a, -1, t);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 1000);
    ccp_pool_failed(p, a, -1, t);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 2000);
    ccp_pool_failed(p, a, -1, t);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 4000);
    for (int i = 0; i < 10; i++) ccp_pool_failed(p, a, -1, t);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 60000);
    /* Cooling: skipped, whatever the key prefers. */
    for (int k = 0; k < 50; k++) {
        char key[8];
        snprintf(key, sizeof key, "%d", k);
        assert_int_equal(ccp_pool_order(p, key, strlen(key), NULL, t + 1, order, 2), 1);
        assert_int_equal(order[0], b);
    }
    /* Every one cooling: all, least recently failed first. */
    ccp_pool_failed(p, b, 5000, t + 10);
    assert_int_equal(ccp_pool_cooling_ms(p, b, t + 10), 5000); /* retry-after given */
    assert_int_equal(ccp_pool_order(p, "k", 1, NULL, t + 20, order, 2), 2);
    assert_int_equal(order[0], a);
    assert_int_equal(order[1], b);
    /* A success ends the cool-down and the backoff starts over. */
    ccp_pool_succeeded(p, a);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 0);
    ccp_pool_failed(p, a, -1, t);
    assert_int_equal(ccp_pool_cooling_ms(p, a, t), 1000);
    /* Cool-down ends by itself. */
    assert_int_equal(ccp_pool_cooling_ms(p, a, t + 1000), 0);
    ccp_buf d = {0};
    ccp_pool_describe(p, t + 20, &d);
    assert_non_null(strstr(ccp_buf_cstr(&d), "\"state\":\"cooling\""));
    json_object *j = json_tokener_parse(ccp_buf_cstr(&d));
    assert_non_null(j);
    json_object_put(j);
    ccp_buf_free(&d);
    ccp_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_of_one),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_removal_moves_only_its_keys),
        cmocka_unit_test(test_weights_honoured),
        cmocka_unit_test(test_score_form),
        cmocka_unit_test(test_priority_groups),
        cmocka_unit_test(test_cool_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
