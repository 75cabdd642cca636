/* session: derived rotating ids (ccp_session_derive, ccp_session_window) and
 * the session step (shapes, metadata.user_id, prompt_cache_key, headers,
 * SESSION_SECRET, parameters).
 *
 * Times are fixed Unix seconds (UTC): 1767225600 is 2026-01-01T00:00:00Z,
 * 1767268800 is 12:00 that day, 1767312000 is 2026-01-02T00:00:00Z. The known
 * answers were computed independently (Python hmac/hashlib) from the
 * construction session.h documents. */
#include "unit.h"

#include <ctype.h>
#include <json-c/json.h>
#include <sys/wait.h>
#include <time.h>

#include "../../common/adapter.h"
#include "../../common/config.h"
#include "../../common/session.h"
#include "../../common/steps.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define H12 (12L * 3600)
#define H24 (24L * 3600)
#define JAN1 ((time_t)1767225600)
#define JAN1_NOON ((time_t)1767268800)
#define JAN2 ((time_t)1767312000)

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return false;
    return true;
}

/* RFC 4122 version 4: 8-4-4-4-12 lower-case hex, version nibble 4, variant 10xx. */
static bool is_uuid4(const char *u)
{
    if (strlen(u) != 36) return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !is_hex(u + i, 1)) return false;
    }
    return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

/* ---- ccp_session_window ------------------------------------------------------ */

static void test_window_index(void **state)
{
    (void)state;
    static const struct {
        time_t now;
        long secs;
        long long want;
    } cases[] = {
        {0, H12, 0},
        {H12 - 1, H12, 0},
        {H12, H12, 1},
        {JAN1 - 1, H12, 40907},
        {JAN1, H12, 40908},
        {JAN1_NOON - 1, H12, 40908},
        {JAN1_NOON, H12, 40909},
        {JAN2 - 1, H12, 40909},
        {JAN2, H12, 40910},
        {JAN1, H24, 20454},
        {JAN1_NOON, H24, 20454},
        {JAN2 - 1, H24, 20454},
        {JAN2, H24, 20455},
        {-1, H12, -1}, /* floor, not truncation */
        {-H12, H12, -1},
        {-H12 - 1, H12, -2},
        {59, 60, 0},
        {60, 60, 1},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        long long got = ccp_session_window(cases[i].now, cases[i].secs);
        if (got != cases[i].want)
            print_error("window(%lld, %ld) = %lld, want %lld\n", (long long)cases[i].now, cases[i].secs, got,
                        cases[i].want);
        assert_true(got == cases[i].want);
    }
}

/* ---- ccp_session_derive ---------------------------------------------------------- */

static void test_known_answers(void **state)
{
    (void)state;
    ccp_session_ids ids;
    ccp_session_derive("sk-test", NULL, "claude-session", H12, JAN1, &ids);
    assert_string_equal(ids.session_uuid, "0d4e85e7-c5d3-4cab-a01d-c2d0c3485f67");
    assert_string_equal(ids.device_hex, "848879694e014447373fdc1ccc73479b8659f086b9e4dad215d95b6be1a41ba6");
    ccp_session_derive("sk-test", "s3cret", "claude-session", H12, JAN1, &ids);
    assert_string_equal(ids.session_uuid, "1ef4f551-9ebb-49f5-bd11-e579871e41f1");
    assert_string_equal(ids.device_hex, "5a284b150c72b27632813e189b8d6438d79cbf9d2f22d362cebea529347234a2");
}

typedef struct derive_case {
    const char *name;
    const char *key_a, *secret_a, *purpose_a;
    long win_a;
    time_t t_a;
    const char *key_b, *secret_b, *purpose_b;
    long win_b;
    time_t t_b;
    bool same_session; /* session uuids equal */
    bool same_device;  /* device ids equal */
} derive_case;

