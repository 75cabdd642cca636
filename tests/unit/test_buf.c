/* buf: growth, NUL termination, printf past the stack buffer, JSON escaping. */
#include "unit.h"

#include <json-c/json.h>
#include <limits.h>

static void assert_buf_terminated(const ccp_buf *b)
{
    assert_non_null(b->data);
    assert_true(b->cap > b->len);
    assert_int_equal(b->data[b->len], '\0');
}

static void test_zeroed_buf_is_empty_cstr(void **state)
{
    (void)state;
    ccp_buf b = {0};
    assert_string_equal(ccp_buf_cstr(&b), "");
    assert_int_equal(b.len, 0);
    ccp_buf_free(&b); /* freeing a never-used buffer is fine */
    assert_null(b.data);
}

static void test_append_nothing_still_terminates(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append(&b, "", 0);
    assert_buf_terminated(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(ccp_buf_cstr(&b), "");
    ccp_buf_free(&b);
}

static void test_append_char_grows_past_256(void **state)
{
    (void)state;
    ccp_buf b = {0};
    char expect[1001];
    for (int i = 0; i < 1000; i++) {
        expect[i] = (char)('a' + i % 26);
        ccp_buf_append_char(&b, expect[i]);
        assert_buf_terminated(&b);
    }
    expect[1000] = '\0';
    assert_int_equal(b.len, 1000);
    assert_string_equal(b.data, expect);
    ccp_buf_free(&b);
}

static void test_append_large_block_at_once(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'x', sizeof big);
    ccp_buf b = {0};
    ccp_buf_append_str(&b, "head:");
    ccp_buf_append(&b, big, sizeof big);
    assert_int_equal(b.len, 5 + sizeof big);
    assert_buf_terminated(&b);
    assert_memory_equal(b.data, "head:", 5);
    assert_memory_equal(b.data + 5, big, sizeof big);
    ccp_buf_free(&b);
}

static void test_append_binary_keeps_nul_bytes(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 3);
    assert_buf_terminated(&b);
    ccp_buf_free(&b);
}

static void test_printf_small(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_printf(&b, "%s=%d", "n", 42);
    ccp_buf_printf(&b, ";%zu", (size_t)7);
    assert_string_equal(b.data, "n=42;7");
    assert_int_equal(b.len, 6);
    ccp_buf_free(&b);
}

/* The implementation formats into a 256-byte stack buffer first; check
 * lengths on each side of that edge, each after existing content. */
static void test_printf_lengths_around_256(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 254, 255, 256, 257, 300, 1000, 70000};
    for (size_t i = 0; i < UNIT_COUNT(lens); i++) {
        size_t n = lens[i];
        char *s = ccp_xmalloc(n + 1);
        for (size_t k = 0; k < n; k++) s[k] = (char)('A' + k % 26);
        s[n] = '\0';
        ccp_buf b = {0};
        ccp_buf_append_str(&b, "pre|");
        ccp_buf_printf(&b, "%s|%d", s, 9);
        assert_int_equal(b.len, 4 + n + 2);
        assert_buf_terminated(&b);
        assert_memory_equal(b.data, "pre|", 4);
        assert_memory_equal(b.data + 4, s, n);
        assert_memory_equal(b.data + 4 + n, "|9", 2);
        assert_int_equal(strlen(b.data), b.len);
        ccp_buf_free(&b);
        free(s);
    }
}

static void test_printf_repeated_growth(void **state)
{
    (void)state;
    ccp_buf b = {0};
    for (int i = 0; i < 100; i++) ccp_buf_printf(&b, "%0300d", i);
    assert_int_equal(b.len, 30000);
    assert_buf_terminated(&b);
    assert_memory_equal(b.data + 300 * 99 + 290, "0000000099", 10);
    ccp_buf_free(&b);
}

static void test_reset_keeps_capacity_and_empties(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append_str(&b, "something long enough");
    size_t cap = b.cap;
    ccp_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_string_equal(ccp_buf_cstr(&b), "");
    ccp_buf_append_str(&b, "x");
    assert_string_equal(b.data, "x");
    ccp_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len + b.cap, 0);
}

static void test_reset_of_zeroed_buf(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_reset(&b);
    assert_string_equal(ccp_buf_cstr(&b), "");
}

static void test_reserve_makes_room_without_changing_len(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append_str(&b, "ab");
    ccp_buf_reserve(&b, 1000);
    assert_true(b.cap >= 2 + 1000 + 1);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "ab");
    ccp_buf_free(&b);
}

/* "" for an empty buffer (buf.h): also when memory was reserved but nothing
 * appended yet, as ccp_request_read_body does for a Content-Length: 0 body. */
static void test_cstr_after_reserve_only_is_empty(void **state)
{
    (void)state;
    ccp_buf b = {0};
    unit_dirty_heap(128); /* the size the reserve below asks for */
    ccp_buf_reserve(&b, 100);
    assert_int_equal(b.len, 0);
    /* Only the first byte is read: it is inside the allocation either way. */
    char first = ccp_buf_cstr(&b)[0];
    ccp_buf_free(&b);
    assert_int_equal(first, '\0');
}

