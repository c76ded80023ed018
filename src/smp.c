/*
 * Bringing up the application processors, and remote calls (see smp.h).
 *
 * Start-up, one AP at a time, so one trampoline page and one parameter
 * block serve them all:
 *   1. the BSP maps the AP's stacks (slot i of KERNEL_CPU_STACKS_BASE, each
 *      stack above an unmapped guard page) and fills the parameter block;
 *   2. INIT, 10 ms, STARTUP (vector = trampoline page number), 200 us, and a
 *      second STARTUP if the AP has not set its online flag yet (SDM vol.
 *      3, 8.4.4.1, the universal start-up algorithm);
 *   3. it waits up to SMP_AP_START_TIMEOUT_MS (TSC) for the flag; an AP
 *      that stays silent gets INIT again (so it cannot wake up later on
 *      another AP's parameters) and is reported and skipped.
 * The trampoline page is identity-mapped only while APs start; afterwards
 * the mapping and its page tables go (and every TLB forgets them).
 */
#include "smp.h"

#include "acpi.h"
#include "cpu.h"
#include "gdt.h"
#include "kprintf.h"
#include "ksetjmp.h"
#include "kstring.h"
#include "lapic.h"
#include "memlayout.h"
#include "multiboot2.h"
#include "panic.h"
#include "paging/paging.h"
#include "paging/pmm.h"
#include "spinlock.h"
#include "timer.h"
#include "tlb.h"
#include "trampoline.h"

#define MSR_GS_BASE     0xc0000101
#define MSR_EFER        0xc0000080
#define EFER_LME        (1ull << 8)
#define EFER_NXE        (1ull << 11)
#define REAL_MODE_LIMIT 0x100000ull /* a STARTUP vector names a page below 1 MiB */
#define INIT_DELAY_US   10000
#define SIPI_DELAY_US   200

static struct cpu cpus[SMP_MAX_CPUS];
static unsigned ncpus = 1;
static struct spinlock call_lock = SPINLOCK_INIT("smp call");

void smp_init_bsp(void)
{
    cpus[0].self = &cpus[0];
    cpus[0].index = 0;
    cpus[0].online = true;
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)&cpus[0]);
}

unsigned smp_cpu_count(void)
{
    return __atomic_load_n(&ncpus, __ATOMIC_ACQUIRE);
}

struct cpu *smp_cpu(unsigned index)
{
    return index < smp_cpu_count() ? &cpus[index] : NULL;
}

uint64_t smp_ms_to_cycles(uint64_t ms)
{
    uint64_t cycles;
    if (__builtin_mul_overflow(timer_tsc_hz(), ms, &cycles))
        return UINT64_MAX;
    return cycles / 1000;
}

static void delay_us(uint64_t us)
{
    uint64_t start = rdtsc(), cycles = timer_tsc_hz() / 1000000 * us;
    while (rdtsc() - start < cycles)
        cpu_relax();
}

const char *smp_call_status_name(enum smp_call_status status)
{
    switch (status) {
    case SMP_CALL_OK: return "ok";
    case SMP_CALL_FAULT: return "fault";
    case SMP_CALL_PANIC: return "panic";
    case SMP_CALL_TIMEOUT: return "timeout";
    case SMP_CALL_NO_CPU: return "no such CPU";
    case SMP_CALL_BUSY: return "busy";
    }
    return "unknown";
}

/* --- On the APs ------------------------------------------------------- */

/* Runs the posted call with faults and panics caught (smp_catch_*). */
static void run_call(struct cpu *c)
{
    struct kjmp_buf env;
    c->call_result.status = SMP_CALL_OK;
    c->call_result.panic_message[0] = '\0';
    if (ksetjmp(&env) == 0) {
        c->catch_env = &env;
        c->call_fn(c->call_arg);
    }
    c->catch_env = NULL;
    sti(); /* a fault or panic left with interrupts off */
}

/* The AP's life after start-up: sleep until a call is posted. Interrupts
   are disabled between the check and hlt, and "sti; hlt" cannot be split
   by an interrupt, so a wake-up IPI is never lost. */
static _Noreturn void ap_idle(struct cpu *c)
{
    for (;;) {
        cli();
        uint64_t seq = __atomic_load_n(&c->call_seq, __ATOMIC_ACQUIRE);
        if (seq != c->call_done) {
            sti();
            run_call(c);
            __atomic_store_n(&c->call_done, seq, __ATOMIC_RELEASE);
            continue;
        }
        __asm__ volatile("sti; hlt" : : : "memory");
    }
}

