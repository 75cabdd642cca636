/* relay: route pattern matching (exact paths, trailing slash, one-segment
 * ids after a trailing slash-star). */
#include "unit.h"

#include "../../common/relay.h"

typedef struct route_case {
    const char *pattern;
    const char *path;
    bool match;
} route_case;

static void run_cases(const route_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool got = ccp_route_matches(cases[i].pattern, cases[i].path);
        if (got != cases[i].match)
            print_error("pattern %s path %s: got %d want %d\n", cases[i].pattern, cases[i].path, got, cases[i].match);
        assert_int_equal(got, cases[i].match);
    }
}

static void test_id_pattern_matches_one_segment(void **state)
{
    (void)state;
    static const route_case cases[] = {
        {"/v1/models/*", "/v1/models/claude-x", true},
        {"/v1/models/*", "/v1/models/claude-sonnet-4-5-20250929", true},
        {"/v1/models/*", "/v1/models/a.b_c~d:e@f%20+g", true},
        {"/v1/models/*", "/v1/models/x", true},
        {"/v1/models/*", "/v1/models/...", true},
        {"/v1/models/*", "/v1/models/", false},
        {"/v1/models/*", "/v1/models", false},
        {"/v1/models/*", "/v1/models/a/b", false},
        {"/v1/models/*", "/v1/models/a/", false},
        {"/v1/models/*", "/v1/models/..", false},
        {"/v1/models/*", "/v1/models/.", false},
        {"/v1/models/*", "/v1/models/a b", false},
        {"/v1/models/*", "/v1/models/a?b", false},
        {"/v1/models/*", "/v1/models/a#b", false},
        {"/v1/models/*", "/v1/models/a\\b", false},
        {"/v1/models/*", "/v1/modelsX/a", false},
        {"/v1/models/*", "/v2/models/a", false},
        {"/v1/models/*", "", false},
    };
    run_cases(cases, UNIT_COUNT(cases));
}

static void test_exact_pattern_with_and_without_trailing_slash(void **state)
{
    (void)state;
    static const route_case cases[] = {
        {"/v1/messages", "/v1/messages", true},
        {"/v1/messages", "/v1/messages/", true},
        {"/v1/messages", "/v1/messages//", false},
        {"/v1/messages", "/v1/messages/count_tokens", false},
        {"/v1/messages", "/v1/message", false},
        {"/v1/messages", "/v1/messagesX", false},
        {"/v1/messages", "/V1/messages", false},
        {"/v1/messages", "/v1/messages?x", false},
        {"/v1/messages/count_tokens", "/v1/messages/count_tokens", true},
        {"/v1/messages/count_tokens", "/v1/messages/count_tokens/", true},
        {"/v1/messages/count_tokens", "/v1/messages", false},
        {"/health", "/health", true},
        {"/health", "/health/", true},
        {"/health", "/", false},
        {"/", "/", true},
        {"/", "", false},
        {"/", "/x", false},
    };
    run_cases(cases, UNIT_COUNT(cases));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_pattern_matches_one_segment),
        cmocka_unit_test(test_exact_pattern_with_and_without_trailing_slash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
