/* arena.c - mmap-backed growable arena for host builds; see kheap_host.h. */
#define _DEFAULT_SOURCE
#include "kheap_host.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HOST_PAGE ((size_t)4096)

static size_t page_up(size_t n)
{
    return (n + HOST_PAGE - 1) & ~(HOST_PAGE - 1);
}

/* a as just reserved at base (reserve bytes, page multiples) with its first initial bytes usable and
 * nothing else recorded; the released-ranges buffer (released, released_cap) is kept for reuse. */
static void arena_start(struct host_arena *a, unsigned char *base, size_t reserve, size_t initial)
{
    struct host_range *released = a->released;
    size_t cap = a->released_cap;

    *a = (struct host_arena){0};
    a->base = base;
    a->reserved = reserve;
    a->committed = initial;
    a->limit = reserve;
    a->chunk = HOST_PAGE;
    a->released = released;
    a->released_cap = cap;
}

int host_arena_init(struct host_arena *a, size_t reserve, size_t initial)
{
    void *p;

    *a = (struct host_arena){0};
    reserve = page_up(reserve);
    initial = page_up(initial);
    if (initial > reserve)
        return -1;
    p = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if (initial != 0 && mprotect(p, initial, PROT_READ | PROT_WRITE) != 0) {
        munmap(p, reserve);
        return -1;
    }
    arena_start(a, p, reserve, initial);
    return 0;
}

void host_arena_destroy(struct host_arena *a)
{
    if (a->base != NULL)
        munmap(a->base, a->reserved);
    free(a->released);
    *a = (struct host_arena){0};
}

int host_arena_rewind(struct host_arena *a, size_t initial)
{
    initial = page_up(initial);
    if (a->base == NULL || initial > a->reserved)
        return -1;
    if ((a->committed > initial && mprotect(a->base + initial, a->committed - initial, PROT_NONE) != 0) ||
        (initial != 0 && mprotect(a->base, initial, PROT_READ | PROT_WRITE) != 0))
        return -1;
    arena_start(a, a->base, a->reserved, initial);
    return 0;
}

int host_arena_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    struct host_arena *a = ctx;
    size_t n = page_up(min_bytes > a->chunk ? min_bytes : a->chunk);
    size_t gap = 0;

    if (n < min_bytes) /* page_up overflowed */
        goto fail;
    if (a->gap_every != 0 && (a->grow_calls + 1) % a->gap_every == 0)
        gap = HOST_PAGE;
    if (a->committed > a->limit || n > a->limit - a->committed || gap > a->limit - a->committed - n)
        goto fail;
    if (mprotect(a->base + a->committed + gap, n, PROT_READ | PROT_WRITE) != 0)
        goto fail;
    *start = a->base + a->committed + gap;
    *len = n;
    a->committed += gap + n;
    a->gap_bytes += gap;
    a->grow_calls++;
    return 0;
fail:
    a->failed_grows++;
    return -1;
}

struct heap_env host_arena_env(struct host_arena *a)
{
    return (struct heap_env){.ctx = a, .grow = host_arena_grow};
}

/* Appends [lo, hi) to the released ranges without touching the pages (also a piece left by a
 * reclaim). Returns false, counting a release error, if there is no memory for the record. */
static bool host_arena_release_record(struct host_arena *a, uintptr_t lo, uintptr_t hi)
{
    if (a->nreleased == a->released_cap) {
        size_t cap = a->released_cap ? 2 * a->released_cap : 64;
        struct host_range *r = realloc(a->released, cap * sizeof(*r));
        if (r == NULL) {
            a->release_errors++;
            return false;
        }
        a->released = r;
        a->released_cap = cap;
    }
    a->released[a->nreleased++] = (struct host_range){lo, hi};
    return true;
}

bool host_arena_overlaps_released(const struct host_arena *a, const void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;

    for (size_t i = 0; i < a->nreleased; i++)
        if (lo < a->released[i].hi && a->released[i].lo < hi)
            return true;
    return false;
}

void host_arena_release(void *ctx, void *start, size_t len)
{
    struct host_arena *a = ctx;
    uintptr_t lo = (uintptr_t)start, hi = lo + len;

    if (len == 0 || (lo | len) % HOST_PAGE != 0 || !host_arena_contains(a, start, len) ||
        host_arena_overlaps_released(a, start, len)) {
        a->release_errors++;
        return;
    }
    if (!host_arena_release_record(a, lo, hi))
        return;
    a->released_bytes += len;
    madvise(start, len, MADV_DONTNEED);
    mprotect(start, len, PROT_NONE);
}

int host_arena_reclaim(void *ctx, void *start, size_t len)
{
    struct host_arena *a = ctx;
    uintptr_t lo = (uintptr_t)start, hi = lo + len;
    size_t covered = 0;

    if (a->refuse_reclaim)
        return -1;
    for (size_t i = 0; i < a->nreleased; i++) {
        struct host_range r = a->released[i];
        uintptr_t cl = r.lo > lo ? r.lo : lo, ch = r.hi < hi ? r.hi : hi;
        if (cl < ch)
            covered += ch - cl;
    }
    if (len == 0 || (lo | len) % HOST_PAGE != 0 || covered != len) {
        a->reclaim_errors++; /* some page of it was not given back */
        return -1;
    }
    /* Cut [lo, hi) out of every range it overlaps: up to two pieces of each remain. */
    for (size_t i = 0; i < a->nreleased;) {
        struct host_range r = a->released[i];
        if (r.hi <= lo || hi <= r.lo) {
            i++;
            continue;
        }
        a->released[i] = a->released[--a->nreleased];
        if (r.lo < lo)
            host_arena_release_record(a, r.lo, lo);
        if (hi < r.hi)
            host_arena_release_record(a, hi, r.hi);
    }
    a->released_bytes -= len;
    return mprotect(start, len, PROT_READ | PROT_WRITE) == 0 ? 0 : -1;
}

struct heap_env host_arena_release_env(struct host_arena *a)
{
    struct heap_env env = host_arena_env(a);

    env.release = host_arena_release;
    env.reclaim = host_arena_reclaim;
    return env;
}

bool host_arena_contains(const struct host_arena *a, const void *p, size_t n)
{
    uintptr_t s = (uintptr_t)a->base, e = s + a->committed, q = (uintptr_t)p;
    return q >= s && q <= e && n <= e - q;
}

char *host_report_format(const struct heap_report *r, char *buf, size_t len)
{
    snprintf(buf, len,
             "kheap: %s (%s): block %p size %zu, first bad byte at offset %zu; caller %p, "
             "allocated at %p, freed at %p",
             heap_error_name(r->kind), r->backend, r->ptr, r->size, r->offset, r->caller, r->alloc_site,
             r->free_site);
    return buf;
}
