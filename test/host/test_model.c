/*
 * test_model.c - model-based random test of one backend through the public heap API.
 *
 * Usage: test_model <backend> [seed] [ops]      (or env KHEAP_SEED / KHEAP_OPS)
 *
 * A shadow model keeps every live block (pointer, requested size, alignment, usable size, fill
 * seed). Random alloc / aligned alloc / calloc / realloc / free / free-all operations with sizes from
 * 0 to 256 KiB run against a heap that starts at 64 KiB and grows through an mmap arena (sometimes
 * non-adjacently) up to a limit, so out-of-memory and growth paths are exercised. After every step:
 * the new block is aligned, inside committed arena memory and overlaps no live block; usable sizes and
 * stats equal the model's; contents of blocks survive (probe bytes at both ends). heap_check() runs
 * every CHECK_EVERY steps and at the end. With a 4th argument "release" the heap gives memory back
 * through arena.c's recording environment, and whenever no block is live bytes_mapped must lie within
 * the documented bound (check_full_free_bound). On failure the seed is printed with the command to
 * rerun it.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#define SLOTS            256
#define PROBE            48
#define CHECK_EVERY      256
#define ARENA_RESERVE    ((size_t)256 << 20)
#define ARENA_LIMIT      ((size_t)3 << 20)  /* small enough that growth really runs out */
#define BUMP_ARENA_LIMIT ((size_t)24 << 20) /* bump only reuses after free-all: more room, more resets */
#define ARENA_INITIAL    ((size_t)64 << 10)

struct slot {
    unsigned char *p; /* NULL = empty */
    size_t size, align, usable;
    uint8_t seed;
};

static struct slot slots[SLOTS];
static struct host_arena arena;
static struct heap *h;
static const char *backend;
static uint64_t seed, step, rng;
static size_t model_in_use, model_live;
static uint64_t model_failed;
static size_t model_peak;
static uint64_t full_free_checks; /* check_full_free_bound() calls once something was freed */

static uint64_t next_rand(void)
{
    return heap_rand(&rng);
}

static uint64_t below(uint64_t n)
{
    return next_rand() % n;
}

static void die(const char *what)
{
    fprintf(stderr,
            "model FAILED: backend=%s seed=%" PRIu64 " step=%" PRIu64 ": %s\n"
            "rerun: test_model %s %" PRIu64 " (or KHEAP_SEED=%" PRIu64 ")\n",
            backend, seed, step, what, backend, seed, seed);
    exit(1);
}

static unsigned char pattern(uint8_t s, size_t i)
{
    return (unsigned char)(s * 31u + i * 7u + (i >> 8));
}

/* Writes the pattern at the probe positions: the first and last PROBE bytes below n. */
static void probe_write(unsigned char *p, size_t n, uint8_t s)
{
    for (size_t i = 0; i < n && i < PROBE; i++)
        p[i] = pattern(s, i);
    for (size_t i = n > PROBE ? n - PROBE : 0; i < n; i++)
        p[i] = pattern(s, i);
}

static int probe_ok(const unsigned char *p, size_t n, uint8_t s)
{
    for (size_t i = 0; i < n && i < PROBE; i++)
        if (p[i] != pattern(s, i))
            return 0;
    for (size_t i = n > PROBE ? n - PROBE : 0; i < n; i++)
        if (p[i] != pattern(s, i))
            return 0;
    return 1;
}

static size_t random_size(void)
{
    uint64_t r = below(1000);
    if (r < 10)
        return 0;
    if (r < 600)
        return 1 + below(128);
    if (r < 850)
        return 129 + below(2048 - 128);
    if (r < 960)
        return 2049 + below(16 << 10);
    return 16385 + below(240 << 10);
}

static size_t random_align(void)
{
    if (below(50) == 0)
        return (size_t)1 << (14 + below(48)); /* up to 2^61: served or refused cleanly (docs/edges.md) */
    return (size_t)1 << below(14);            /* 1 .. 8192 */
}

/* Validates a fresh block of slot s (pointer, alignment, placement, overlap) and records it. */
static void adopt(int s, unsigned char *p, size_t size, size_t align)
{
    size_t need = size == 0 ? 1 : size;
    size_t eff = align < 16 ? 16 : align;
    size_t usable = heap_usable_size(h, p);

    if ((uintptr_t)p % eff != 0)
        die("misaligned block");
    if (usable < need)
        die("usable size smaller than requested");
    if (!host_arena_contains(&arena, p, usable))
        die("block outside the arena");
    for (int i = 0; i < SLOTS; i++) {
        if (i == s || slots[i].p == NULL)
            continue;
        if (p < slots[i].p + slots[i].usable && slots[i].p < p + usable)
            die("blocks overlap");
    }
    slots[s] = (struct slot){p, size, align, usable, (uint8_t)next_rand()};
    model_in_use += usable;
    if (model_in_use > model_peak)
        model_peak = model_in_use;
    model_live++;
    probe_write(p, usable, slots[s].seed);
}