static const derive_case derive_cases[] = {
    {"same key, same instant", "sk-a", NULL, "p", H12, JAN1, "sk-a", NULL, "p", H12, JAN1, true, true},
    {"same key, same 12 h window", "sk-a", NULL, "p", H12, JAN1, "sk-a", NULL, "p", H12, JAN1_NOON - 1, true, true},
    {"12 h: changes at 00:00 UTC", "sk-a", NULL, "p", H12, JAN1 - 1, "sk-a", NULL, "p", H12, JAN1, false, true},
    {"12 h: changes at 12:00 UTC", "sk-a", NULL, "p", H12, JAN1_NOON - 1, "sk-a", NULL, "p", H12, JAN1_NOON, false,
     true},
    {"12 h: same after noon until midnight", "sk-a", NULL, "p", H12, JAN1_NOON, "sk-a", NULL, "p", H12, JAN2 - 1,
     true, true},
    {"24 h: same across noon", "sk-a", NULL, "p", H24, JAN1_NOON - 1, "sk-a", NULL, "p", H24, JAN1_NOON, true, true},
    {"24 h: same all day", "sk-a", NULL, "p", H24, JAN1, "sk-a", NULL, "p", H24, JAN2 - 1, true, true},
    {"24 h: changes at 00:00 UTC", "sk-a", NULL, "p", H24, JAN2 - 1, "sk-a", NULL, "p", H24, JAN2, false, true},
    {"different keys", "sk-a", NULL, "p", H12, JAN1, "sk-b", NULL, "p", H12, JAN1, false, false},
    {"keys differing in the last byte", "sk-ant-api03-xxxxxxxx1", NULL, "p", H12, JAN1, "sk-ant-api03-xxxxxxxx2",
     NULL, "p", H12, JAN1, false, false},
    {"different purposes", "sk-a", NULL, "claude-session", H12, JAN1, "sk-a", NULL, "codex-session", H12, JAN1,
     false, false},
    {"SESSION_SECRET changes ids", "sk-a", NULL, "p", H12, JAN1, "sk-a", "secret", "p", H12, JAN1, false, false},
    {"different secrets", "sk-a", "one", "p", H12, JAN1, "sk-a", "two", "p", H12, JAN1, false, false},
    {"empty secret is no secret", "sk-a", NULL, "p", H12, JAN1, "sk-a", "", "p", H12, JAN1, true, true},
    {"same secret, same ids", "sk-a", "s", "p", H12, JAN1, "sk-a", "s", "p", H12, JAN1, true, true},
    {"12 h vs 24 h windows differ in index", "sk-a", NULL, "p", H12, JAN1, "sk-a", NULL, "p", H24, JAN1, false,
     true},
};

static void test_derive_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(derive_cases); i++) {
        const derive_case *c = &derive_cases[i];
        ccp_session_ids a, b;
        memset(&a, 0x5a, sizeof a);
        memset(&b, 0x5a, sizeof b);
        ccp_session_derive(c->key_a, c->secret_a, c->purpose_a, c->win_a, c->t_a, &a);
        ccp_session_derive(c->key_b, c->secret_b, c->purpose_b, c->win_b, c->t_b, &b);
        bool ss = strcmp(a.session_uuid, b.session_uuid) == 0, sd = strcmp(a.device_hex, b.device_hex) == 0;
        if (ss != c->same_session || sd != c->same_device) {
            print_error("case \"%s\": session %s/%s (same %d, want %d), device same %d, want %d\n", c->name,
                        a.session_uuid, b.session_uuid, (int)ss, (int)c->same_session, (int)sd, (int)c->same_device);
            failures++;
        }
        const ccp_session_ids *both[] = {&a, &b};
        for (int k = 0; k < 2; k++) {
            if (!is_uuid4(both[k]->session_uuid)) {
                print_error("case \"%s\": %s is not an RFC 4122 v4 uuid\n", c->name, both[k]->session_uuid);
                failures++;
            }
            if (strlen(both[k]->device_hex) != 64 || !is_hex(both[k]->device_hex, 64)) {
                print_error("case \"%s\": device %s is not 64 lower-case hex\n", c->name, both[k]->device_hex);
                failures++;
            }
        }
    }
    assert_int_equal(failures, 0);
}

/* A long secret (> 256 bytes) is folded to its digest: still deterministic,
 * and two long secrets that differ only at the end still differ. */