typedef struct escape_case {
    const char *in;
    size_t len;
    const char *out;
} escape_case;

static void test_json_escape_table(void **state)
{
    (void)state;
    static const escape_case cases[] = {
        {"", 0, ""},
        {"plain text", 10, "plain text"},
        {"\"", 1, "\\\""},
        {"\\", 1, "\\\\"},
        {"say \"hi\"\\", 9, "say \\\"hi\\\"\\\\"},
        {"\n", 1, "\\n"},
        {"\r", 1, "\\r"},
        {"\t", 1, "\\t"},
        {"\x01", 1, "\\u0001"},
        {"\b", 1, "\\u0008"},
        {"\f", 1, "\\u000c"},
        {"\x1f", 1, "\\u001f"},
        {"\x7f", 1, "\\u007f"},
        {" ", 1, " "},
        {"/", 1, "/"},
        {"a\0b", 3, "a\\u0000b"},
        {"\xc3\xa9", 2, "\xc3\xa9"}, /* UTF-8 passes through */
        {"x\x1b[31m", 6, "x\\u001b[31m"},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        ccp_buf b = {0};
        ccp_buf_append_json_escaped(&b, cases[i].in, cases[i].len);
        assert_string_equal(ccp_buf_cstr(&b), cases[i].out);
        ccp_buf_free(&b);
    }
}

static void test_json_escape_respects_length_not_nul(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append_json_escaped(&b, "abcdef", 3);
    assert_string_equal(b.data, "abc");
    ccp_buf_free(&b);
}

/* Every ASCII byte 1..127, escaped and quoted, parses back to itself. */
static void test_json_escape_round_trips_through_json_c(void **state)
{
    (void)state;
    char raw[127];
    for (int i = 0; i < 127; i++) raw[i] = (char)(i + 1);
    ccp_buf b = {0};
    ccp_buf_append_char(&b, '"');
    ccp_buf_append_json_escaped(&b, raw, sizeof raw);
    ccp_buf_append_char(&b, '"');
    for (size_t i = 0; i < b.len; i++) assert_true((unsigned char)b.data[i] >= 0x20 && b.data[i] != 0x7f);
    json_object *o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_string));
    assert_int_equal(json_object_get_string_len(o), sizeof raw);
    assert_memory_equal(json_object_get_string(o), raw, sizeof raw);
    json_object_put(o);
    ccp_buf_free(&b);
}

static void test_xstrndup_copies_prefix(void **state)
{
    (void)state;
    char *s = ccp_xstrndup("hello world", 5);
    assert_string_equal(s, "hello");
    free(s);
    s = ccp_xstrdup("");
    assert_string_equal(s, "");
    free(s);
}

static void test_append_int_prints_like_lld(void **state)
{
    (void)state;
    static const long long vals[] = {0, 7, -7, 10, 1234567890123LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        ccp_buf b = {0};
        ccp_buf_append_str(&b, "x=");
        ccp_buf_append_int(&b, vals[i]);
        char want[32];
        snprintf(want, sizeof want, "x=%lld", vals[i]);
        assert_string_equal(b.data, want);
        assert_buf_terminated(&b);
        ccp_buf_free(&b);
    }
}

/* Runs of plain bytes are copied whole; every escape still lands between them. */
static void test_json_escape_runs_and_edges(void **state)
{
    (void)state;
    ccp_buf b = {0};
    ccp_buf_append_json_escaped(&b, NULL, 0); /* nothing, and no pointer arithmetic on NULL */
    assert_int_equal(b.len, 0);
    ccp_buf_append_json_escaped(&b, "\"ab\\c\x01\x7f" "de\n", 10);
    assert_string_equal(b.data, "\\\"ab\\\\c\\u0001\\u007fde\\n");
    ccp_buf_reset(&b);
    ccp_buf_append_json_escaped(&b, "plain text", 10);
    assert_string_equal(b.data, "plain text");
    ccp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zeroed_buf_is_empty_cstr),
        cmocka_unit_test(test_append_nothing_still_terminates),
        cmocka_unit_test(test_append_char_grows_past_256),
        cmocka_unit_test(test_append_large_block_at_once),
        cmocka_unit_test(test_append_binary_keeps_nul_bytes),
        cmocka_unit_test(test_printf_small),
        cmocka_unit_test(test_printf_lengths_around_256),
        cmocka_unit_test(test_printf_repeated_growth),
        cmocka_unit_test(test_reset_keeps_capacity_and_empties),
        cmocka_unit_test(test_reset_of_zeroed_buf),
        cmocka_unit_test(test_reserve_makes_room_without_changing_len),
        cmocka_unit_test(test_cstr_after_reserve_only_is_empty),
        cmocka_unit_test(test_json_escape_table),
        cmocka_unit_test(test_json_escape_respects_length_not_nul),
        cmocka_unit_test(test_json_escape_round_trips_through_json_c),
        cmocka_unit_test(test_xstrndup_copies_prefix),
        cmocka_unit_test(test_append_int_prints_like_lld),
        cmocka_unit_test(test_json_escape_runs_and_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