static void release(int s)
{
    if (!probe_ok(slots[s].p, slots[s].usable, slots[s].seed))
        die("block contents changed");
    if (heap_usable_size(h, slots[s].p) != slots[s].usable)
        die("usable size changed");
    heap_free(h, slots[s].p);
    model_in_use -= slots[s].usable;
    model_live--;
    slots[s].p = NULL;
}

static void op_realloc(int s)
{
    struct slot old = slots[s];
    size_t size = random_size();
    unsigned char *q;

    if (below(50) == 0)
        size = SIZE_MAX - below(5000); /* must fail, keep the block */
    q = heap_realloc(h, old.p, size);
    if (q == NULL) {
        model_failed++;
        if (!probe_ok(old.p, old.usable, old.seed))
            die("failed realloc changed the block");
        return;
    }
    /* The kept prefix must have survived: probe positions below min(old usable, size). */
    size_t keep = old.usable < size ? old.usable : size;
    for (size_t i = 0; i < keep && i < PROBE; i++)
        if (q[i] != pattern(old.seed, i))
            die("realloc lost the head of the block");
    model_in_use -= old.usable;
    model_live--;
    slots[s].p = NULL;
    adopt(s, q, size, 16);
}

/* The bound on what stays mapped once every block is freed (docs/memory.md, "What stays mapped after
 * everything is freed"): each free block keeps at most min(its size, FULL_FREE_KEEP) mapped; what
 * the walk does not cover (instances, region headers, sentinels) and the backend's own used blocks
 * (fixed_size_block's kept empty slabs, at most one per object size, and cached large blocks) stay;
 * bump keeps only its current region's first FULL_FREE_KEEP bytes. */
#define FULL_FREE_KEEP (HEAP_TRIM_THRESHOLD + 3 * HEAP_PAGE_SIZE)

struct walk_sum {
    size_t covered;      /* bytes of all non-SLAB entries */
    size_t free_allowed; /* sum over free blocks of min(size, FULL_FREE_KEEP) */
    size_t used;         /* bytes of used (backend-owned: no block is live) entries */
    size_t slabs;        /* SLAB entries */
    size_t sizes[64];    /* object sizes of the SLAB entries seen */
    bool bad;            /* a SLAB with live objects, or two empty slabs of one size */
};

static bool sum_entry(void *ctx, const struct heap_walk_entry *e)
{
    struct walk_sum *w = ctx;

    if (e->state == HEAP_WALK_SLAB) {
        for (size_t i = 0; i < w->slabs && i < 64; i++)
            w->bad |= w->sizes[i] == e->object_size;
        if (w->slabs < 64)
            w->sizes[w->slabs] = e->object_size;
        w->slabs++;
        w->bad |= e->objects != 0;
        return true;
    }
    w->covered += e->size;
    if (e->state == HEAP_WALK_FREE)
        w->free_allowed += e->size < FULL_FREE_KEEP ? e->size : FULL_FREE_KEEP;
    else
        w->used += e->size;
    return true;
}

/* No block is live: bytes_mapped is within the bound above. */
static void check_full_free_bound(void)
{
    struct heap_stats st = heap_stats(h);
    struct walk_sum w = {0};
    size_t given = arena.committed - arena.gap_bytes, metadata;

    full_free_checks += st.total_frees != 0;
    if (heap_is_arena(h)) {
        /* One region (no gaps for bump here): the reset gave back every page beyond the first
         * HEAP_TRIM_THRESHOLD bytes after the reset point, and nothing took them back since. */
        if (st.bytes_mapped > FULL_FREE_KEEP)
            die("bytes_mapped with no live block exceeds HEAP_TRIM_THRESHOLD + 3 pages (bump reset)");
        return;
    }
    heap_walk(h, sum_entry, &w);
    if (w.bad)
        die("no live block, yet a slab with live objects or two kept empty slabs of one size");
    if (w.covered > given)
        die("heap_walk covers more than the heap was given");
    metadata = given - w.covered;
    if (st.bytes_mapped > metadata + w.free_allowed + w.used)
        die("bytes_mapped with no live block exceeds the bound (a free block keeps HEAP_TRIM_THRESHOLD + 3 "
            "pages)");
}

