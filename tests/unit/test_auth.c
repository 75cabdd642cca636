/* auth: the key fingerprint and the ACCESS_KEYS check, with configurations
 * built by ccp_config_load from the environment. */
#include "unit.h"

#include "../../common/relay.h"

#include "../../common/auth.h"
#include "../../common/config.h"
#include "../../common/dialect.h"

static int test_setup(void **state)
{
    (void)state;
    unit_env_clear();
    /* An empty file, so a stray ./.env in the working directory is not read. */
    return setenv("CCPROXY_ENV_FILE", "/dev/null", 1);
}

static int test_teardown(void **state)
{
    (void)state;
    unit_env_clear();
    return 0;
}

static void load_with_access_keys(ccp_config *cfg, const char *keys)
{
    assert_int_equal(setenv("ACCESS_KEYS", keys, 1), 0);
    ccp_buf err = {0};
    int rc = ccp_config_load(cfg, &ccp_service_claude.config_names, &err);
    if (rc != CCP_OK) print_error("%s", ccp_buf_cstr(&err));
    assert_int_equal(rc, CCP_OK);
    ccp_buf_free(&err);
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void test_fingerprint_known_values(void **state)
{
    (void)state;
    static const struct {
        const char *key, *fp;
    } cases[] = {
        {"abc", "ba7816bf"}, /* SHA-256("abc") = ba7816bf... */
        {"", "e3b0c442"},    /* SHA-256("") = e3b0c442... */
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) {
        char fp[CCP_FINGERPRINT_LEN + 1];
        ccp_auth_fingerprint(cases[i].key, fp);
        assert_string_equal(fp, cases[i].fp);
    }
}

static void test_fingerprint_is_8_lower_hex_and_stable(void **state)
{
    (void)state;
    static const char *const keys[] = {"sk-ant-api03-AAAA", "k", "KEY WITH SPACES", "\xff\xfe"};
    for (size_t i = 0; i < UNIT_COUNT(keys); i++) {
        char a[CCP_FINGERPRINT_LEN + 1], b[CCP_FINGERPRINT_LEN + 1];
        memset(a, 'Z', sizeof a);
        ccp_auth_fingerprint(keys[i], a);
        ccp_auth_fingerprint(keys[i], b);
        assert_int_equal(strlen(a), CCP_FINGERPRINT_LEN);
        assert_true(is_lower_hex(a, CCP_FINGERPRINT_LEN));
        assert_string_equal(a, b);
        assert_null(strstr(keys[i], a)); /* says nothing of the key text */
    }
    char x[CCP_FINGERPRINT_LEN + 1], y[CCP_FINGERPRINT_LEN + 1];
    ccp_auth_fingerprint("key-one", x);
    ccp_auth_fingerprint("key-two", y);
    assert_string_not_equal(x, y);
}

static void test_key_allowed_plain_entries(void **state)
{
    (void)state;
    ccp_config cfg;
    load_with_access_keys(&cfg, "alpha, beta ,gamma-long-key-0123456789");
    static const struct {
        const char *key;
        bool ok;
    } cases[] = {
        {"alpha", true},  {"beta", true},   {"gamma-long-key-0123456789", true},
        {"alph", false},  {"alphaa", false}, {"Alpha", false},
        {" alpha", false}, {"", false},     {"delta", false},
    };
    for (size_t i = 0; i < UNIT_COUNT(cases); i++) assert_int_equal(ccp_auth_key_allowed(&cfg, cases[i].key), cases[i].ok);
    ccp_config_free(&cfg);
}

static void test_key_allowed_sha256_entries(void **state)
{
    (void)state;
    ccp_config cfg;
    /* sha256("abc"), written in upper-case hex. */
    load_with_access_keys(&cfg, "plain-one,sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    assert_true(ccp_auth_key_allowed(&cfg, "abc"));
    assert_true(ccp_auth_key_allowed(&cfg, "plain-one"));
    assert_false(ccp_auth_key_allowed(&cfg, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    assert_false(ccp_auth_key_allowed(&cfg, "abcd"));
    assert_false(ccp_auth_key_allowed(&cfg, ""));
    ccp_config_free(&cfg);
}

static void test_no_access_keys_allows_nothing(void **state)
{
    (void)state;
    ccp_config cfg;
    ccp_buf err = {0};
    assert_int_equal(ccp_config_load(&cfg, &ccp_service_claude.config_names, &err), CCP_OK);
    assert_int_equal(cfg.access_count, 0);
    assert_false(ccp_auth_key_allowed(&cfg, "anything"));
    assert_false(ccp_auth_key_allowed(&cfg, ""));
    ccp_config_free(&cfg);
    ccp_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint_known_values),
        cmocka_unit_test(test_fingerprint_is_8_lower_hex_and_stable),
        cmocka_unit_test_setup_teardown(test_key_allowed_plain_entries, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_key_allowed_sha256_entries, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_no_access_keys_allows_nothing, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
