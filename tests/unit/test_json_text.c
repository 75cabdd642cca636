/* json_text and ccp_buf_read_file: the one strict JSON parser and the one
 * whole-file reader every caller shares. */
#include "unit.h"

#include <fcntl.h>

#include "../../common/json_text.h"

typedef struct parse_case {
    const char *text;
    size_t len;
    ccp_json_status status;
    size_t at;
    const char *why; /* substring of err; NULL: err stays empty */
} parse_case;

static void test_parse_table(void **state)
{
    (void)state;
    static const parse_case cases[] = {
        {"{}", 2, CCP_JSON_OK, 0, NULL},
        {"{\"a\":[1,2]} \r\n\t", 15, CCP_JSON_OK, 0, NULL},
        {"", 0, CCP_JSON_TRUNCATED, 0, "it ends too early"},
        {"{\"a\":", 5, CCP_JSON_TRUNCATED, 5, "it ends too early"},
        {"null", 4, CCP_JSON_TRUNCATED, 4, "it ends too early"},
        {"{} x", 4, CCP_JSON_TRAILING, 3, "unexpected data after the value at byte 3"},
        {"{}{}", 4, CCP_JSON_TRAILING, 2, "after the value at byte 2"},
        {"[1]\0[2]", 7, CCP_JSON_TRAILING, 3, "after the value at byte 3"},
        {"{\"a\":1,}", 8, CCP_JSON_INVALID, 7, "at byte 7"},
        {"// c\n{}", 7, CCP_JSON_INVALID, 0, "at byte 0"},
        {"['a']", 5, CCP_JSON_INVALID, 1, "at byte 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const parse_case *c = &cases[i];
        json_object *v = (json_object *)1;
        size_t at = 12345;
        ccp_buf err = {0};
        ccp_json_status st = ccp_json_parse(c->text, c->len, &v, &at, &err);
        if (st != c->status || (st != CCP_JSON_OK && at != c->at) ||
            (c->why ? !strstr(ccp_buf_cstr(&err), c->why) : err.len != 0)) {
            print_error("case %zu: status %d at %zu err \"%s\"\n", i, st, at, ccp_buf_cstr(&err));
            fail();
        }
        if (st == CCP_JSON_OK) assert_non_null(v);
        else assert_null(v);
        json_object_put(v);
        ccp_buf_free(&err);
    }
}

static void test_parse_without_at_or_err(void **state)
{
    (void)state;
    json_object *v;
    assert_int_equal(ccp_json_parse("[", 1, &v, NULL, NULL), CCP_JSON_TRUNCATED);
    assert_null(v);
    assert_int_equal(ccp_json_parse(NULL, 0, &v, NULL, NULL), CCP_JSON_TRUNCATED);
}

/* Depth as json-c counts it: the value is level 1, a value inside an array
 * or object one more. Past the depth: CCP_JSON_TOO_DEEP, naming it. */
static void test_parse_depth(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int depth;
        ccp_json_status want;
    } cases[] = {
        {"[]", 1, CCP_JSON_OK},         {"[1]", 1, CCP_JSON_TOO_DEEP},     {"[1]", 2, CCP_JSON_OK},
        {"{\"a\":1}", 1, CCP_JSON_TOO_DEEP}, {"{\"a\":1}", 2, CCP_JSON_OK}, {"[[[1]]]", 3, CCP_JSON_TOO_DEEP},
        {"[[[1]]]", 4, CCP_JSON_OK},    {"{\"a\":{\"b\":{\"c\":1}}}", 4, CCP_JSON_OK},
        {"{\"a\":{\"b\":{\"c\":1}}}", 3, CCP_JSON_TOO_DEEP},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        json_object *v;
        size_t at = 0;
        ccp_buf err = {0};
        ccp_json_status st = ccp_json_parse_depth(cases[i].text, strlen(cases[i].text), cases[i].depth, &v, &at, &err);
        if (st != cases[i].want) print_error("case %zu: %d, want %d\n", i, st, cases[i].want);
        assert_int_equal(st, cases[i].want);
        if (st == CCP_JSON_TOO_DEEP) {
            char want[64];
            snprintf(want, sizeof want, "nesting deeper than %d levels at byte", cases[i].depth);
            assert_non_null(strstr(ccp_buf_cstr(&err), want));
            assert_null(v);
        }
        json_object_put(v);
        ccp_buf_free(&err);
    }
    /* The files' parse keeps its 64 levels. */
    char deep[200];
    json_object *v;
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    assert_int_equal(ccp_json_parse(deep, 128, &v, NULL, NULL), CCP_JSON_OK);
    json_object_put(v);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    assert_int_equal(ccp_json_parse(deep, 130, &v, NULL, NULL), CCP_JSON_TOO_DEEP);
}

static void test_read_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ccp-unit-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc\n", 4), 4);
    close(fd);
    ccp_buf b = {0}, err = {0};
    ccp_buf_append_str(&b, "x"); /* appends after what is there */
    assert_int_equal(ccp_buf_read_file(&b, path, &err), CCP_OK);
    assert_string_equal(b.data, "xabc\n");
    assert_int_equal(err.len, 0);
    ccp_buf_free(&b);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ccp_buf_read_file(&b, path, &err), CCP_OK);
    assert_non_null(b.data); /* terminated even when empty */
    assert_string_equal(b.data, "");
    ccp_buf_free(&b);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "a\0b", 3), 3);
    close(fd);
    assert_int_equal(ccp_buf_read_file(&b, path, &err), CCP_ERR);
    assert_string_equal(err.data, "contains a NUL byte; it must be text");
    ccp_buf_free(&b);
    ccp_buf_reset(&err);
    unlink(path);

    assert_int_equal(ccp_buf_read_file(&b, path, &err), CCP_ERR);
    assert_string_equal(err.data, "cannot be read: No such file or directory");
    ccp_buf_reset(&err);
    assert_int_equal(ccp_buf_read_file(&b, "/tmp", &err), CCP_ERR);
    assert_string_equal(err.data, "cannot be read: Is a directory");
    ccp_buf_free(&b);
    ccp_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_without_at_or_err),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