static void compare_stats(void)
{
    struct heap_stats st = heap_stats(h);
    if (st.bytes_in_use != model_in_use)
        die("stats.bytes_in_use differs from the model");
    if (st.live_allocs != model_live)
        die("stats.live_allocs differs from the model");
    if (st.failed_allocs != model_failed)
        die("stats.failed_allocs differs from the model");
    if (st.peak_in_use < st.bytes_in_use || st.peak_in_use < model_peak)
        die("stats.peak_in_use too low");
    if (st.bytes_mapped != arena.committed - arena.gap_bytes - arena.released_bytes)
        die("stats.bytes_mapped differs from the memory given (minus what was given back)");
    if (arena.release_errors != 0 || arena.reclaim_errors != 0)
        die("a release overlapped another or a reclaim was of memory never given back");
    if (st.errors_detected != 0)
        die("hardened mode reported an error for a correct sequence");
}

int main(int argc, char **argv)
{
    bool give_back;
    const struct heap_ops *ops;
    uint64_t ops_count = 1000000;
    const char *env_seed = getenv("KHEAP_SEED"), *env_ops = getenv("KHEAP_OPS");
    struct heap_env env;
    bool is_bump;

    backend = argc > 1 ? argv[1] : "";
    ops = heap_backend_find(backend);
    if (ops == NULL) {
        fprintf(stderr, "usage: %s <backend> [seed] [ops]  (env KHEAP_SEED, KHEAP_OPS)\n", argv[0]);
        return 2;
    }
    seed = 0x6b686561700001ull;
    if (env_seed != NULL)
        seed = strtoull(env_seed, NULL, 0);
    if (argc > 2)
        seed = strtoull(argv[2], NULL, 0);
    if (env_ops != NULL)
        ops_count = strtoull(env_ops, NULL, 0);
    if (argc > 3)
        ops_count = strtoull(argv[3], NULL, 0);
    rng = seed;

    if (host_arena_init(&arena, ARENA_RESERVE, ARENA_INITIAL) != 0)
        die("mmap");
    is_bump = ops->arena; /* bump and any other arena-style backend */
    arena.limit = is_bump ? BUMP_ARENA_LIMIT : ARENA_LIMIT;
    /* Non-adjacent growth every 7th time; not for bump, which abandons the old region on each one
     * (documented) and would then spend the run out of memory. */
    arena.gap_every = is_bump ? 0 : 7;
    /* A 4th argument "release": the heap gives memory back (arena.c's recording mock environment). */
    give_back = argc > 4 && strcmp(argv[4], "release") == 0;
    env = give_back ? host_arena_release_env(&arena) : host_arena_env(&arena);
    h = heap_create(ops, arena.base, ARENA_INITIAL, &env);
    if (h == NULL)
        die("heap_create");

    for (step = 0; step < ops_count; step++) {
        int s = (int)below(SLOTS);
        uint64_t r = below(1000);

        if (r == 0 || (is_bump && r < 8)) {
            for (int i = 0; i < SLOTS; i++)
                if (slots[i].p != NULL)
                    release(i);
        } else if (slots[s].p != NULL) {
            if (r < 250)
                op_realloc(s);
            else
                release(s);
        } else {
            size_t size = random_size(), align = 16;
            unsigned char *p;
            if (r < 150) {
                align = random_align();
                p = heap_alloc_aligned(h, size, align);
            } else if (r < 200) {
                size_t n = 1 + below(8);
                if (below(100) == 0) {
                    n = SIZE_MAX / 2 + below(1000); /* multiplication overflow */
                    size = 3 + below(100);
                    p = heap_calloc(h, n, size);
                    if (p != NULL)
                        die("overflowing calloc succeeded");
                } else {
                    size = size / n;
                    p = heap_calloc(h, n, size);
                    for (size_t i = 0; p != NULL && i < n * size && i < PROBE; i++)
                        if (p[i] != 0)
                            die("calloc block not zeroed");
                    size *= n;
                }
            } else if (r < 210) {
                size = SIZE_MAX - below(1 << 20); /* must fail */
                p = heap_alloc(h, size);
                if (p != NULL)
                    die("absurd size succeeded");
            } else {
                p = heap_alloc(h, size);
            }
            if (p == NULL)
                model_failed++;
            else
                adopt(s, p, size, align);
        }
        compare_stats();
        if (give_back && model_live == 0)
            check_full_free_bound();
        if (step % CHECK_EVERY == 0 && heap_check(h) != 0)
            die("heap_check() found broken invariants");
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL)
            release(i);
    compare_stats();
    if (give_back)
        check_full_free_bound();
    if (heap_check(h) != 0)
        die("heap_check() at the end");
    struct heap_stats st = heap_stats(h);
    printf("model ok: backend=%s seed=%" PRIu64 " ops=%" PRIu64 " allocs=%" PRIu64 " failed=%" PRIu64
           " peak=%zu mapped=%zu grows=%u full-free checks=%" PRIu64 "\n",
           backend, seed, ops_count, st.total_allocs, st.failed_allocs, st.peak_in_use, st.bytes_mapped,
           arena.grow_calls, full_free_checks);
    host_arena_destroy(&arena);
    return 0;
}
