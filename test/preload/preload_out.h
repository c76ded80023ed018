/*
 * preload_out.h - text output that never allocates: a stack buffer, hand-formatted numbers, write(2).
 * For code that runs inside malloc() or after the heap is broken (reports, stats at exit, heap maps),
 * where stdio could call back into the allocator.
 */
#ifndef KHEAP_PRELOAD_OUT_H
#define KHEAP_PRELOAD_OUT_H

#include <stddef.h>
#include <stdint.h>

#define PRELOAD_OUT_BUF 1024

/* A buffered writer to one file descriptor. */
struct preload_out {
    int fd;
    size_t len;
    char buf[PRELOAD_OUT_BUF];
};

/* Returns an empty writer for fd. */
struct preload_out preload_out_start(int fd);

/* Appends s (NUL-terminated); flushes when the buffer fills. */
void preload_put_str(struct preload_out *o, const char *s);

/* Appends v in decimal. */
void preload_put_dec(struct preload_out *o, uint64_t v);

/* Appends v as 0x followed by lower-case hex digits. */
void preload_put_hex(struct preload_out *o, uint64_t v);

/* Writes out what is buffered (retrying short writes; errors are ignored). */
void preload_flush(struct preload_out *o);

#endif /* KHEAP_PRELOAD_OUT_H */
