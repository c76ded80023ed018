/*
 * kernel_main() of the bootable kernel: what `run` shows. It prints the
 * boot log (kernel_entry() already printed the boot information) and exits
 * QEMU with success.
 */
#include "kernel.h"
#include "kprintf.h"
#include "qemu.h"
#include "timer.h"

_Noreturn void kernel_main(void)
{
    kprintf("timer ticks so far: %llu\n", (unsigned long long)timer_ticks());
    kprintf("kheap: boot complete, exiting\n");
    qemu_exit(QEMU_EXIT_SUCCESS);
}
