#include "panic.h"

#include <stdint.h>

#include "cpu.h"
#include "memlayout.h"
#include "qemu.h"
#include "smp.h"

#define BACKTRACE_MAX_FRAMES 16

void (*panic_hook)(const char *message);

static bool in_panic;

static bool is_kernel_address(uint64_t addr)
{
    if (addr >= KERNEL_CPU_STACKS_BASE && addr < CPU_STACK_SLOT_BASE(CPU_STACK_SLOTS))
        return true; /* an AP's stack */
    return addr >= (uint64_t)(uintptr_t)__text_start && addr < (uint64_t)(uintptr_t)__kernel_end;
}

void print_backtrace(uint64_t rbp)
{
    kprintf("backtrace:\n");
    for (int i = 0; i < BACKTRACE_MAX_FRAMES && rbp != 0; i++) {
        /* Only follow frames that lie in the kernel image (stacks live in .bss). */
        if (!is_kernel_address(rbp) || (rbp & 7) != 0)
            break;
        const uint64_t *frame = (const uint64_t *)(uintptr_t)rbp;
        uint64_t ret = frame[1];
        if (ret == 0)
            break;
        kprintf("  #%d %p\n", i, (void *)(uintptr_t)ret);
        rbp = frame[0];
    }
}

_Noreturn void panic_at(const char *file, int line, const char *func, const char *fmt, ...)
{
    static char message[256];
    cli();
    unsigned cpu = smp_cpu_index();
    if (cpu != 0) {
        /* An AP: inside a remote call the caller gets the message; outside
           one the machine stops (the test harness runs on the BSP only). */
        char ap_message[SMP_PANIC_MESSAGE_MAX];
        va_list ap;
        va_start(ap, fmt);
        kvsnprintf(ap_message, sizeof(ap_message), fmt, ap);
        va_end(ap);
        kprintf("\nPANIC in %s on CPU %u: %s\n  at %s:%d\n", func, cpu, ap_message, file, line);
        print_backtrace((uint64_t)(uintptr_t)__builtin_frame_address(0));
        smp_catch_panic(ap_message);
        qemu_exit(QEMU_EXIT_FAILURE);
    }
    if (in_panic) {
        kprintf("\nPANIC while panicking in %s (%s:%d)\n", func, file, line);
        qemu_exit(QEMU_EXIT_FAILURE);
    }
    in_panic = true;

    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);

    kprintf("\nPANIC in %s: %s\n  at %s:%d\n", func, message, file, line);
    print_backtrace((uint64_t)(uintptr_t)__builtin_frame_address(0));

    if (panic_hook != NULL) {
        in_panic = false;
        panic_hook(message);
    }
    qemu_exit(QEMU_EXIT_FAILURE);
}
