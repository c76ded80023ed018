/*
 * fuzz_heap.c - libFuzzer target: input bytes drive heap operations on one backend.
 *
 * Built once per backend with -DFUZZ_BACKEND="name". The heap lives in a static buffer: it starts
 * small (4..64 KiB, chosen by the input) and grows from the same buffer, adjacently or past a hole,
 * up to FUZZ_LIMIT, so out-of-memory, growth and non-adjacent regions are all reachable.
 *
 * Input: byte 0 = configuration (bits 0-1 initial size, 2-5 holes before growths, 6 give memory
 * back, 7 no growth), then 4-byte operations { op, slot, size_lo, size_hi }.
 * After every operation the new block is checked (alignment, inside the buffer, no overlap with live
 * blocks, usable size) and contents of freed/reallocated blocks are verified; heap_check() runs every
 * 16 operations and at the end. Any violation traps, so libFuzzer reports it as a crash. Built with
 * -DKHEAP_HARDENING=1 it fuzzes the hardened library, whose report handler traps too: every
 * operation here is correct, so a report is a false positive.
 *
 * Giving memory back (bit 6): env.release / env.reclaim record the released ranges and make them
 * PROT_NONE, so a heap that touches a page it gave back (a header, a link, poison it verifies: its
 * metadata) faults. release() traps on a range that is misaligned, outside the memory given, or
 * overlapping a live block or a range still released; reclaim() on a range not released; reclaimed
 * pages come back zeroed, and every new block must lie outside the released ranges. (The fuzzers are
 * built with a small HEAP_TRIM_THRESHOLD, so a 1 MiB heap gives memory back often.)
 */
#define _DEFAULT_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "heap.h"
#include "heap_backend.h"

#ifndef FUZZ_BACKEND
#error "define FUZZ_BACKEND"
#endif

#define FUZZ_BUF   ((size_t)4 << 20)
#define FUZZ_LIMIT ((size_t)1 << 20)
#define SLOTS      32

static _Alignas(16384) unsigned char buf[FUZZ_BUF];

struct grower {
    size_t used;   /* bytes of buf handed out (including holes) */
    size_t limit;  /* max used */
    unsigned gaps; /* bit i: leave a hole before the i-th growth */
    unsigned calls;
};

struct slot {
    unsigned char *p;
    size_t usable;
    uint8_t seed;
};

static struct slot slots[SLOTS];

/* Giving memory back: the ranges released and not reclaimed (at most one per page of the limit). */
#define MAX_RANGES (FUZZ_LIMIT / 4096)
static struct range {
    uintptr_t lo, hi;
} released[MAX_RANGES];
static size_t nreleased;
static const unsigned char *in_flux; /* the block being freed or reallocated: not live for release() */

#define REQUIRE(cond)         \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

static int fuzz_grow(void *ctx, size_t min_bytes, void **start, size_t *len)
{
    struct grower *g = ctx;
    size_t gap = (g->gaps >> (g->calls % 8)) & 1 ? 4096 : 0;
    size_t n = (min_bytes + 4095) & ~(size_t)4095;

    if (n < min_bytes || g->used > g->limit || n > g->limit - g->used || gap > g->limit - g->used - n)
        return -1;
    *start = buf + g->used + gap;
    *len = n;
    g->used += gap + n;
    g->calls++;
    return 0;
}

static size_t released_bytes(void)
{
    size_t n = 0;

    for (size_t i = 0; i < nreleased; i++)
        n += released[i].hi - released[i].lo;
    return n;
}

static bool overlaps_released(uintptr_t lo, uintptr_t hi)
{
    for (size_t i = 0; i < nreleased; i++)
        if (lo < released[i].hi && released[i].lo < hi)
            return true;
    return false;
}

static void fuzz_release(void *ctx, void *start, size_t len)
{
    struct grower *g = ctx;
    uintptr_t lo = (uintptr_t)start, hi = lo + len;

    REQUIRE(len != 0 && (lo | len) % 4096 == 0);
    REQUIRE(lo >= (uintptr_t)buf && hi <= (uintptr_t)buf + g->used);
    REQUIRE(!overlaps_released(lo, hi));
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL && slots[i].p != in_flux)
            REQUIRE(hi <= (uintptr_t)slots[i].p || (uintptr_t)slots[i].p + slots[i].usable <= lo);
    REQUIRE(nreleased < MAX_RANGES);
    released[nreleased++] = (struct range){lo, hi};
    REQUIRE(mprotect(start, len, PROT_NONE) == 0);
}

