/* kheap_cmocka.c - the shared main of the per-backend cmocka programs; see kheap_cmocka.h. */
#include "kheap_cmocka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TESTS 128

int kheap_cmocka_main(int argc, char **argv, const char *infix, const struct kheap_test *tests, size_t n,
                      CMFixtureFunction setup, CMFixtureFunction teardown, const struct heap_ops **ops)
{
    static struct CMUnitTest run[MAX_TESTS];
    static char names[MAX_TESTS][128];
    size_t m = 0;

    *ops = heap_backend_find(argc > 1 ? argv[1] : "");
    if (*ops == NULL || n > MAX_TESTS) {
        fprintf(stderr, "usage: %s <backend>\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (tests[i].backend != NULL && strcmp(tests[i].backend, (*ops)->name) != 0)
            continue;
        snprintf(names[m], sizeof(names[m]), "%s%s/%s", (*ops)->name, infix,
                 tests[i].name + (strncmp(tests[i].name, "test_", 5) == 0 ? 5 : 0));
        run[m] = (struct CMUnitTest){names[m], tests[i].fn, setup, teardown, NULL};
        m++;
    }
    return _cmocka_run_group_tests((*ops)->name, run, m, NULL, NULL);
}
