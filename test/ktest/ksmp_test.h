/*
 * Helpers for kernel tests that run code on several CPUs at once: start a
 * function on every CPU and check that every call ended well, and a
 * barrier with a timeout. Code running on an AP must not fail the test
 * itself (KASSERT belongs to the BSP, which runs the test): it records what
 * went wrong in its own result, and the BSP asserts on it afterwards.
 * Every wait has a timeout, so a broken CPU fails a test instead of
 * hanging the run.
 */
#ifndef KHEAP_KSMP_TEST_H
#define KHEAP_KSMP_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "ktest.h"
#include "smp.h"

/* Returns true if at least two CPUs are online; otherwise logs that the
   test has nothing to check and returns false (tests that need two CPUs
   pass trivially, with that note, under -smp 1). */
static inline bool ktest_need_two_cpus(void)
{
    if (smp_cpu_count() >= 2)
        return true;
    ktest_log("only one CPU online: nothing to check here");
    return false;
}

/* How long ktest_on_all_cpus() waits for each CPU: long, because four
   vCPUs on two busy host cores can take seconds for what one CPU does in
   milliseconds; the functions it runs bound their own waits. */
#define KTEST_SMP_WAIT_MS 120000

/* Runs fn(args + i * arg_size) on every CPU i at once (the BSP, index 0,
   too) and fails the test unless every remote call ended well within
   KTEST_SMP_WAIT_MS. */
static inline void ktest_on_all_cpus(void (*fn)(void *arg), void *args, size_t arg_size)
{
    unsigned n = smp_cpu_count();
    for (unsigned i = 1; i < n; i++)
        KASSERT_EQ(smp_call_start(i, fn, (char *)args + i * arg_size), SMP_CALL_OK);
    fn(args);
    for (unsigned i = 1; i < n; i++) {
        struct smp_call_result r;
        enum smp_call_status st = smp_call_wait(i, KTEST_SMP_WAIT_MS, &r);
        if (st != SMP_CALL_OK)
            ktest_log("CPU %u: %s %s", i, smp_call_status_name(st), r.panic_message);
        KASSERT_EQ(st, SMP_CALL_OK);
    }
}

/* A one-shot barrier: zero it, then every party calls ktest_barrier_wait(). */
struct ktest_barrier {
    unsigned arrived;
};

/* Arrives at b and waits until parties CPUs have arrived. Returns false if
   they did not within timeout_ms (the caller then gives up and reports). */
static inline bool ktest_barrier_wait(struct ktest_barrier *b, unsigned parties, uint64_t timeout_ms)
{
    __atomic_fetch_add(&b->arrived, 1, __ATOMIC_ACQ_REL);
    uint64_t start = rdtsc(), limit = smp_ms_to_cycles(timeout_ms);
    while (__atomic_load_n(&b->arrived, __ATOMIC_ACQUIRE) < parties) {
        if (rdtsc() - start > limit)
            return false;
        cpu_relax();
    }
    return true;
}

#endif