static void test_long_secrets(void **state)
{
    (void)state;
    char s1[400], s2[400];
    memset(s1, 'x', sizeof s1 - 1);
    s1[sizeof s1 - 1] = 0;
    memcpy(s2, s1, sizeof s2);
    s2[sizeof s2 - 2] = 'y';
    ccp_session_ids a, b, c;
    ccp_session_derive("sk-a", s1, "p", H12, JAN1, &a);
    ccp_session_derive("sk-a", s1, "p", H12, JAN1, &b);
    ccp_session_derive("sk-a", s2, "p", H12, JAN1, &c);
    assert_string_equal(a.session_uuid, b.session_uuid);
    assert_string_equal(a.device_hex, b.device_hex);
    assert_string_not_equal(a.session_uuid, c.session_uuid);
    assert_string_not_equal(a.device_hex, c.device_hex);
    assert_true(is_uuid4(a.session_uuid));
}

/* Many windows and keys: every uuid is v4-shaped and they are all distinct. */
static void test_uuids_shape_and_spread(void **state)
{
    (void)state;
    enum { N = 200 };
    static char seen[N][CCP_SESSION_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        ccp_session_ids ids;
        char key[32];
        snprintf(key, sizeof key, "sk-%d", i % 7);
        ccp_session_derive(key, NULL, "claude-session", H12, JAN1 + (time_t)(i / 7) * H12, &ids);
        assert_true(is_uuid4(ids.session_uuid));
        for (int j = 0; j < i; j++) assert_string_not_equal(seen[j], ids.session_uuid);
        memcpy(seen[i], ids.session_uuid, sizeof seen[i]);
    }
}

/* Another process computes the same ids for the same key and window, and
 * different ones for another key: nothing is shared but the inputs. */
static void derive_in_child(const char *key, const char *secret, time_t now, ccp_session_ids *out)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ccp_session_ids ids;
        ccp_session_derive(key, secret, "claude-session", H12, now, &ids);
        ssize_t n = write(fds[1], &ids, sizeof ids);
        _exit(n == (ssize_t)sizeof ids ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof *out) {
        ssize_t n = read(fds[0], (char *)out + got, sizeof *out - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got, sizeof *out);
}

static void test_same_ids_in_other_processes(void **state)
{
    (void)state;
    time_t now = time(NULL);
    ccp_session_ids mine, c1, c2, other;
    ccp_session_derive("sk-proc", "sec", "claude-session", H12, now, &mine);
    derive_in_child("sk-proc", "sec", now, &c1);
    derive_in_child("sk-proc", "sec", now, &c2);
    derive_in_child("sk-proc-2", "sec", now, &other);
    assert_string_equal(c1.session_uuid, mine.session_uuid);
    assert_string_equal(c1.device_hex, mine.device_hex);
    assert_string_equal(c2.session_uuid, mine.session_uuid);
    assert_string_equal(c2.device_hex, mine.device_hex);
    assert_string_not_equal(other.session_uuid, mine.session_uuid);
    assert_string_not_equal(other.device_hex, mine.device_hex);
}

/* ---- the session step ----------------------------------------------------------- */

static void *load_session(const ccp_config *cfg, const char *params, const char *adapter, ccp_buf *err)
{
    json_object *p = json_tokener_parse(params);
    if (!p) {
        print_error("params not JSON: %s\n", params);
        fail();
    }
    json_object_object_add(p, "step", json_object_new_string("session"));
    ccp_step_env env = {NULL, cfg, adapter};
    void *s = ccp_step_find("session")->load(p, &env, err);
    json_object_put(p);
    return s;
}

/* {CLASSIC}, {JSON}, {UUID} and {DEV} in a template are replaced by the ids
 * the step must write; the step runs at time(NULL), so the template is filled
 * for the windows just before and just after the call. */
static void fill(const char *tmpl, const ccp_session_ids *ids, ccp_buf *out)
{
    ccp_buf_reset(out);
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{CLASSIC}", 9) == 0) {
            ccp_buf_printf(out, "user_%s_account__session_%s", ids->device_hex, ids->session_uuid);
            p += 9;
        } else if (strncmp(p, "{JSON}", 6) == 0) {
            /* the JSON shape, as a JSON string inside the serialised body */
            ccp_buf_printf(out, "{\\\"device_id\\\":\\\"%s\\\",\\\"account_uuid\\\":\\\"\\\",\\\"session_id\\\":\\\"%s\\\"}",
                           ids->device_hex, ids->session_uuid);
            p += 6;
        } else if (strncmp(p, "{UUID}", 6) == 0) {
            ccp_buf_append_str(out, ids->session_uuid);
            p += 6;
        } else {
            ccp_buf_append_char(out, *p++);
        }
    }
}

