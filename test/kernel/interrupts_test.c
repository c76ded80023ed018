/*
 * CPU exceptions and interrupts: breakpoints continue, faults are reported
 * with the right vector (and CR2), a stack overflow lands in the double-fault
 * handler on its own stack, and the timer ticks.
 */
#include "ktest.h"

#include "cpu.h"
#include "panic.h"
#include "timer.h"
#include "trap.h"

#define NON_CANONICAL_ADDR 0x0000800000000000ull

KTEST(int3_is_reported_and_execution_continues)
{
    uint64_t before = trap_breakpoint_count();
    __asm__ volatile("int3");
    KASSERT_EQ(trap_breakpoint_count(), before + 1);
    __asm__ volatile("int3");
    KASSERT_EQ(trap_breakpoint_count(), before + 2);
}

KTEST_EXPECT_PANIC(page_fault_reports_cr2)
{
    ktest_expect_page_fault(KTEST_UNMAPPED_ADDR + 0x123);
    volatile uint8_t *p = (volatile uint8_t *)(KTEST_UNMAPPED_ADDR + 0x123);
    *p = 1;
}

KTEST_EXPECT_PANIC(divide_error_is_vector_0)
{
    ktest_expect_exception(TRAP_DIVIDE_ERROR);
    /* In assembly: the compiler may turn a C division into something else. */
    __asm__ volatile("xor %%edx, %%edx; mov $1, %%eax; div %0" : : "r"(0u) : "rax", "rdx");
}

KTEST_EXPECT_PANIC(invalid_opcode_is_vector_6)
{
    ktest_expect_exception(TRAP_INVALID_OPCODE);
    __asm__ volatile("ud2");
}

KTEST_EXPECT_PANIC(non_canonical_access_is_general_protection)
{
    ktest_expect_exception(TRAP_GENERAL_PROTECTION);
    volatile uint64_t *p = (volatile uint64_t *)NON_CANONICAL_ADDR;
    (void)*p;
}

KTEST_EXPECT_PANIC(stack_overflow_ends_in_double_fault)
{
    /* The page fault on the guard page cannot push its frame on the same
       stack, so the CPU raises a double fault, which runs on IST1. */
    ktest_expect_exception(TRAP_DOUBLE_FAULT);
    ktest_overflow_stack();
}

KTEST(timer_ticks_advance)
{
    KASSERT(interrupts_enabled());
    uint64_t start = timer_ticks();
    /* hlt returns at the next interrupt; the bound only stops a dead timer
       from hanging the run. */
    for (int i = 0; i < 100000 && timer_ticks() < start + 10; i++)
        hlt();
    KASSERT(timer_ticks() >= start + 10);
}

static void panic_from_interrupt(void *ctx)
{
    (void)ctx;
    panic("tick hook: panic in interrupt context");
}

KTEST_EXPECT_PANIC(panic_in_interrupt_handler_is_reported)
{
    ktest_expect_panic_containing("panic in interrupt context");
    timer_set_tick_hook(panic_from_interrupt, NULL);
    for (int i = 0; i < 100000; i++)
        hlt();
}

KTEST(interrupts_work_after_a_panic_in_a_handler)
{
    /* The previous test left its handler by a long jump; the runner must
       have put the interrupt state back together. */
    KASSERT_EQ(trap_irq_depth(), 0);
    uint64_t start = timer_ticks();
    for (int i = 0; i < 100000 && timer_ticks() < start + 3; i++)
        hlt();
    KASSERT(timer_ticks() >= start + 3);
}
