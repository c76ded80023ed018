/*
 * The kernel test runner: kernel_main() of the test images.
 *
 * Tests are the struct ktest records that KTEST() puts in the .ktests
 * section. They run in (file, line) order. Each runs under ksetjmp(): the
 * panic and fault hooks, and KASSERT, jump back here, so a test that panics
 * or takes an exception is reported by name and the next test still runs.
 *
 * The runner (cmake/ktest-runner.cmake) may pass "opt/kheap/ktest-skip"
 * through fw_cfg to resume after a test that brought the machine down.
 */
#include "ktest.h"

#include <stddef.h>

#include "console.h"
#include "cpu.h"
#include "fw_cfg.h"
#include "kernel.h"
#include "ksetjmp.h"
#include "kstring.h"
#include "panic.h"
#include "qemu.h"
#include "timer.h"
#include "trap.h"

#define KTEST_MAX       512
#define KTEST_SKIP_FILE "opt/kheap/ktest-skip"
#define REASON_MAX      200

extern const struct ktest __ktests_start[], __ktests_end[];

enum outcome {
    OUTCOME_RETURNED,
    OUTCOME_ASSERT_FAILED,
    OUTCOME_PANIC,
    OUTCOME_EXCEPTION,
};

enum expectation {
    EXPECT_ANY,
    EXPECT_EXCEPTION,
    EXPECT_PAGE_FAULT,
    EXPECT_PANIC_TEXT,
};

static struct {
    const struct ktest *test; /* NULL outside a test */
    struct kjmp_buf env;
    enum outcome outcome;
    char reason[REASON_MAX];
    enum expectation expect;
    uint64_t expect_value;
    const char *expect_text;
    struct trap_info fault;
    struct {
        void (*fn)(void *arg);
        void *arg;
    } deferred[KTEST_MAX_DEFERRED];
    size_t ndeferred;
} run;

static const struct ktest *tests[KTEST_MAX];

static int compare_tests(const struct ktest *a, const struct ktest *b)
{
    int c = strcmp(a->file, b->file);
    return c != 0 ? c : a->line - b->line;
}

static size_t collect_tests(void)
{
    size_t n = (size_t)(__ktests_end - __ktests_start);
    if (n > KTEST_MAX)
        panic("collect_tests: %zu tests, more than KTEST_MAX %d", n, KTEST_MAX);
    for (size_t i = 0; i < n; i++) {
        const struct ktest *t = &__ktests_start[i];
        size_t j = i;
        while (j > 0 && compare_tests(tests[j - 1], t) > 0) {
            tests[j] = tests[j - 1];
            j--;
        }
        tests[j] = t;
    }
    return n;
}

static size_t read_skip(void)
{
    char buf[16];
    size_t skip = 0;
    if (!fw_cfg_read_file(KTEST_SKIP_FILE, buf, sizeof(buf)))
        return 0;
    for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
        skip = skip * 10 + (size_t)(*p - '0');
    return skip;
}