typedef struct session_case {
    const char *name;
    const char *params;
    const char *body;         /* NULL: no parsed body */
    const char *headers;      /* "name: value\n..." before */
    const char *want_body;    /* template; NULL: body unchanged */
    const char *want_headers; /* template */
    const char *err;          /* apply fails with this */
} session_case;

#define CLASSIC_META "{\"purpose\":\"claude-session\",\"window_hours\":12,\"shape\":\"classic\",\"field\":\"metadata.user_id\"}"
#define JSON_META "{\"purpose\":\"claude-session\",\"window_hours\":12,\"shape\":\"json\",\"field\":\"metadata.user_id\"}"
#define CODEX_PARAMS                                                                                                   \
    "{\"purpose\":\"claude-session\",\"window_hours\":12,\"shape\":\"uuid\",\"field\":\"prompt_cache_key\","         \
    "\"headers\":[\"session_id\",\"conversation_id\"]}"

static const session_case session_cases[] = {
    {"classic, metadata absent", CLASSIC_META, "{\"model\":\"m\"}", "", "{\"model\":\"m\",\"metadata\":{\"user_id\":\"{CLASSIC}\"}}", "", NULL},
    {"classic, metadata an object: other keys kept", CLASSIC_META, "{\"metadata\":{\"a\":1},\"model\":\"m\"}", "",
     "{\"metadata\":{\"a\":1,\"user_id\":\"{CLASSIC}\"},\"model\":\"m\"}", "", NULL},
    {"classic, the client's user_id replaced in place", CLASSIC_META,
     "{\"metadata\":{\"user_id\":\"mine\",\"b\":2}}", "", "{\"metadata\":{\"user_id\":\"{CLASSIC}\",\"b\":2}}", "",
     NULL},
    {"classic, metadata null", CLASSIC_META, "{\"metadata\":null,\"x\":1}", "",
     "{\"metadata\":{\"user_id\":\"{CLASSIC}\"},\"x\":1}", "", NULL},
    {"metadata a string", CLASSIC_META, "{\"metadata\":\"m\"}", "", NULL, "", "metadata: must be an object"},
    {"metadata a list", CLASSIC_META, "{\"metadata\":[]}", "", NULL, "", "metadata: must be an object"},
    {"metadata a number", CLASSIC_META, "{\"metadata\":1}", "", NULL, "", "metadata: must be an object"},
    {"metadata false", CLASSIC_META, "{\"metadata\":false}", "", NULL, "", "metadata: must be an object"},
    {"json shape", JSON_META, "{}", "", "{\"metadata\":{\"user_id\":\"{JSON}\"}}", "", NULL},
    {"prompt_cache_key and headers", CODEX_PARAMS, "{\"model\":\"m\"}", "accept: */*",
     "{\"model\":\"m\",\"prompt_cache_key\":\"{UUID}\"}",
     "accept: */*\nsession_id: {UUID}\nconversation_id: {UUID}", NULL},
    {"prompt_cache_key replaced in place; session-id respelled in place", CODEX_PARAMS,
     "{\"prompt_cache_key\":\"mine\",\"model\":\"m\"}", "a: 1\nsession-id: client\nb: 2\nConversation_Id: c",
     "{\"prompt_cache_key\":\"{UUID}\",\"model\":\"m\"}", "a: 1\nsession_id: {UUID}\nb: 2\nconversation_id: {UUID}",
     NULL},
    {"headers only, no body", "{\"purpose\":\"claude-session\",\"headers\":[\"x-session\"]}", NULL, "",
     NULL, "x-session: {UUID}", NULL},
    {"field only, no body: nothing", CLASSIC_META, NULL, "x: 1", NULL, "x: 1", NULL},
    {"headers only, body untouched", "{\"purpose\":\"claude-session\",\"headers\":[\"x-session\"]}", "{\"a\":1}",
     "", NULL, "x-session: {UUID}", NULL},
};


