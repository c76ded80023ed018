/*
 * Several CPUs: bring-up, per-CPU data and remote calls.
 *
 * smp_init() finds the CPUs in the ACPI MADT (src/acpi.c) and starts every
 * application processor (AP) with INIT-SIPI-SIPI through the real-mode
 * trampoline (boot/trampoline.S): 16-bit -> 32-bit -> 64-bit on the kernel's
 * page tables, its own stack and double-fault stack (each above an unmapped
 * guard page, in the KERNEL_CPU_STACKS window), its own GDT and TSS, the
 * shared IDT, and its struct cpu in the GS base. docs/boot.md draws it.
 * An AP that does not answer within SMP_AP_START_TIMEOUT_MS (TSC, calibrated
 * against the PIT) is reported, put back to sleep with INIT, and skipped.
 *
 * APs then idle in hlt with interrupts on and wait for work:
 * smp_call_start(cpu, fn, arg) runs fn(arg) on CPU cpu, smp_call_wait()
 * waits for it with a timeout. A fault or a panic inside fn is caught and
 * reported back to the caller (the AP returns to its idle loop), so a test
 * that expects a fault on another CPU cannot bring the machine down.
 */
#ifndef KHEAP_SMP_H
#define KHEAP_SMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trap.h"

#define SMP_MAX_CPUS            64
#define SMP_AP_START_TIMEOUT_MS 2000
#define SMP_CALL_TIMEOUT_MS     10000
#define SMP_PANIC_MESSAGE_MAX   160

/* How a remote call ended. */
enum smp_call_status {
    SMP_CALL_OK = 0,
    SMP_CALL_FAULT,   /* fn took a CPU exception: result.fault says which */
    SMP_CALL_PANIC,   /* fn panicked: result.panic_message says why */
    SMP_CALL_TIMEOUT, /* no answer in time; the CPU is left busy */
    SMP_CALL_NO_CPU,  /* no such CPU, or it is not online */
    SMP_CALL_BUSY,    /* a previous call to that CPU has not finished */
};

struct smp_call_result {
    enum smp_call_status status;
    struct trap_info fault;
    char panic_message[SMP_PANIC_MESSAGE_MAX];
};

struct kjmp_buf;
struct boot_info;

/* One per CPU, reached through the GS base: gs:0 holds its own address. */
struct cpu {
    struct cpu *self; /* must stay first: this_cpu() reads gs:0 */
    unsigned index;   /* 0 = the boot CPU (BSP), then MADT order */
    uint32_t apic_id;
    bool online;
    uint64_t stack_top, df_stack_top; /* the AP's kernel and double-fault stacks */
    /* Remote call mailbox: the caller fills fn/arg, then bumps call_seq;
       the CPU runs it and copies call_seq to call_done. */
    void (*call_fn)(void *arg);
    void *call_arg;
    uint64_t call_seq, call_done;
    struct smp_call_result call_result;
    struct kjmp_buf *catch_env; /* set while a remote call runs: faults and panics jump here */
    uint64_t ipis;              /* local APIC interrupts (IPIs, APIC timer) this CPU has handled */
};

/* Returns this CPU's struct cpu (from the GS base). */
static inline struct cpu *this_cpu(void)
{
    struct cpu *c;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(c));
    return c;
}

/* Returns this CPU's index (0 for the BSP). */
static inline unsigned smp_cpu_index(void)
{
    unsigned i;
    __asm__ volatile("movl %%gs:%c1, %0" : "=r"(i) : "i"(__builtin_offsetof(struct cpu, index)));
    return i;
}

/* Makes the boot CPU's struct cpu reachable through GS. First thing in
   kernel_entry(): every lock asks which CPU it runs on. */
void smp_init_bsp(void);
/* Starts every CPU the MADT lists (at most SMP_MAX_CPUS), printing each one
   that comes up and each one that does not. Needs the kernel page tables,
   the timer and interrupts on (the timeouts use the calibrated TSC), and
   the parsed boot information (for the RSDP and the memory map). Panics on
   bad ACPI tables or if no usable page below 1 MiB holds the trampoline. */
void smp_init(const struct boot_info *bi);
/* After smp_init(), on the BSP: starts the CPU with APIC id apic_id as the
   next CPU index, through the same trampoline and INIT-SIPI-SIPI sequence,
   waiting up to timeout_ms for it. Returns true once it is online. A CPU
   that does not answer in time is reported ("smp: CPU with APIC id N did
   not start within T ms: skipped"), sent INIT again and skipped: false, and
   nothing else changes (its stack slot stays mapped for the next attempt).
   Also false, without sending anything, if apic_id is already online (an
   INIT would reset it), SMP_MAX_CPUS are online, there is no local APIC or
   the caller is not the BSP. Not for concurrent use. */
bool smp_start_cpu(const struct boot_info *bi, uint32_t apic_id, uint64_t timeout_ms);
/* Number of CPUs online (1 before smp_init()). */
unsigned smp_cpu_count(void);
/* The struct cpu of online CPU index (< smp_cpu_count()), or NULL. */
struct cpu *smp_cpu(unsigned index);

/* Asks CPU index to run fn(arg) (with interrupts on) and returns at once:
   SMP_CALL_OK if the request was posted, SMP_CALL_NO_CPU or SMP_CALL_BUSY
   otherwise. index may not be this CPU. */
enum smp_call_status smp_call_start(unsigned index, void (*fn)(void *arg), void *arg);
/* Waits up to timeout_ms for the call posted to CPU index and returns how
   it ended (also in *result if not NULL). */
enum smp_call_status smp_call_wait(unsigned index, uint64_t timeout_ms, struct smp_call_result *result);
/* smp_call_start() + smp_call_wait(SMP_CALL_TIMEOUT_MS). On this CPU, fn
   runs directly (a fault or panic is then not caught). */
enum smp_call_status smp_call(unsigned index, void (*fn)(void *arg), void *arg,
                              struct smp_call_result *result);
/* A name for a status ("fault"). */
const char *smp_call_status_name(enum smp_call_status status);

/* Called by the trap handler for an exception, and by panic(), on a CPU
   other than the BSP: inside a remote call they jump back to the idle loop
   with the call's result set; outside one they return and the machine
   stops. message is NULL for an exception. */
void smp_catch_fault(const struct trap_info *fault);
void smp_catch_panic(const char *message);

/* Returns the TSC cycles of ms milliseconds (timer_tsc_hz()). */
uint64_t smp_ms_to_cycles(uint64_t ms);

#endif