/* Takes [lo, hi) out of the released ranges; traps unless all of it was released. */
static int fuzz_reclaim(void *ctx, void *start, size_t len)
{
    uintptr_t lo = (uintptr_t)start, hi = lo + len;
    size_t covered = 0;

    (void)ctx;
    REQUIRE(len != 0 && (lo | len) % 4096 == 0);
    for (size_t i = 0; i < nreleased; i++) {
        uintptr_t cl = released[i].lo > lo ? released[i].lo : lo,
                  ch = released[i].hi < hi ? released[i].hi : hi;
        covered += cl < ch ? ch - cl : 0;
    }
    REQUIRE(covered == len);
    for (size_t i = 0; i < nreleased;) {
        struct range r = released[i];
        if (r.hi <= lo || hi <= r.lo) {
            i++;
            continue;
        }
        released[i] = released[--nreleased];
        if (r.lo < lo)
            released[nreleased++] = (struct range){r.lo, lo};
        if (hi < r.hi) {
            REQUIRE(nreleased < MAX_RANGES);
            released[nreleased++] = (struct range){hi, r.hi};
        }
    }
    REQUIRE(mprotect(start, len, PROT_READ | PROT_WRITE) == 0);
    memset(start, 0, len); /* reads as zeroes (the contract); the pages kept their old bytes here */
    return 0;
}

/* The heap is done with: its released pages become accessible again (LeakSanitizer scans buf at exit). */
static void forget_released(void)
{
    for (size_t i = 0; i < nreleased; i++)
        REQUIRE(mprotect((void *)released[i].lo, released[i].hi - released[i].lo, PROT_READ | PROT_WRITE) ==
                0);
    nreleased = 0;
}

static unsigned char pat(uint8_t seed, size_t i)
{
    return (unsigned char)(seed ^ (i * 13));
}

static void mark(struct slot *s)
{
    size_t n = s->usable < 32 ? s->usable : 32;
    for (size_t i = 0; i < n; i++)
        s->p[i] = pat(s->seed, i);
    for (size_t i = s->usable - n; i < s->usable; i++)
        s->p[i] = pat(s->seed, i);
}

static void verify(const struct slot *s, size_t upto)
{
    size_t n = s->usable < 32 ? s->usable : 32;
    for (size_t i = 0; i < n && i < upto; i++)
        REQUIRE(s->p[i] == pat(s->seed, i));
    for (size_t i = s->usable - n; i < s->usable && i < upto; i++)
        REQUIRE(s->p[i] == pat(s->seed, i));
}

static void adopt(struct heap *h, int k, unsigned char *p, size_t size, size_t align, struct grower *g,
                  uint8_t seed)
{
    size_t usable = heap_usable_size(h, p);

    REQUIRE((uintptr_t)p % (align < 16 ? 16 : align) == 0);
    REQUIRE(usable >= (size ? size : 1));
    REQUIRE(p >= buf && p + usable <= buf + g->used);
    REQUIRE(!overlaps_released((uintptr_t)p, (uintptr_t)p + usable));
    for (int i = 0; i < SLOTS; i++)
        if (i != k && slots[i].p != NULL)
            REQUIRE(p + usable <= slots[i].p || slots[i].p + slots[i].usable <= p);
    slots[k] = (struct slot){p, usable, seed};
    mark(&slots[k]);
}

