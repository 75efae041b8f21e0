/* msm_hash: the fingerprint of a session's entries. */
#include "unit.h"
#include "msm_hash.h"

#include <apr_tables.h>

static apr_table_t *table_of(apr_pool_t *p, const char *const *kv)
{
    apr_table_t *t = apr_table_make(p, 4);

    for (; kv[0]; kv += 2) {
        apr_table_add(t, kv[0], kv[1]);
    }
    return t;
}

static int hash_of(apr_pool_t *p, const char *const *kv, const char *skip,
                   msm_hash_t *h)
{
    return msm_hash_entries(table_of(p, kv), skip, h);
}

static int differ(apr_pool_t *p, const char *const *a, const char *const *b,
                  const char *skip)
{
    msm_hash_t ha, hb;

    hash_of(p, a, skip, &ha);
    hash_of(p, b, skip, &hb);
    return !msm_hash_equal(&ha, &hb);
}

int main(void)
{
    apr_pool_t *p = unit_init("test_hash");
    msm_hash_t h1, h2, empty;
    static const char *const base[] = { "user", "alice", "role", "admin",
                                        "expiry", "1700000000", NULL };
    static const char *const same[] = { "user", "alice", "role", "admin",
                                        "expiry", "1700000000", NULL };
    static const char *const value_changed[] = { "user", "alice", "role",
                                                 "admin2", "expiry",
                                                 "1700000000", NULL };
    static const char *const key_changed[] = { "user", "alice", "rolf",
                                               "admin", "expiry",
                                               "1700000000", NULL };
    static const char *const added[] = { "user", "alice", "role", "admin",
                                         "expiry", "1700000000", "cart", "1",
                                         NULL };
    static const char *const added_empty[] = { "user", "alice", "role",
                                               "admin", "expiry",
                                               "1700000000", "cart", "",
                                               NULL };
    static const char *const removed[] = { "user", "alice", "expiry",
                                           "1700000000", NULL };
    static const char *const expiry_moved[] = { "user", "alice", "role",
                                                "admin", "expiry",
                                                "1700000999", NULL };
    static const char *const expiry_first[] = { "expiry", "1", "user",
                                                "alice", "role", "admin",
                                                NULL };
    static const char *const no_expiry[] = { "user", "alice", "role",
                                             "admin", NULL };
    static const char *const swapped[] = { "role", "admin", "user", "alice",
                                           "expiry", "1700000000", NULL };
    static const char *const amb1[] = { "a=b", "", NULL };
    static const char *const amb2[] = { "a", "b=", NULL };
    static const char *const amb3[] = { "ab", "", NULL };
    static const char *const amb4[] = { "a", "b", NULL };
    static const char *const split1[] = { "a", "bc", "d", "e", NULL };
    static const char *const split2[] = { "a", "b", "cd", "e", NULL };
    static const char *const none[] = { NULL };
    static const char *const only_expiry[] = { "expiry", "5", NULL };
    static const char *const dup_key[] = { "k", "1", "k", "2", NULL };
    static const char *const dup_key1[] = { "k", "1", NULL };
    static const char *const case1[] = { "User", "alice", NULL };
    static const char *const case2[] = { "user", "alice", NULL };

    /* equal entries, equal hash; counts */
    CHECK_INT_EQ(hash_of(p, base, NULL, &h1), 3);
    CHECK_INT_EQ(hash_of(p, same, NULL, &h2), 3);
    CHECK(msm_hash_equal(&h1, &h2));
    CHECK_INT_EQ(hash_of(p, base, "expiry", &h1), 2);
    CHECK_INT_EQ(hash_of(p, same, "expiry", &h2), 2);
    CHECK(msm_hash_equal(&h1, &h2));
    /* hashing twice gives the same digest */
    hash_of(p, base, "expiry", &h2);
    CHECK(msm_hash_equal(&h1, &h2));

    /* any change of the entries changes it */
    CHECK(differ(p, base, value_changed, "expiry"));
    CHECK(differ(p, base, value_changed, NULL));
    CHECK(differ(p, base, key_changed, "expiry"));
    CHECK(differ(p, base, added, "expiry"));
    CHECK(differ(p, base, added_empty, "expiry"));
    CHECK(differ(p, added, added_empty, "expiry"));
    CHECK(differ(p, base, removed, "expiry"));
    CHECK(differ(p, base, swapped, "expiry"));   /* table order counts */
    CHECK(differ(p, case1, case2, NULL));
    CHECK(differ(p, dup_key, dup_key1, NULL));
    CHECK_INT_EQ(hash_of(p, dup_key, NULL, &h1), 2);

    /* the skipped key: expiry does not count, wherever it is */
    CHECK(!differ(p, base, expiry_moved, "expiry"));
    CHECK(differ(p, base, expiry_moved, NULL));
    CHECK(!differ(p, base, no_expiry, "expiry"));
    CHECK(!differ(p, base, expiry_first, "expiry"));
    CHECK(!differ(p, only_expiry, none, "expiry"));
    CHECK_INT_EQ(hash_of(p, only_expiry, "expiry", &h1), 0);
    CHECK_INT_EQ(hash_of(p, only_expiry, NULL, &h1), 1);
    CHECK_INT_EQ(hash_of(p, expiry_first, "expiry", &h1), 2);
    CHECK_INT_EQ(hash_of(p, base, "user", &h1), 2);
    CHECK(differ(p, base, base, "user") == 0);
    /* only that exact key is skipped */
    {
        static const char *const near1[] = { "expiry2", "1", NULL };
        static const char *const near2[] = { "expir", "1", NULL };
        static const char *const near4[] = { "e", "1", NULL };
        CHECK_INT_EQ(hash_of(p, near1, "expiry", &h1), 1);
        CHECK_INT_EQ(hash_of(p, near2, "expiry", &h1), 1);
        CHECK_INT_EQ(hash_of(p, near4, "expiry", &h1), 1);
        CHECK(differ(p, near1, none, "expiry"));
        CHECK(differ(p, near4, none, "expiry"));
    }
    CHECK(differ(p, no_expiry, case2, "role") == 0);     /* role skipped */

    /* no entry: a fixed value, and not the one of an empty key/value */
    CHECK_INT_EQ(hash_of(p, none, NULL, &empty), 0);
    CHECK_INT_EQ(hash_of(p, none, "expiry", &h1), 0);
    CHECK(msm_hash_equal(&empty, &h1));
    {
        static const char *const empty_pair[] = { "", "", NULL };
        CHECK_INT_EQ(hash_of(p, empty_pair, NULL, &h2), 1);
        CHECK(!msm_hash_equal(&empty, &h2));
    }

    /* length prefixes: concatenations that look alike do not hash alike */
    CHECK(differ(p, amb1, amb2, NULL));
    CHECK(differ(p, amb3, amb4, NULL));
    CHECK(differ(p, split1, split2, NULL));
    CHECK(differ(p, amb1, amb3, NULL));

    /* msm_hash_equal compares every byte */
    hash_of(p, base, NULL, &h1);
    h2 = h1;
    CHECK(msm_hash_equal(&h1, &h2));
    h2.digest[APR_SHA1_DIGESTSIZE - 1] ^= 1;
    CHECK(!msm_hash_equal(&h1, &h2));
    h2 = h1;
    h2.digest[0] ^= 0x80;
    CHECK(!msm_hash_equal(&h1, &h2));

    return unit_done();
}
