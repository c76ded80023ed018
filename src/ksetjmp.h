/*
 * setjmp/longjmp for the kernel (src/ksetjmp.S): the test harness ends a
 * test that panicked this way, and an AP leaves a remote call that faulted.
 * Saves the callee-saved registers, the stack pointer and the return
 * address (System V AMD64); nothing else (interrupt state is the caller's).
 */
#ifndef KHEAP_KSETJMP_H
#define KHEAP_KSETJMP_H

#include <stdint.h>

struct kjmp_buf {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
};
_Static_assert(sizeof(struct kjmp_buf) == 64, "matches src/ksetjmp.S");

/* Saves the registers in buf and returns 0; returns again, with the value
   passed to klongjmp() (1 if that was 0), when klongjmp(buf) is called. */
int ksetjmp(struct kjmp_buf *buf) __attribute__((returns_twice));
/* Jumps back into the ksetjmp() that filled buf, whose frame must still be live. */
_Noreturn void klongjmp(struct kjmp_buf *buf, int value);

#endif
