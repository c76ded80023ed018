/*
 * Leaving QEMU: the isa-debug-exit device (iobase 0xf4) turns a write of v
 * into the exit status (v << 1) | 1. Success is 0x10 (status 33), failure
 * 0x11 (status 35), as in blog_os. Status 0 (a triple fault under
 * -no-reboot) is never a success. On hardware the write does nothing and
 * the CPU halts.
 */
#ifndef KHEAP_QEMU_H
#define KHEAP_QEMU_H

#include <stdint.h>

enum qemu_exit_code {
    QEMU_EXIT_SUCCESS = 0x10,
    QEMU_EXIT_FAILURE = 0x11,
};

/* Flushes the serial console, exits QEMU with code, halts if still running. */
_Noreturn void qemu_exit(enum qemu_exit_code code);

#endif
