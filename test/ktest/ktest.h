/*
 * Kernel tests. A C file in test/kernel/ includes this header and defines
 * tests; every such file is built into the kernel test images at the next
 * configure. Results go to the serial port as KTAP version 1.
 *
 *   KTEST(name) { ... }               a test; it passes if it returns and
 *                                     no KASSERT failed.
 *   KTEST_EXPECT_PANIC(name) { ... }  passes only if the body ends in a
 *                                     panic() or a CPU exception; fails if
 *                                     it returns. Narrow the expectation
 *                                     with ktest_expect_*() first.
 *   KASSERT(cond)                     on failure prints file:line and the
 *   KASSERT_EQ(a, b)                  expression (and both values), fails
 *                                     the test and moves on to the next.
 *
 * A panic or exception in a test ends that test (reported by name) and the
 * run continues with the next test. A crash the kernel cannot catch (a
 * triple fault, a hang) is caught by the runner, cmake/ktest-runner.cmake,
 * which reports the test by name and restarts QEMU after it.
 */
#ifndef KHEAP_KTEST_H
#define KHEAP_KTEST_H

#include <stdbool.h>
#include <stdint.h>

#include "kprintf.h"
#include "memlayout.h" /* KTEST_UNMAPPED_ADDR */

struct ktest {
    const char *name;
    void (*body)(void);
    bool expect_panic;
    const char *file;
    int line;
};

#define KTEST_DEFINE(name_, expect_panic_)                                                                  \
    static void ktest_body_##name_(void);                                                                   \
    static const struct ktest ktest_entry_##name_ __attribute__((used, section(".ktests"), aligned(8))) = { \
        #name_, ktest_body_##name_, expect_panic_, __FILE__, __LINE__};                                     \
    static void ktest_body_##name_(void)

#define KTEST(name)              KTEST_DEFINE(name, false)
#define KTEST_EXPECT_PANIC(name) KTEST_DEFINE(name, true)

#define KASSERT(cond)                                             \
    do {                                                          \
        if (!(cond))                                              \
            ktest_fail(__FILE__, __LINE__, "KASSERT(%s)", #cond); \
    } while (0)

#define KASSERT_EQ(a, b)                                                                                 \
    do {                                                                                                 \
        long long ktest_a_ = (long long)(a);                                                             \
        long long ktest_b_ = (long long)(b);                                                             \
        if (ktest_a_ != ktest_b_)                                                                        \
            ktest_fail(__FILE__, __LINE__, "KASSERT_EQ(%s, %s): %lld (0x%llx) != %lld (0x%llx)", #a, #b, \
                       ktest_a_, (unsigned long long)ktest_a_, ktest_b_, (unsigned long long)ktest_b_);  \
    } while (0)

/* Fails the running test with a formatted reason; does not return. */
_Noreturn void ktest_fail(const char *file, int line, const char *fmt, ...) KPRINTF_FORMAT(3, 4);

/* In a KTEST_EXPECT_PANIC test: the test passes only if it ends in CPU
   exception vector. */
void ktest_expect_exception(uint64_t vector);
/* ... only if it ends in a page fault whose CR2 is addr. */
void ktest_expect_page_fault(uint64_t addr);
/* ... only if it ends in a panic whose message contains text. */
void ktest_expect_panic_containing(const char *text);

/* Runs fn(arg) when the running test ends, however it ends (returns, fails,
   panics, faults), in reverse order of registration. For cleanups that must
   happen after an expected panic, e.g. freeing a block the test still owns.
   At most KTEST_MAX_DEFERRED per test; more fail the test. */
#define KTEST_MAX_DEFERRED 16
void ktest_defer(void (*fn)(void *arg), void *arg);

/* Recurses with large frames until the running stack overflows into its
   guard page (for tests that expect the double fault); never returns. */
void ktest_overflow_stack(void);

/* Prints a KTAP diagnostic line ("# ...") for the running test. */
void ktest_log(const char *fmt, ...) KPRINTF_FORMAT(1, 2);

#endif