/* Called by the trampoline in 64-bit mode on the AP's own stack. */
static _Noreturn void ap_entry(struct cpu *c)
{
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)c);
    gdt_init_cpu(c->index, c->df_stack_top);
    idt_load();
    lapic_init_ap();
    c->apic_id = lapic_id();
    __atomic_store_n(&c->online, true, __ATOMIC_RELEASE);
    ap_idle(c);
}

void smp_catch_fault(const struct trap_info *fault)
{
    struct cpu *c = this_cpu();
    struct kjmp_buf *env = c->catch_env;
    if (env == NULL)
        return;
    c->catch_env = NULL;
    c->call_result.status = SMP_CALL_FAULT;
    c->call_result.fault = *fault;
    klongjmp(env, 1);
}

void smp_catch_panic(const char *message)
{
    struct cpu *c = this_cpu();
    struct kjmp_buf *env = c->catch_env;
    if (env == NULL)
        return;
    c->catch_env = NULL;
    c->call_result.status = SMP_CALL_PANIC;
    size_t n = strlen(message);
    if (n >= sizeof(c->call_result.panic_message))
        n = sizeof(c->call_result.panic_message) - 1;
    memcpy(c->call_result.panic_message, message, n);
    c->call_result.panic_message[n] = '\0';
    klongjmp(env, 1);
}

/* --- Remote calls ----------------------------------------------------- */

enum smp_call_status smp_call_start(unsigned index, void (*fn)(void *arg), void *arg)
{
    struct cpu *c = smp_cpu(index);
    if (c == NULL || index == smp_cpu_index() || !__atomic_load_n(&c->online, __ATOMIC_ACQUIRE))
        return SMP_CALL_NO_CPU;
    unsigned long flags = spin_lock_irqsave(&call_lock);
    uint64_t seq = c->call_seq;
    if (seq != __atomic_load_n(&c->call_done, __ATOMIC_ACQUIRE)) {
        spin_unlock_irqrestore(&call_lock, flags);
        return SMP_CALL_BUSY;
    }
    c->call_fn = fn;
    c->call_arg = arg;
    __atomic_store_n(&c->call_seq, seq + 1, __ATOMIC_RELEASE);
    spin_unlock_irqrestore(&call_lock, flags);
    lapic_send_ipi(c->apic_id, LAPIC_ICR_FIXED | LAPIC_ICR_ASSERT | TRAP_IPI_CALL);
    return SMP_CALL_OK;
}

enum smp_call_status smp_call_wait(unsigned index, uint64_t timeout_ms, struct smp_call_result *result)
{
    struct cpu *c = smp_cpu(index);
    enum smp_call_status st = SMP_CALL_NO_CPU;
    if (c != NULL && index != smp_cpu_index()) {
        uint64_t seq = __atomic_load_n(&c->call_seq, __ATOMIC_ACQUIRE);
        uint64_t start = rdtsc(), limit = smp_ms_to_cycles(timeout_ms);
        st = SMP_CALL_OK;
        while (__atomic_load_n(&c->call_done, __ATOMIC_ACQUIRE) != seq) {
            if (rdtsc() - start > limit) {
                st = SMP_CALL_TIMEOUT;
                break;
            }
            tlb_shootdown_poll(); /* the callee may be shooting down with us waiting */
            cpu_relax();
        }
        if (st == SMP_CALL_OK)
            st = c->call_result.status;
        if (result != NULL && st != SMP_CALL_TIMEOUT)
            *result = c->call_result;
    }
    if (result != NULL)
        result->status = st;
    return st;
}

enum smp_call_status smp_call(unsigned index, void (*fn)(void *arg), void *arg,
                              struct smp_call_result *result)
{
    if (index == smp_cpu_index()) {
        fn(arg);
        if (result != NULL)
            result->status = SMP_CALL_OK;
        return SMP_CALL_OK;
    }
    enum smp_call_status st = smp_call_start(index, fn, arg);
    if (st != SMP_CALL_OK) {
        if (result != NULL)
            result->status = st;
        return st;
    }
    return smp_call_wait(index, SMP_CALL_TIMEOUT_MS, result);
}

/* --- Start-up --------------------------------------------------------- */

static void call_ipi(const struct trap_frame *frame)
{
    (void)frame; /* only wakes the CPU from hlt; ap_idle() finds the call */
}

/* Returns the highest usable page below 1 MiB (not page 0) that the
   memory map calls available and that holds none of the boot information,
   or 0 if there is none. */