_Noreturn void ktest_fail(const char *file, int line, const char *fmt, ...)
{
    char what[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (run.test == NULL)
        panic("ktest_fail: %s outside a test (%s:%d)", what, file, line);
    kprintf("# %s:%d: %s\n", file, line, what);
    ksnprintf(run.reason, sizeof(run.reason), "%s at %s:%d", what, file, line);
    run.outcome = OUTCOME_ASSERT_FAILED;
    klongjmp(&run.env, 1);
}

void ktest_expect_exception(uint64_t vector)
{
    run.expect = EXPECT_EXCEPTION;
    run.expect_value = vector;
}

void ktest_expect_page_fault(uint64_t addr)
{
    run.expect = EXPECT_PAGE_FAULT;
    run.expect_value = addr;
}

void ktest_expect_panic_containing(const char *text)
{
    run.expect = EXPECT_PANIC_TEXT;
    run.expect_text = text;
}

void ktest_defer(void (*fn)(void *arg), void *arg)
{
    if (run.ndeferred == KTEST_MAX_DEFERRED)
        ktest_fail(__FILE__, __LINE__, "ktest_defer: more than %d deferred calls", KTEST_MAX_DEFERRED);
    run.deferred[run.ndeferred].fn = fn;
    run.deferred[run.ndeferred].arg = arg;
    run.ndeferred++;
}

void ktest_log(const char *fmt, ...)
{
    char line[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    kprintf("# %s\n", line);
}

static void on_panic(const char *message)
{
    if (run.test == NULL)
        return; /* a harness bug: let panic() end the run */
    run.outcome = OUTCOME_PANIC;
    ksnprintf(run.reason, sizeof(run.reason), "panic: %s", message);
    klongjmp(&run.env, 1);
}

static void on_fault(const struct trap_info *info)
{
    if (run.test == NULL)
        return;
    run.outcome = OUTCOME_EXCEPTION;
    run.fault = *info;
    if (info->vector == TRAP_PAGE_FAULT)
        ksnprintf(run.reason, sizeof(run.reason), "exception %llu (%s) at rip %p, cr2 %p",
                  (unsigned long long)info->vector, trap_name(info->vector), (void *)info->rip,
                  (void *)info->cr2);
    else
        ksnprintf(run.reason, sizeof(run.reason), "exception %llu (%s) at rip %p",
                  (unsigned long long)info->vector, trap_name(info->vector), (void *)info->rip);
    klongjmp(&run.env, 1);
}

/* Decides whether an expect-panic test ended the way it said it would;
   writes the reason into run.reason when it did not. */
static bool expectation_met(void)
{
    char got[REASON_MAX];
    memcpy(got, run.reason, sizeof(got));
    switch (run.expect) {
    case EXPECT_ANY: return true;
    case EXPECT_EXCEPTION:
        if (run.outcome == OUTCOME_EXCEPTION && run.fault.vector == run.expect_value)
            return true;
        ksnprintf(run.reason, sizeof(run.reason), "expected exception %llu (%s), got %s",
                  (unsigned long long)run.expect_value, trap_name(run.expect_value), got);
        return false;
    case EXPECT_PAGE_FAULT:
        if (run.outcome == OUTCOME_EXCEPTION && run.fault.vector == TRAP_PAGE_FAULT &&
            run.fault.cr2 == run.expect_value)
            return true;
        ksnprintf(run.reason, sizeof(run.reason), "expected a page fault at %p, got %s",
                  (void *)run.expect_value, got);
        return false;
    case EXPECT_PANIC_TEXT:
        if (run.outcome == OUTCOME_PANIC && kstrstr(run.reason, run.expect_text) != NULL)
            return true;
        ksnprintf(run.reason, sizeof(run.reason), "expected a panic containing \"%s\", got %s",
                  run.expect_text, got);
        return false;
    }
    return false;
}

static bool run_one(size_t number, const struct ktest *t)
{
    kprintf("# running %zu %s\n", number, t->name);
    run.test = t;
    run.outcome = OUTCOME_RETURNED;
    run.reason[0] = '\0';
    run.expect = EXPECT_ANY;
    run.ndeferred = 0;

    if (ksetjmp(&run.env) == 0)
        t->body();

    /* Whatever the test left behind, the next one starts clean. */
    run.test = NULL;
    console_capture_end();
    timer_set_tick_hook(NULL, NULL);
    trap_forget_irq_handlers();
    sti();
    /* Deferred cleanups run outside the test: a panic in one ends the run
       (and the runner names this test as the one that crashed). */
    while (run.ndeferred > 0) {
        run.ndeferred--;
        run.deferred[run.ndeferred].fn(run.deferred[run.ndeferred].arg);
    }

    bool ok;
    if (t->expect_panic) {
        if (run.outcome == OUTCOME_RETURNED) {
            ksnprintf(run.reason, sizeof(run.reason), "expected a panic or exception, but the test returned");
            ok = false;
        } else if (run.outcome == OUTCOME_ASSERT_FAILED) {
            ok = false;
        } else {
            ok = expectation_met();
        }
    } else {
        ok = run.outcome == OUTCOME_RETURNED;
    }
    if (ok)
        kprintf("ok %zu %s\n", number, t->name);
    else
        kprintf("not ok %zu %s # %s\n", number, t->name, run.reason);
    return ok;
}

_Noreturn void kernel_main(void)
{
    size_t n = collect_tests();
    size_t skip = read_skip();
    if (skip == 0)
        kprintf("KTAP version 1\n1..%zu\n", n);
    else
        kprintf("# resuming at test %zu of %zu\n", skip + 1, n);

    panic_hook = on_panic;
    fault_hook = on_fault;
    size_t passed = 0, failed = 0;
    for (size_t i = skip; i < n; i++) {
        if (run_one(i + 1, tests[i]))
            passed++;
        else
            failed++;
    }
    panic_hook = NULL;
    fault_hook = NULL;
    kprintf("# ktest: %zu passed, %zu failed\n", passed, failed);
    qemu_exit(failed == 0 ? QEMU_EXIT_SUCCESS : QEMU_EXIT_FAILURE);
}

/* The depth limit only keeps the compiler from proving infinite recursion;
   the call through a volatile pointer keeps every frame. */
static volatile unsigned long overflow_limit = ~0ul;

static unsigned long overflow_frames(unsigned long depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    if (depth >= overflow_limit)
        return depth;
    unsigned long (*volatile self)(unsigned long) = overflow_frames;
    return self(depth + 1) + (unsigned long)frame[0];
}

void ktest_overflow_stack(void)
{
    overflow_frames(0);
}