static void headers_text(const ccp_headers *h, ccp_buf *out)
{
    ccp_buf_reset(out);
    for (size_t i = 0; i < h->count; i++) ccp_buf_printf(out, "%s%s: %s", i ? "\n" : "", h->items[i].name, h->items[i].value);
}

static int run_session_case(const session_case *c, const ccp_config *cfg, const char *key)
{
    int failures = 0;
    ccp_buf err = {0}, want = {0}, want2 = {0}, got_h = {0};
    void *s = load_session(cfg, c->params, "test-adapter", &err);
    if (!s) {
        print_error("case \"%s\": load failed: %s\n", c->name, ccp_buf_cstr(&err));
        fail();
    }
    json_object *body = c->body ? json_tokener_parse(c->body) : NULL;
    ccp_headers h;
    unit_headers_from(&h, c->headers);
    ccp_transform t = {.cfg = cfg, .client_key = key, .body = body, .upstream_headers = &h};
    ccp_session_ids before, after;
    ccp_session_derive(key, cfg->session_secret, "claude-session", H12, time(NULL), &before);
    int rc = ccp_step_find("session")->apply(s, &t, &err);
    ccp_session_derive(key, cfg->session_secret, "claude-session", H12, time(NULL), &after);
    if (c->err) {
        if (rc != CCP_ERR || !strstr(ccp_buf_cstr(&err), c->err)) {
            print_error("case \"%s\": want error \"%s\", got rc %d \"%s\"\n", c->name, c->err, rc, ccp_buf_cstr(&err));
            failures++;
        }
    } else if (rc != CCP_OK) {
        print_error("case \"%s\": unexpected error \"%s\"\n", c->name, ccp_buf_cstr(&err));
        failures++;
    } else {
        if (body) {
            const char *got = json_object_to_json_string_ext(body, JSON_FLAGS);
            if (c->want_body) {
                fill(c->want_body, &before, &want);
                fill(c->want_body, &after, &want2);
            } else {
                json_object *orig = json_tokener_parse(c->body);
                ccp_buf_append_str(&want, json_object_to_json_string_ext(orig, JSON_FLAGS));
                ccp_buf_append_str(&want2, want.data);
                json_object_put(orig);
            }
            if (strcmp(got, want.data) && strcmp(got, want2.data)) {
                print_error("case \"%s\":\n  got:  %s\n  want: %s\n", c->name, got, want.data);
                failures++;
            }
            if (t.body_changed != (c->want_body != NULL)) {
                print_error("case \"%s\": body_changed %d\n", c->name, (int)t.body_changed);
                failures++;
            }
        }
        headers_text(&h, &got_h);
        fill(c->want_headers, &before, &want);
        fill(c->want_headers, &after, &want2);
        if (strcmp(ccp_buf_cstr(&got_h), want.data) && strcmp(ccp_buf_cstr(&got_h), want2.data)) {
            print_error("case \"%s\": headers\n  got:\n%s\n  want:\n%s\n", c->name, ccp_buf_cstr(&got_h), want.data);
            failures++;
        }
    }
    json_object_put(body);
    ccp_headers_free(&h);
    ccp_step_find("session")->free(s);
    ccp_buf_free(&err);
    ccp_buf_free(&want);
    ccp_buf_free(&want2);
    ccp_buf_free(&got_h);
    return failures;
}

static void test_session_step_table(void **state)
{
    (void)state;
    ccp_config cfg = {0};
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(session_cases); i++) failures += run_session_case(&session_cases[i], &cfg, "sk-x");
    /* and with SESSION_SECRET set (the expectations derive with it too) */
    cfg.session_secret = "server-secret";
    for (size_t i = 0; i < UNIT_COUNT(session_cases); i++) failures += run_session_case(&session_cases[i], &cfg, "sk-x");
    assert_int_equal(failures, 0);
}

