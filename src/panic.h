/*
 * Fatal errors. panic() prints "PANIC in <function>: <message>", the source
 * location and a backtrace, then exits QEMU with failure (halts on
 * hardware). Messages name the function and the broken condition, xv6 style:
 * panic("mb2_parse: tag %u runs past total_size", type).
 */
#ifndef KHEAP_PANIC_H
#define KHEAP_PANIC_H

#include <stdint.h>

#include "kprintf.h"

#define panic(...) panic_at(__FILE__, __LINE__, __func__, __VA_ARGS__)

/* Checks an invariant that must hold; failure is a kernel bug and panics. */
#define kassert(cond)                             \
    do {                                          \
        if (!(cond))                              \
            panic("assertion failed: %s", #cond); \
    } while (0)

_Noreturn void panic_at(const char *file, int line, const char *func, const char *fmt, ...)
    KPRINTF_FORMAT(4, 5);

/* Called by panic_at() (after printing) with the formatted message. The test
   harness installs one to turn a panic inside a test into that test's
   result; it does not return in that case. NULL by default. */
extern void (*panic_hook)(const char *message);

/* Prints the return addresses of the frame-pointer chain starting at rbp. */
void print_backtrace(uint64_t rbp);

#endif
