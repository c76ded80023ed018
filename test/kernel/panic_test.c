/* panic() and kassert(): the message reaches the test harness intact. */
#include "ktest.h"

#include "panic.h"

KTEST_EXPECT_PANIC(panic_reports_formatted_message)
{
    ktest_expect_panic_containing("deliberate panic 42 abc");
    panic("deliberate panic %d %s", 42, "abc");
}

KTEST_EXPECT_PANIC(kassert_failure_panics_with_condition)
{
    volatile int x = 3;
    ktest_expect_panic_containing("assertion failed: x == 4");
    kassert(x == 4);
}
