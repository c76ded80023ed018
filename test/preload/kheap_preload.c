/*
 * kheap_preload.c - the C allocation API (malloc & co.) of a Linux process served by ONE kheap heap,
 * built as build/lib/libkheap-<backend>[-hardened].so and used with LD_PRELOAD.
 *
 * How it works. The first allocation (or the library's constructor, whichever comes first) reserves
 * PRELOAD_RESERVE bytes of address space PROT_NONE and creates a heap of the backend this library was
 * built for (KHEAP_PRELOAD_BACKEND) in its first PRELOAD_CHUNK bytes. The heap's grow() callback
 * commits further chunks at the end of the reservation with mprotect() (the kernel's heap region,
 * in miniature); once the reservation is used up it maps fresh, non-adjacent regions. The heap_env
 * lock is a pthread mutex, taken around fork() by pthread_atfork handlers so a child never inherits
 * it locked.
 *
 * Recursion. Nothing reachable from malloc() may call malloc(): no stdio, no dlsym(), no lazy
 * initialisation that allocates. Initialisation uses only mmap(), getenv() and getrandom(); all
 * output is formatted by hand into a stack buffer and written with write(2). Hardened-mode reports
 * symbolize addresses with dladdr(), which does not allocate.
 *
 * Environment:
 *   KHEAP_STATS=1   at exit, print the heap's counters and heap_check()'s verdict to stderr.
 *   KHEAP_MAP=path  at exit, write the heap map (heap_walk()) to path.
 * Hardened mode: a detected error prints a report (kind, pointer, size, offset, caller, allocation and
 * free sites) to stderr and aborts the process.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "heap.h"
#include "preload_out.h"

#ifndef KHEAP_PRELOAD_BACKEND
#error "KHEAP_PRELOAD_BACKEND must name the backend (e.g. \"linked_list\")"
#endif

#define PRELOAD_PAGE    ((size_t)4096)
#define PRELOAD_RESERVE ((size_t)64 << 30) /* address space reserved up front (64 GiB, PROT_NONE) */
#define PRELOAD_CHUNK   ((size_t)1 << 20)  /* bytes committed per grow() at least */

#define PRELOAD_HIGH_FD 200 /* duplicated descriptors go at or above this, away from the program's */

#define EXPORT __attribute__((visibility("default")))

/* The process's heap and where its memory comes from. */
static struct {
    struct heap *heap;
    unsigned char *base; /* the reservation */
    size_t committed;    /* bytes of it made read/write so far */
    pthread_mutex_t lock;
    pthread_mutex_t init_lock;
    atomic_bool ready; /* heap is set: checked without init_lock */
    bool init_failed;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .init_lock = PTHREAD_MUTEX_INITIALIZER};

/* Rounds n up to whole pages; 0 if that overflows. */
static size_t page_up(size_t n)
{
    return n > SIZE_MAX - (PRELOAD_PAGE - 1) ? 0 : (n + PRELOAD_PAGE - 1) & ~(PRELOAD_PAGE - 1);
}

/* heap_env.lock: the process-wide heap mutex. Returns 0 (nothing to restore). */
static unsigned long preload_lock(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g.lock);
    return 0;
}

/* heap_env.unlock: releases preload_lock(). */
static void preload_unlock(void *ctx, unsigned long saved)
{
    (void)ctx;
    (void)saved;
    pthread_mutex_unlock(&g.lock);
}

/* heap_env.grow: commits max(min_bytes, PRELOAD_CHUNK) rounded to pages at the end of the
 * reservation, or maps a fresh region once the reservation is full. Returns 0, or -1 if the kernel
 * refuses. Called with the heap lock held; allocates nothing. */
static int preload_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    (void)ctx;
    size_t n = page_up(min_bytes > PRELOAD_CHUNK ? min_bytes : PRELOAD_CHUNK);
    if (n == 0)
        return -1;
    if (n <= PRELOAD_RESERVE - g.committed) {
        if (mprotect(g.base + g.committed, n, PROT_READ | PROT_WRITE) != 0)
            return -1;
        *start = g.base + g.committed;
        g.committed += n;
    } else {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        *start = p;
    }
    *len = n;
    return 0;
}

