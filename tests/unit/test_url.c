/* url: the host of a URL and its masked form never show its credentials. */
#include "unit.h"

#include "../../common/url.h"

static void test_host_and_masked(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host, *masked;
    } cases[] = {
        {"https://api.example.com/v1", "api.example.com", "https://api.example.com/v1"},
        {"http://127.0.0.1:8080", "127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"https://u:p@host:1/v1?x=1", "host:1", "https://***@host:1/v1?x=1"},
        {"https://u:p@ss@host/v1", "host", "https://***@host/v1"}, /* an '@' in the password */
        {"https://host/p@th", "host", "https://host/p@th"},       /* an '@' past the authority */
        {"u@host/x", "host", "***@host/x"},                        /* no scheme */
        {"", "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        const char *h = ccp_url_host(cases[i].url, &n, NULL);
        ccp_buf b = {0};
        ccp_buf_append(&b, h, n);
        assert_string_equal(ccp_buf_cstr(&b), cases[i].host);
        ccp_buf_reset(&b);
        ccp_url_append_masked(&b, cases[i].url);
        assert_string_equal(ccp_buf_cstr(&b), cases[i].masked);
        ccp_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_and_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
