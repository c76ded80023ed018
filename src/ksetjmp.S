/*
 * setjmp/longjmp (src/ksetjmp.h), for the test harness and for remote calls
 * that must survive a fault (src/smp.c): saves and restores the callee-saved
 * registers, the stack pointer and the return address (System V AMD64).
 *   int ksetjmp(struct kjmp_buf *buf);                 returns 0, then the
 *   _Noreturn void klongjmp(struct kjmp_buf *buf, int value);  value (1 if 0)
 */
    .text
    .global ksetjmp, klongjmp
ksetjmp:
    mov     %rbx, 0(%rdi)
    mov     %rbp, 8(%rdi)
    mov     %r12, 16(%rdi)
    mov     %r13, 24(%rdi)
    mov     %r14, 32(%rdi)
    mov     %r15, 40(%rdi)
    lea     8(%rsp), %rdx           /* the caller's rsp after we return */
    mov     %rdx, 48(%rdi)
    mov     (%rsp), %rdx            /* return address */
    mov     %rdx, 56(%rdi)
    xor     %eax, %eax
    ret

klongjmp:
    mov     0(%rdi), %rbx
    mov     8(%rdi), %rbp
    mov     16(%rdi), %r12
    mov     24(%rdi), %r13
    mov     32(%rdi), %r14
    mov     40(%rdi), %r15
    mov     48(%rdi), %rsp
    mov     %esi, %eax
    test    %eax, %eax
    jnz     1f
    inc     %eax
1:  jmp     *56(%rdi)

    .section .note.GNU-stack, "", @progbits