/* The classic and JSON shapes, parsed back: the exact documented layouts. */
static void test_shapes_parse_back(void **state)
{
    (void)state;
    ccp_config cfg = {0};
    ccp_buf err = {0};
    for (int shape = 0; shape < 2; shape++) {
        void *s = load_session(&cfg, shape ? JSON_META : CLASSIC_META, "a", &err);
        assert_non_null(s);
        json_object *body = json_tokener_parse("{}");
        ccp_headers h = {0};
        ccp_transform t = {.cfg = &cfg, .client_key = "sk-shape", .body = body, .upstream_headers = &h};
        assert_int_equal(ccp_step_find("session")->apply(s, &t, &err), CCP_OK);
        const char *uid = json_object_get_string(json_object_object_get(json_object_object_get(body, "metadata"), "user_id"));
        assert_non_null(uid);
        if (shape == 0) {
            /* user_<64 hex>_account__session_<uuid> */
            assert_int_equal(strlen(uid), 5 + 64 + 18 + 36);
            assert_memory_equal(uid, "user_", 5);
            assert_true(is_hex(uid + 5, 64));
            assert_memory_equal(uid + 69, "_account__session_", 18);
            assert_true(is_uuid4(uid + 87));
        } else {
            json_object *j = json_tokener_parse(uid);
            assert_non_null(j);
            assert_int_equal(json_object_object_length(j), 3);
            const char *keys[] = {"device_id", "account_uuid", "session_id"};
            int k = 0;
            json_object_object_foreach(j, name, val)
            {
                assert_string_equal(name, keys[k++]);
                assert_true(json_object_is_type(val, json_type_string));
            }
            const char *dev = json_object_get_string(json_object_object_get(j, "device_id"));
            assert_int_equal(strlen(dev), 64);
            assert_true(is_hex(dev, 64));
            assert_string_equal(json_object_get_string(json_object_object_get(j, "account_uuid")), "");
            assert_true(is_uuid4(json_object_get_string(json_object_object_get(j, "session_id"))));
            /* exactly the compact layout Claude Code writes */
            assert_non_null(strstr(uid, "{\"device_id\":\""));
            assert_non_null(strstr(uid, "\",\"account_uuid\":\"\",\"session_id\":\""));
            json_object_put(j);
        }
        json_object_put(body);
        ccp_step_find("session")->free(s);
    }
    ccp_buf_free(&err);
}

/* purpose defaults to the adapter's name; window_hours to 12. */
static void test_session_defaults(void **state)
{
    (void)state;
    ccp_config cfg = {0};
    ccp_buf err = {0};
    void *s = load_session(&cfg, "{\"shape\":\"uuid\",\"field\":\"prompt_cache_key\"}", "my_adapter", &err);
    assert_non_null(s);
    json_object *body = json_tokener_parse("{}");
    ccp_headers h = {0};
    ccp_transform t = {.cfg = &cfg, .client_key = "sk-d", .body = body, .upstream_headers = &h};
    ccp_session_ids a, b;
    ccp_session_derive("sk-d", NULL, "my_adapter", H12, time(NULL), &a);
    assert_int_equal(ccp_step_find("session")->apply(s, &t, &err), CCP_OK);
    ccp_session_derive("sk-d", NULL, "my_adapter", H12, time(NULL), &b);
    const char *got = json_object_get_string(json_object_object_get(body, "prompt_cache_key"));
    assert_true(strcmp(got, a.session_uuid) == 0 || strcmp(got, b.session_uuid) == 0);
    json_object_put(body);
    ccp_step_find("session")->free(s);
    ccp_buf_free(&err);
}

/* Two keys through the same step: different ids; the same key twice: the same. */
static void test_session_step_keys(void **state)
{
    (void)state;
    ccp_config cfg = {0};
    ccp_buf err = {0};
    void *s = load_session(&cfg, CLASSIC_META, "a", &err);
    assert_non_null(s);
    const char *keys[] = {"sk-one", "sk-two", "sk-one"};
    char got[3][256];
    for (int i = 0; i < 3; i++) {
        json_object *body = json_tokener_parse("{}");
        ccp_headers h = {0};
        ccp_transform t = {.cfg = &cfg, .client_key = keys[i], .body = body, .upstream_headers = &h};
        assert_int_equal(ccp_step_find("session")->apply(s, &t, &err), CCP_OK);
        snprintf(got[i], sizeof got[i], "%s",
                 json_object_get_string(json_object_object_get(json_object_object_get(body, "metadata"), "user_id")));
        json_object_put(body);
    }
    assert_string_not_equal(got[0], got[1]);
    /* the same key again (allow a window change between the calls) */
    if (strcmp(got[0], got[2]) != 0) assert_memory_equal(got[0], got[2], 5 + 64);
    ccp_step_find("session")->free(s);
    ccp_buf_free(&err);
}