/* Writes "sym+0xoff (object)" for addr, or "object+0xoff", or just the address, to the buffer. */
static void put_site(struct preload_out *o, const void *addr)
{
    Dl_info info;

    preload_put_hex(o, (uintptr_t)addr);
    if (addr == NULL || dladdr(addr, &info) == 0 || info.dli_fname == NULL)
        return;
    preload_put_str(o, " (");
    if (info.dli_sname != NULL && info.dli_saddr != NULL) {
        preload_put_str(o, info.dli_sname);
        preload_put_str(o, "+");
        preload_put_hex(o, (uintptr_t)addr - (uintptr_t)info.dli_saddr);
        preload_put_str(o, " in ");
        preload_put_str(o, info.dli_fname);
    } else {
        preload_put_str(o, info.dli_fname);
        preload_put_str(o, "+");
        preload_put_hex(o, (uintptr_t)addr - (uintptr_t)info.dli_fbase);
    }
    preload_put_str(o, ")");
}

/* heap_env.report (hardened mode): prints the report to stderr and aborts. Called with the heap lock
 * held, so it allocates nothing and never returns into the heap. */
static void preload_report(void *ctx, const struct heap_report *r)
{
    (void)ctx;
    struct preload_out o = preload_out_start(STDERR_FILENO);

    preload_put_str(&o, "==================================================================\n");
    preload_put_str(&o, "kheap: HEAP ERROR: ");
    preload_put_str(&o, heap_error_name(r->kind));
    preload_put_str(&o, " on ");
    preload_put_hex(&o, (uintptr_t)r->ptr);
    preload_put_str(&o, " (");
    preload_put_str(&o, r->backend);
    preload_put_str(&o, " backend)\n");
    if (r->size != 0) {
        preload_put_str(&o, "  block of ");
        preload_put_dec(&o, r->size);
        preload_put_str(&o, " requested bytes, first bad byte at offset ");
        preload_put_dec(&o, r->offset);
        preload_put_str(&o, "\n");
    } else if (r->offset != 0) {
        preload_put_str(&o, "  first bad byte at offset ");
        preload_put_dec(&o, r->offset);
        preload_put_str(&o, "\n");
    }
    preload_put_str(&o, "  detected in the call from ");
    put_site(&o, r->caller);
    if (r->alloc_site != NULL) {
        preload_put_str(&o, "\n  allocated by the call from ");
        put_site(&o, r->alloc_site);
    }
    if (r->free_site != NULL) {
        preload_put_str(&o, "\n  freed by the call from ");
        put_site(&o, r->free_site);
    }
    preload_put_str(&o, "\n==================================================================\n");
    preload_flush(&o);
    abort();
}

/* fork() handlers: the child gets the heap in a consistent state and the lock free. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&g.lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g.lock);
}

static void atfork_child(void)
{
    pthread_mutex_init(&g.lock, NULL);
}

/* A secret for the hardened heap: getrandom(), else the clock mixed with the reservation's address. */
static uint64_t boot_secret(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uintptr_t)g.base;
    }
    return s | 1;
}

/* Creates the heap once (thread-safe). Returns the heap, or NULL if the process cannot get memory
 * (then every allocation fails with ENOMEM). Allocates nothing through malloc. */
