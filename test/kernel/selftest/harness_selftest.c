/*
 * Harness self-tests: tests that are MEANT to fail, built into their own
 * image (ktest-selftest). CMakeLists.txt lists the ones that must report
 * "not ok"; cmake/ktest-runner.cmake fails the CTest test if any of them
 * reports "ok", or if any test not listed fails. Together they show that a
 * failing assertion, a wrong or missing panic, an unexpected exception and
 * even a triple fault are each reported by name, and that the tests after
 * them still run.
 */
#include "ktest.h"

#include "panic.h"
#include "trap.h"

#define UNMAPPED_ADDR KTEST_UNMAPPED_ADDR

KTEST(selftest_passes_before)
{
    KASSERT_EQ(2 + 2, 4);
}

KTEST(selftest_kassert_eq_fails)
{
    KASSERT_EQ(1, 2);
}

KTEST(selftest_kassert_fails)
{
    volatile int zero = 0;
    KASSERT(zero == 1);
}

KTEST_EXPECT_PANIC(selftest_expected_panic_returns)
{
    /* Returns normally: an expect-panic test must then fail. */
}

KTEST(selftest_unexpected_page_fault)
{
    volatile uint64_t *p = (volatile uint64_t *)UNMAPPED_ADDR;
    (void)*p;
}

KTEST(selftest_passes_after_a_fault)
{
    KASSERT(true);
}

KTEST_EXPECT_PANIC(selftest_wrong_page_fault_address)
{
    ktest_expect_page_fault(UNMAPPED_ADDR + 8);
    volatile uint64_t *p = (volatile uint64_t *)UNMAPPED_ADDR;
    (void)*p;
}

KTEST(selftest_unexpected_panic)
{
    panic("selftest: a panic the test did not expect");
}

KTEST_EXPECT_PANIC(selftest_expected_panic_passes)
{
    ktest_expect_panic_containing("on purpose");
    panic("selftest: on purpose");
}

KTEST(selftest_triple_fault)
{
    /* An empty IDT: the breakpoint cannot be delivered (#GP), nor can the
       #GP (#DF), nor the #DF: the CPU shuts down. QEMU (-no-reboot) exits
       with status 0 and the runner must report this test and resume. */
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) empty = {0, 0};
    __asm__ volatile("lidt %0; int3" : : "m"(empty));
}

KTEST(selftest_passes_after_a_triple_fault)
{
    KASSERT_EQ(trap_name(TRAP_PAGE_FAULT)[0], 'P');
}

static volatile int deferred_runs;

static void count_deferred(void *arg)
{
    deferred_runs += (int)(uintptr_t)arg;
}

KTEST_EXPECT_PANIC(selftest_deferred_cleanup_runs_after_a_panic)
{
    deferred_runs = 0;
    ktest_defer(count_deferred, (void *)1);
    ktest_defer(count_deferred, (void *)10);
    ktest_expect_panic_containing("after deferring");
    panic("selftest: after deferring two cleanups");
}

KTEST(selftest_deferred_cleanups_ran)
{
    KASSERT_EQ(deferred_runs, 11);
}