static void test_session_load_errors(void **state)
{
    (void)state;
    static const struct {
        const char *params;
        const char *err;
    } cases[] = {
        {"{\"field\":\"metadata.user_id\",\"window_hours\":0}", "parameter \"window_hours\" must be a whole number from 1 to 8784"},
        {"{\"field\":\"metadata.user_id\",\"window_hours\":8785}", "\"window_hours\" must be a whole number"},
        {"{\"field\":\"metadata.user_id\",\"window_hours\":-12}", "\"window_hours\" must be a whole number"},
        {"{\"field\":\"metadata.user_id\",\"window_hours\":\"12\"}", "\"window_hours\" must be a whole number"},
        {"{\"field\":\"metadata.user_id\",\"window_hours\":1.5}", "\"window_hours\" must be a whole number"},
        {"{\"field\":\"metadata.user_id\",\"shape\":\"xml\"}", "parameter \"shape\" must be \"classic\", \"json\" or \"uuid\", not \"xml\""},
        {"{\"field\":\"metadata.user_id\",\"shape\":1}", "parameter \"shape\" must be a string"},
        {"{\"field\":\"user_id\"}", "parameter \"field\" must be \"metadata.user_id\" or \"prompt_cache_key\", not \"user_id\""},
        {"{\"headers\":\"session_id\"}", "parameter \"headers\" must be an array of header names"},
        {"{\"headers\":[\"bad name\"]}", "parameter \"headers\" must be an array of header names"},
        {"{\"headers\":[1]}", "parameter \"headers\" must be an array"},
        {"{\"purpose\":\"p\"}", "session needs a \"field\" or \"headers\""},
        {"{\"headers\":[]}", "session needs a \"field\" or \"headers\""},
        {"{\"field\":\"metadata.user_id\",\"window\":12}", "unknown parameter \"window\""},
        {"{\"field\":\"metadata.user_id\",\"purpose\":7}", "parameter \"purpose\" must be a string"},
    };
    ccp_config cfg = {0};
    int failures = 0;
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_buf err = {0};
        void *s = load_session(&cfg, cases[i].params, "a", &err);
        if (s || !strstr(ccp_buf_cstr(&err), cases[i].err)) {
            print_error("%s: want \"%s\", got \"%s\"\n", cases[i].params, cases[i].err, ccp_buf_cstr(&err));
            failures++;
        }
        if (s) ccp_step_find("session")->free(s);
        ccp_buf_free(&err);
    }
    /* the bounds themselves load */
    const char *ok[] = {"{\"field\":\"metadata.user_id\",\"window_hours\":1}",
                        "{\"field\":\"metadata.user_id\",\"window_hours\":8784}",
                        "{\"field\":\"prompt_cache_key\",\"shape\":\"uuid\",\"headers\":[\"a\",\"b_c\"]}"};
    for (size_t i = 0; i < UNIT_COUNT(ok); i++) {
        ccp_buf err = {0};
        void *s = load_session(&cfg, ok[i], "a", &err);
        if (!s) {
            print_error("%s: %s\n", ok[i], ccp_buf_cstr(&err));
            failures++;
        } else {
            ccp_step_find("session")->free(s);
        }
        ccp_buf_free(&err);
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_index),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_derive_table),
        cmocka_unit_test(test_long_secrets),
        cmocka_unit_test(test_uuids_shape_and_spread),
        cmocka_unit_test(test_same_ids_in_other_processes),
        cmocka_unit_test(test_session_step_table),
        cmocka_unit_test(test_shapes_parse_back),
        cmocka_unit_test(test_session_defaults),
        cmocka_unit_test(test_session_step_keys),
        cmocka_unit_test(test_session_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