static struct heap *heap_get(void)
{
    if (__builtin_expect(atomic_load_explicit(&g.ready, memory_order_acquire), 1))
        return g.heap;
    pthread_mutex_lock(&g.init_lock);
    if (!atomic_load_explicit(&g.ready, memory_order_relaxed) && !g.init_failed) {
        void *p = mmap(NULL, PRELOAD_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        struct heap *h = NULL;
        if (p != MAP_FAILED && mprotect(p, PRELOAD_CHUNK, PROT_READ | PROT_WRITE) == 0) {
            g.base = p;
            g.committed = PRELOAD_CHUNK;
            struct heap_env env = {
                .lock = preload_lock,
                .unlock = preload_unlock,
                .grow = preload_grow,
                .report = preload_report,
                .secret = boot_secret(),
            };
            h = heap_create(heap_backend_find(KHEAP_PRELOAD_BACKEND), p, PRELOAD_CHUNK, &env);
        }
        if (h != NULL) {
            g.heap = h;
            atomic_store_explicit(&g.ready, true, memory_order_release);
        } else {
            g.init_failed = true;
        }
    }
    pthread_mutex_unlock(&g.init_lock);
    return g.heap;
}

/* True if environment variable name is set to something other than "" or "0". */
static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Where KHEAP_STATS output goes: a duplicate of stderr made at start-up, because many programs
 * (coreutils' close_stdout) close stderr before the destructors run. -1: no stats wanted. */
static int stats_fd = -1;

/* Constructor: creates the heap if no allocation did yet, installs the fork handlers (here, not in
 * malloc, because pthread_atfork may allocate) and keeps a descriptor for the exit-time stats. */
__attribute__((constructor)) static void preload_init(void)
{
    heap_get();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    if (env_flag("KHEAP_STATS"))
        stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, PRELOAD_HIGH_FD);
}

/* Writes one "name value" line of the stats. */
static void put_stat(struct preload_out *o, const char *name, uint64_t v)
{
    preload_put_str(o, "kheap:   ");
    preload_put_str(o, name);
    preload_put_dec(o, v);
    preload_put_str(o, "\n");
}

/* heap_walk() callback for KHEAP_MAP: one line "state address bytes [objects capacity object_size]". */
static bool map_line(void *ctx, const struct heap_walk_entry *e)
{
    static const char *const names[] = {"free", "used", "slab"};
    struct preload_out *o = ctx;
    preload_put_str(o, names[e->state]);
    preload_put_str(o, " ");
    preload_put_hex(o, (uintptr_t)e->addr);
    preload_put_str(o, " ");
    preload_put_dec(o, e->size);
    if (e->state == HEAP_WALK_SLAB) {
        preload_put_str(o, " ");
        preload_put_dec(o, e->objects);
        preload_put_str(o, " ");
        preload_put_dec(o, e->capacity);
        preload_put_str(o, " ");
        preload_put_dec(o, e->object_size);
    }
    preload_put_str(o, "\n");
    return true;
}

/* Destructor: with KHEAP_MAP=path writes the heap map (heap_walk(), one line per entry, after a
 * "backend NAME" line) to path; tools/heapmap.py draws it. */
__attribute__((destructor)) static void preload_map(void)
{
    const char *path = getenv("KHEAP_MAP");
    if (g.heap == NULL || path == NULL || path[0] == '\0')
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    struct preload_out o = preload_out_start(fd);
    preload_put_str(&o, "backend ");
    preload_put_str(&o, heap_backend_name(g.heap));
    preload_put_str(&o, "\n");
    heap_walk(g.heap, map_line, &o);
    preload_flush(&o);
    close(fd);
}

/* Destructor: with KHEAP_STATS=1 prints the heap's counters and heap_check()'s result to stderr. */
__attribute__((destructor)) static void preload_fini(void)
{
    if (g.heap == NULL || stats_fd < 0)
        return;
    struct heap_stats s = heap_stats(g.heap);
    size_t broken = heap_check(g.heap);
    struct preload_out o = preload_out_start(stats_fd);
    preload_put_str(&o, "kheap: stats (backend ");
    preload_put_str(&o, heap_backend_name(g.heap));
    preload_put_str(&o, heap_hardening() ? ", hardened)\n" : ", plain)\n");
    put_stat(&o, "bytes_in_use    ", s.bytes_in_use);
    put_stat(&o, "bytes_mapped    ", s.bytes_mapped);
    put_stat(&o, "peak_in_use     ", s.peak_in_use);
    put_stat(&o, "live_allocs     ", s.live_allocs);
    put_stat(&o, "total_allocs    ", s.total_allocs);
    put_stat(&o, "total_frees     ", s.total_frees);
    put_stat(&o, "failed_allocs   ", s.failed_allocs);
    put_stat(&o, "errors_detected ", s.errors_detected);
    put_stat(&o, "check           ", broken);
    preload_flush(&o);
}

/* Sets errno to ENOMEM when p is NULL; returns p. */
static void *nomem(void *p)
{
    if (p == NULL)
        errno = ENOMEM;
    return p;
}

/* C malloc: at least size bytes aligned to 16, or NULL with errno ENOMEM. */
EXPORT void *malloc(size_t size)
{
    struct heap *h = heap_get();
    return nomem(h != NULL ? heap_alloc_from(h, size, __builtin_return_address(0)) : NULL);
}

/* C free: ptr == NULL does nothing. */
EXPORT void free(void *ptr)
{
    if (ptr != NULL && g.heap != NULL)
        heap_free_from(g.heap, ptr, __builtin_return_address(0));
}

/* C calloc: n * size zeroed bytes, or NULL with ENOMEM (also when the product overflows). */
EXPORT void *calloc(size_t n, size_t size)
{
    struct heap *h = heap_get();
    return nomem(h != NULL ? heap_calloc_from(h, n, size, __builtin_return_address(0)) : NULL);
}

/* C realloc, glibc flavour: realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns NULL. */
EXPORT void *realloc(void *ptr, size_t size)
{
    struct heap *h = heap_get();
    if (ptr != NULL && size == 0) {
        if (h != NULL)
            heap_free_from(h, ptr, __builtin_return_address(0));
        return NULL;
    }
    return nomem(h != NULL ? heap_realloc_from(h, ptr, size, __builtin_return_address(0)) : NULL);
}

/* realloc(ptr, n * size), or NULL with ENOMEM (ptr untouched) when the product overflows. */
EXPORT void *reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    struct heap *h = heap_get();
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (ptr != NULL && total == 0) {
        if (h != NULL)
            heap_free_from(h, ptr, __builtin_return_address(0));
        return NULL;
    }
    return nomem(h != NULL ? heap_realloc_from(h, ptr, total, __builtin_return_address(0)) : NULL);
}

