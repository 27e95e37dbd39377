#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define MAX_TESTS 1024

static struct {
    const char *name;
    srp_test_fn fn;
} tests[MAX_TESTS];
static int n_tests;
int srp_test_failures;

void srp_test_register(const char *name, srp_test_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

const char *srp_test_path(const char *rel) {
    static char buf[8][4096];
    static int k;
    const char *dir = getenv("SERPENT_TEST_DIR");
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : "tests", rel);
    return b;
}

/* test_x            runs every test in this process
 * test_x NAME...    runs the named tests
 * test_x --list     prints the names */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < n_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    int ran = 0;
    for (int i = 0; i < n_tests; i++) {
        int selected = argc == 1;
        for (int a = 1; a < argc && !selected; a++) selected = !strcmp(argv[a], tests[i].name);
        if (!selected) continue;
        int before = srp_test_failures;
        tests[i].fn();
        fprintf(stderr, "%s %s\n", srp_test_failures == before ? "ok  " : "FAIL", tests[i].name);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no such test\n");
        return 2;
    }
    return srp_test_failures ? 1 : 0;
}
