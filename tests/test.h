/* serpent's test harness: tests register themselves with TEST(name); tests/CMakeLists.txt finds
 * the names in the sources and registers each with ctest, so every test runs in its own process
 * (`test_x name`). A failed CHECK prints where and why, and the test goes on; REQUIRE stops it. */
#ifndef SRP_TEST_H
#define SRP_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*srp_test_fn)(void);
void srp_test_register(const char *name, srp_test_fn fn);
extern int srp_test_failures;

/* Absolute path of a file under tests/ (fixtures, data); uses SERPENT_TEST_DIR. */
const char *srp_test_path(const char *rel);

#define TEST(name)                                                   \
    static void test_##name(void);                                   \
    __attribute__((constructor)) static void register_##name(void) { \
        srp_test_register(#name, test_##name);                       \
    }                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            srp_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define CHECKF(cond, ...)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            srp_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
            srp_test_failures++;                                                       \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                                   \
    CHECKF(strstr((haystack), (needle)) != NULL, "\"%s\" does not contain \"%s\"", (haystack), \
           (needle))

#endif
