/* test_reqid: fresh ids are 32 hex digits and differ (within a thread and
 * across threads); what a trusted front may hand in. */
#include "unit.h"

#include <pthread.h>

#include "../../common/reqid.h"

#define N 2000

/* The first half drawn by the main thread, the second by another one. */
static char ids[2 * N][CCP_REQID_LEN + 1];

static void *draw(void *arg)
{
    char (*out)[CCP_REQID_LEN + 1] = arg;
    for (int i = 0; i < N; i++) ccp_reqid_new(out[i]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_fresh_ids_are_hex_and_unique(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, draw, ids + N), 0);
    draw(ids);
    pthread_join(t, NULL);
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(strlen(ids[i]), CCP_REQID_LEN);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), CCP_REQID_LEN);
    }
    qsort(ids, 2 * N, sizeof ids[0], cmp);
    for (int i = 1; i < 2 * N; i++) assert_string_not_equal(ids[i - 1], ids[i]);
}

static void test_acceptable_front_ids(void **state)
{
    (void)state;
    assert_true(ccp_reqid_acceptable("abc-123_X.y:z"));
    assert_true(ccp_reqid_acceptable("0123456789012345678901234567890123456789012345678901234567890123")); /* 64 */
    assert_false(ccp_reqid_acceptable("01234567890123456789012345678901234567890123456789012345678901234")); /* 65 */
    assert_false(ccp_reqid_acceptable(""));
    assert_false(ccp_reqid_acceptable(NULL));
    assert_false(ccp_reqid_acceptable("a b"));
    assert_false(ccp_reqid_acceptable("a\"b"));
    assert_false(ccp_reqid_acceptable("a\r\nX-Evil: 1"));
    assert_false(ccp_reqid_acceptable("caf\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_ids_are_hex_and_unique),
        cmocka_unit_test(test_acceptable_front_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