static uint64_t find_trampoline_page(const struct boot_info *bi)
{
    uint64_t best = 0;
    for (size_t i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *r = &bi->mmap[i];
        uint64_t end;
        if (r->type != MEM_AVAILABLE || __builtin_add_overflow(r->base, r->length, &end))
            continue;
        if (end > REAL_MODE_LIMIT)
            end = REAL_MODE_LIMIT;
        uint64_t lo = (r->base + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
        if (lo < PAGE_SIZE)
            lo = PAGE_SIZE;
        for (uint64_t p = end & ~(PAGE_SIZE - 1); p >= lo + PAGE_SIZE; p -= PAGE_SIZE) {
            uint64_t page = p - PAGE_SIZE;
            if (page < bi->info_phys_end && page + PAGE_SIZE > bi->info_phys_start)
                continue;
            if (page > best)
                best = page;
            break;
        }
    }
    return best;
}

static void map_fresh(uint64_t virt, uint64_t bytes)
{
    for (uint64_t v = virt; v < virt + bytes; v += PAGE_SIZE) {
        uint64_t phys;
        if (paging_translate(v, &phys, NULL))
            continue; /* a slot reused after an AP that did not start */
        uint64_t frame = pmm_alloc_frame();
        if (frame == PMM_NO_FRAME)
            panic("smp_init: no frame for a CPU stack");
        memset(phys_to_virt(frame), 0, PAGE_SIZE);
        enum paging_status st = paging_map(v, frame, PTE_WRITABLE | PTE_NO_EXECUTE | PTE_GLOBAL);
        if (st != PAGING_OK)
            panic("smp_init: mapping a CPU stack at %p: %s", (void *)v, paging_strerror(st));
    }
}

/* Maps CPU index's stacks in its slot, guard pages left unmapped. */
static void map_stacks(struct cpu *c)
{
    uint64_t slot = CPU_STACK_SLOT_BASE((uint64_t)c->index);
    uint64_t kstack = slot + PAGE_SIZE;
    uint64_t dfstack = kstack + CPU_KSTACK_SIZE + PAGE_SIZE;
    map_fresh(kstack, CPU_KSTACK_SIZE);
    map_fresh(dfstack, CPU_DFSTACK_SIZE);
    c->stack_top = kstack + CPU_KSTACK_SIZE;
    c->df_stack_top = dfstack + CPU_DFSTACK_SIZE;
}

/* The trampoline while APs start: its page below 1 MiB (identity-mapped)
   and the parameter block in it. */
struct trampoline {
    uint64_t phys;
    uint8_t *page;
    size_t size;
    struct trampoline_params *params;
};

static bool wait_online(struct cpu *c, uint64_t us)
{
    uint64_t start = rdtsc(), limit = timer_tsc_hz() / 1000000 * us;
    while (!__atomic_load_n(&c->online, __ATOMIC_ACQUIRE)) {
        if (rdtsc() - start > limit)
            return false;
        cpu_relax();
    }
    return true;
}

/* Starts the AP with apic_id as CPU index, waiting up to timeout_ms for
   it; returns true once it is online. */
static bool start_ap(uint32_t apic_id, unsigned index, const struct trampoline *t, uint64_t timeout_ms)
{
    struct cpu *c = &cpus[index];
    memset(c, 0, sizeof(*c));
    c->self = c;
    c->index = index;
    c->apic_id = apic_id;
    map_stacks(c);
    t->params->stack = c->stack_top;
    t->params->entry = (uint64_t)(uintptr_t)ap_entry;
    t->params->cpu = (uint64_t)(uintptr_t)c;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    uint32_t vector = (uint32_t)(t->phys / PAGE_SIZE);
    lapic_send_ipi(apic_id, LAPIC_ICR_INIT | LAPIC_ICR_ASSERT);
    delay_us(INIT_DELAY_US);
    lapic_send_ipi(apic_id, LAPIC_ICR_STARTUP | vector);
    if (!wait_online(c, SIPI_DELAY_US))
        lapic_send_ipi(apic_id, LAPIC_ICR_STARTUP | vector);
    if (wait_online(c, timeout_ms * 1000ull))
        return true;
    lapic_send_ipi(apic_id, LAPIC_ICR_INIT | LAPIC_ICR_ASSERT); /* back to sleep for good */
    return false;
}

/* Starts apic_id as the next CPU index; on success it counts as online,
   otherwise it is reported and skipped (its stack slot is reused by the
   next attempt). */
static bool start_next_ap(uint32_t apic_id, const struct trampoline *t, uint64_t timeout_ms)
{
    unsigned index = ncpus;
    if (start_ap(apic_id, index, t, timeout_ms)) {
        __atomic_store_n(&ncpus, index + 1, __ATOMIC_RELEASE);
        return true;
    }
    kprintf("smp: CPU with APIC id %u did not start within %llu ms: skipped\n", apic_id,
            (unsigned long long)timeout_ms);
    return false;
}

/* Copies the trampoline to a free page below 1 MiB, fills its parameter
   block and identity-maps the page (the switch to long mode runs from it
   with paging on). Panics if there is no such page or the mapping fails. */
static void trampoline_install(const struct boot_info *bi, struct trampoline *t)
{
    t->phys = find_trampoline_page(bi);
    if (t->phys == 0)
        panic("smp_init: no available page below 1 MiB for the AP trampoline");
    t->size = (size_t)(trampoline_end - trampoline_start);
    _Static_assert(TP_SIZE < PAGE_SIZE, "the parameter block fits in the page");
    if (t->size > PAGE_SIZE)
        panic("smp_init: trampoline of %zu bytes larger than a page", t->size);
    t->page = phys_to_virt(t->phys);
    memcpy(t->page, trampoline_start, t->size);
    struct trampoline_params *params =
        (struct trampoline_params *)(t->page + (trampoline_params - trampoline_start));
    uint64_t cr3 = read_cr3() & PTE_ADDR_MASK;
    if (cr3 >= (1ull << 32))
        panic("smp_init: kernel PML4 at %p above 4 GiB: a 32-bit trampoline cannot load it", (void *)cr3);
    params->gdt_limit = (uint16_t)(trampoline_gdt_end - trampoline_gdt - 1);
    params->gdt_base = (uint32_t)(t->phys + (uint64_t)(trampoline_gdt - trampoline_start));
    params->far32_offset = (uint32_t)(t->phys + (uint64_t)(trampoline_pm32 - trampoline_start));
    params->far32_selector = TR_CODE32;
    params->far64_offset = (uint32_t)(t->phys + (uint64_t)(trampoline_lm64 - trampoline_start));
    params->far64_selector = TR_CODE64;
    params->cr3 = (uint32_t)cr3;
    params->cr4 = (uint32_t)read_cr4();
    params->efer = (uint32_t)(rdmsr(MSR_EFER) & (EFER_LME | EFER_NXE));
    t->params = params;
    /* Read-only and executable, for as long as start-up takes. */
    enum paging_status st = paging_map(t->phys, t->phys, 0);
    if (st != PAGING_OK)
        panic("smp_init: identity-mapping the trampoline at %p: %s", (void *)t->phys, paging_strerror(st));
}

/* Removes the identity mapping from every CPU's TLB and the tables that
   held it, and wipes the page. */
static void trampoline_remove(const struct trampoline *t)
{
    uint64_t ignored;
    if (paging_unmap(t->phys, &ignored) != PAGING_OK)
        panic("smp_init: the trampoline's identity mapping is gone");
    tlb_shootdown(t->phys, 1);
    paging_free_empty_tables(t->phys);
    memset(t->page, 0, t->size);
}

void smp_init(const struct boot_info *bi)
{
    if (bi->acpi_rsdp == NULL) {
        kprintf("smp: no ACPI RSDP from the boot loader: running on the boot CPU only\n");
        return;
    }
    struct acpi_cpus found;
    if (!acpi_find_cpus(bi->acpi_rsdp, bi->acpi_rsdp_size, &found))
        return;
    lapic_init(found.lapic_phys);
    cpus[0].apic_id = lapic_id();
    ipi_set_handler(TRAP_IPI_CALL, call_ipi);
    tlb_init();
    if (found.ignored > 0)
        kprintf("smp: the MADT lists %zu more CPUs than SMP_MAX_CPUS %d; ignoring them\n", found.ignored,
                SMP_MAX_CPUS);

    struct trampoline t;
    trampoline_install(bi, &t);
    kprintf("smp: %zu CPUs in the MADT, local APIC %p (%s), trampoline at %p\n", found.count,
            (void *)found.lapic_phys, lapic_x2apic() ? "x2APIC" : "xAPIC", (void *)t.phys);
    for (size_t i = 0; i < found.count && ncpus < SMP_MAX_CPUS; i++)
        if (found.apic_ids[i] != cpus[0].apic_id)
            start_next_ap(found.apic_ids[i], &t, SMP_AP_START_TIMEOUT_MS);
    trampoline_remove(&t);

    kprintf("smp: %u CPUs online, APIC ids:", ncpus);
    for (unsigned i = 0; i < ncpus; i++)
        kprintf(" %u", cpus[i].apic_id);
    kprintf("\n");
}

bool smp_start_cpu(const struct boot_info *bi, uint32_t apic_id, uint64_t timeout_ms)
{
    if (!lapic_ready() || smp_cpu_index() != 0 || ncpus == SMP_MAX_CPUS)
        return false;
    for (unsigned i = 0; i < ncpus; i++)
        if (cpus[i].apic_id == apic_id)
            return false; /* an INIT would reset a running CPU */
    struct trampoline t;
    trampoline_install(bi, &t);
    bool ok = start_next_ap(apic_id, &t, timeout_ms);
    trampoline_remove(&t);
    return ok;
}