/* Hardened builds: the harness only does correct things, so any report is a bug (false positive). */
static void fuzz_report(void *ctx, const struct heap_report *r)
{
    (void)ctx;
    fprintf(stderr, "unexpected report: %s (%s) ptr %p size %zu offset %zu\n", heap_error_name(r->kind),
            r->backend, r->ptr, r->size, r->offset);
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct heap_ops *ops = heap_backend_find(FUZZ_BACKEND);
    struct grower g = {0};
    struct heap_env env = {.ctx = &g, .grow = fuzz_grow, .report = fuzz_report};
    struct heap *h;
    size_t initial;
    size_t live = 0;

    if (ops == NULL || size < 1)
        return 0;
    initial = (size_t)4096 << (data[0] & 3); /* 4, 8, 16, 32 KiB */
    g.gaps = (data[0] >> 2) & 15;
    g.used = initial;
    g.limit = FUZZ_LIMIT;
    if (data[0] & 0x40) {
        env.release = fuzz_release;
        env.reclaim = fuzz_reclaim;
    }
    if (data[0] & 0x80)
        env.grow = NULL;
    memset(slots, 0, sizeof(slots));
    h = heap_create(ops, buf, initial, &env);
    if (h == NULL)
        return 0;

    for (size_t i = 1, n = 0; i + 4 <= size; i += 4, n++) {
        uint8_t op = data[i];
        int k = data[i + 1] % SLOTS;
        size_t sz = (size_t)data[i + 2] | (size_t)data[i + 3] << 8;
        struct slot *s = &slots[k];

        /* Scale: op's high bits pick small, medium, large or absurd sizes. */
        switch (op >> 6) {
        case 0: sz &= 255; break;
        case 1: sz &= 4095; break;
        case 2: sz <<= 2; break;
        default: sz = (op & 8) ? SIZE_MAX - sz : sz << 4; break;
        }
        if (s->p != NULL) {
            if ((op & 7) < 3) { /* realloc */
                unsigned char *q;
                in_flux = s->p;
                q = heap_realloc(h, s->p, sz);
                in_flux = NULL;
                if (q == NULL) {
                    verify(s, SIZE_MAX);
                } else {
                    struct slot old = *s;
                    old.p = q;
                    verify(&old, sz < 32 ? sz : 32);
                    s->p = NULL;
                    adopt(h, k, q, sz, 16, &g, (uint8_t)(op + k));
                }
            } else {
                verify(s, SIZE_MAX);
                in_flux = s->p;
                heap_free(h, s->p);
                in_flux = NULL;
                s->p = NULL;
                live--;
            }
        } else {
            size_t align = 16;
            unsigned char *p;
            if ((op & 7) == 0) {
                /* 1 .. 8192 mostly; up to 2^63 now and then (served or refused cleanly). */
                align = (size_t)1 << (data[i + 1] < 240 ? data[i + 1] % 14 : data[i + 1] % 64);
                p = heap_alloc_aligned(h, sz, align);
            } else if ((op & 7) == 1) {
                size_t cnt = 1 + (data[i + 1] & 7);
                sz = sz / cnt; /* absurd sizes stay absurd: cnt * sz overflows or exceeds the limit */
                p = heap_calloc(h, cnt, sz);
                if (p != NULL)
                    for (size_t j = 0; j < sz * cnt && j < 64; j++)
                        REQUIRE(p[j] == 0);
                sz *= cnt;
            } else {
                p = heap_alloc(h, sz);
            }
            if (p != NULL) {
                adopt(h, k, p, sz, align, &g, (uint8_t)(op ^ k));
                live++;
            }
        }
        REQUIRE(heap_stats(h).live_allocs == live);
        if (n % 16 == 0)
            REQUIRE(heap_check(h) == 0);
    }
    REQUIRE(heap_check(h) == 0);
    for (int k = 0; k < SLOTS; k++)
        if (slots[k].p != NULL) {
            verify(&slots[k], SIZE_MAX);
            in_flux = slots[k].p;
            heap_free(h, slots[k].p);
            in_flux = NULL;
            slots[k].p = NULL;
        }
    struct heap_stats st = heap_stats(h);
    REQUIRE(st.live_allocs == 0 && st.bytes_in_use == 0 && st.errors_detected == 0);
    REQUIRE(st.bytes_mapped <= g.used); /* never more than the memory given */
    REQUIRE(st.pages_released * 4096 - st.pages_reclaimed * 4096 == released_bytes());
    REQUIRE(heap_hardening() == KHEAP_HARDENING);
    REQUIRE(heap_check(h) == 0);
    forget_released();
    return 0;
}
