/* test_netlist: METRICS_ALLOW's addresses and CIDR blocks, both families,
 * the mapped form, and every kind of bad entry. */
#include "unit.h"

#include "../../common/netlist.h"

static void parse_ok(ccp_netlist *l, const char *text)
{
    ccp_buf err = {0};
    if (ccp_netlist_parse(l, text, strlen(text), &err) != CCP_OK) print_error("%s: %s\n", text, err.data);
    assert_int_equal(err.len, 0);
    ccp_buf_free(&err);
}

static void test_default_is_loopback_only(void **state)
{
    (void)state;
    ccp_netlist l;
    parse_ok(&l, "127.0.0.0/8,::1");
    assert_int_equal(l.count, 2);
    assert_true(ccp_netlist_allows(&l, "127.0.0.1"));
    assert_true(ccp_netlist_allows(&l, "127.255.1.2"));
    assert_true(ccp_netlist_allows(&l, "::1"));
    assert_true(ccp_netlist_allows(&l, "::ffff:127.0.0.1")); /* a dual-stack socket's view */
    assert_false(ccp_netlist_allows(&l, "128.0.0.1"));
    assert_false(ccp_netlist_allows(&l, "10.0.0.1"));
    assert_false(ccp_netlist_allows(&l, "::2"));
    assert_false(ccp_netlist_allows(&l, NULL));
    assert_false(ccp_netlist_allows(&l, ""));
    assert_false(ccp_netlist_allows(&l, "unix:"));
    assert_false(ccp_netlist_allows(&l, "localhost"));
}

static void test_blocks_of_both_families(void **state)
{
    (void)state;
    ccp_netlist l;
    parse_ok(&l, " 10.1.2.3/8  192.168.7.9/32,fd00::/8,2001:db8::/33, 0.0.0.0/0 ");
    assert_int_equal(l.count, 5);
    parse_ok(&l, "10.1.2.3/8 192.168.7.9/32 fd00::/8 2001:db8::/33");
    assert_true(ccp_netlist_allows(&l, "10.200.0.1")); /* host bits of the entry are ignored */
    assert_true(ccp_netlist_allows(&l, "192.168.7.9"));
    assert_false(ccp_netlist_allows(&l, "192.168.7.8"));
    assert_true(ccp_netlist_allows(&l, "fdab::1"));
    assert_false(ccp_netlist_allows(&l, "fe80::1"));
    assert_true(ccp_netlist_allows(&l, "2001:db8:7fff::1"));
    assert_false(ccp_netlist_allows(&l, "2001:db8:8000::1"));
    parse_ok(&l, "0.0.0.0/0");
    assert_true(ccp_netlist_allows(&l, "203.0.113.9"));
    assert_false(ccp_netlist_allows(&l, "2001:db8::1")); /* IPv4's whole space only */
    parse_ok(&l, "::/0");
    assert_true(ccp_netlist_allows(&l, "2001:db8::1"));
    assert_true(ccp_netlist_allows(&l, "203.0.113.9"));
    parse_ok(&l, "");
    assert_false(ccp_netlist_allows(&l, "127.0.0.1"));
}

static void test_bad_entries_are_named(void **state)
{
    (void)state;
    static const char *const bad[] = {"127.0.0.1/33", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8",
                                      "300.1.1.1",    "host.example", "/8", "1.2.3.4/0x8", "::1/1000",
                                      "10.0.0.0/ 8x"};
    for (size_t i = 0; i < UNIT_COUNT(bad); i++) {
        ccp_netlist l;
        ccp_buf err = {0};
        assert_int_equal(ccp_netlist_parse(&l, bad[i], strlen(bad[i]), &err), CCP_ERR);
        assert_non_null(strstr(err.data, "is not an IPv4 or IPv6 address"));
        ccp_buf_free(&err);
    }
    /* A NUL inside, a giant entry, too many entries. */
    ccp_netlist l;
    ccp_buf err = {0};
    assert_int_equal(ccp_netlist_parse(&l, "127.0.0.1\0x", 11, &err), CCP_ERR);
    ccp_buf_reset(&err);
    char big[300];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(ccp_netlist_parse(&l, big, strlen(big), &err), CCP_ERR);
    ccp_buf_reset(&err);
    ccp_buf many = {0};
    for (int i = 0; i <= CCP_NETLIST_MAX; i++) ccp_buf_printf(&many, "10.0.0.%d,", i);
    assert_int_equal(ccp_netlist_parse(&l, many.data, many.len, &err), CCP_ERR);
    assert_non_null(strstr(err.data, "more than"));
    ccp_buf_free(&many);
    ccp_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_loopback_only),
        cmocka_unit_test(test_blocks_of_both_families),
        cmocka_unit_test(test_bad_entries_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