/* Returns size bytes aligned to align, or NULL with errno (EINVAL: align not a power of two). */
static void *aligned(size_t align, size_t size, const void *caller)
{
    struct heap *h = heap_get();
    if (align == 0 || (align & (align - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return nomem(h != NULL ? heap_alloc_aligned_from(h, size, align, caller) : NULL);
}

/* memalign: size bytes aligned to align (a power of two), or NULL with errno. */
EXPORT void *memalign(size_t align, size_t size)
{
    return aligned(align, size, __builtin_return_address(0));
}

/* aligned_alloc (C11): as memalign. */
EXPORT void *aligned_alloc(size_t align, size_t size)
{
    return aligned(align, size, __builtin_return_address(0));
}

/* posix_memalign: stores the block in *memptr and returns 0; EINVAL if align is not a power of two
 * multiple of sizeof(void *), ENOMEM if out of memory (*memptr untouched on failure). */
EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
    if (align % sizeof(void *) != 0 || align == 0 || (align & (align - 1)) != 0)
        return EINVAL;
    int saved = errno;
    void *p = aligned(align, size, __builtin_return_address(0));
    if (p == NULL)
        return ENOMEM;
    errno = saved;
    *memptr = p;
    return 0;
}

/* valloc: size bytes aligned to the page size. */
EXPORT void *valloc(size_t size)
{
    return aligned(PRELOAD_PAGE, size, __builtin_return_address(0));
}

/* pvalloc: size rounded up to whole pages, page-aligned (ENOMEM if the rounding overflows). */
EXPORT void *pvalloc(size_t size)
{
    size_t n = page_up(size == 0 ? 1 : size);
    if (n == 0) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned(PRELOAD_PAGE, n, __builtin_return_address(0));
}

/* malloc_usable_size: the usable bytes of ptr's block (the requested size in hardened mode), 0 for
 * NULL. */
EXPORT size_t malloc_usable_size(void *ptr)
{
    return ptr != NULL && g.heap != NULL ? heap_usable_size(g.heap, ptr) : 0;
}
