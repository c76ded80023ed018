/*
 * inject.c - kheap-inject: measures what hardened mode detects, by randomized fault injection.
 *
 * Usage: kheap-inject [--trials N] [--seed S] [--backends a,b,..] [--kinds k,..] [--jobs J] [--check]
 *                     [--quarantine BYTES[,BLOCKS]] [--verbose]
 *        kheap-inject --self-test   (the scorer's own test: score_owner() on a made-up shadow map)
 *   backends: bump, linked_list, fixed_size_block (the hardened library) and glibc (the system malloc).
 *   kinds: clean uaf_hi uaf_lo uaf_old df_reuse df_now inv_interior inv_stack inv_global inv_past_end
 *          overflow meta_flip meta_reused (default: all; see kinds[] below for what each one does).
 *   --check: exit 1 unless the targets hold: no false positive (clean trials and build
 *            phases), no silent crash, silent overlap, overlap after a report or hang in any cell;
 *            immediate double free and invalid frees >= 99.9% right; overflow and use-after-free
 *            writes (uaf_hi, uaf_lo, uaf_old) >= 99% (right + owner, below); double free after reuse
 *            >= 95% of the trials whose memory was not reused, and of all trials from 1,000 trials
 *            per cell on (DF_ALL_MIN_TRIALS). Checks kheap backends only, never glibc.
 *   --quarantine: heap_env.quarantine_bytes (and _blocks) for every kheap heap; 0: the default. Any
 *            value gives bump a quarantine too (its default is none).
 *
 * How it works. One trial = one forked child, so a crash is survivable and counted:
 *   1. build: a fresh heap (its own mmap arena; glibc: the child's copy of the process heap), 200-599
 *      random allocs / frees / reallocs of mixed sizes (1 B - 64 KiB), contents filled, a shadow map of
 *      the live blocks (pointer, requested size);
 *   2. inject ONE bug of the trial's kind (none for "clean");
 *   3. follow-up: FOLLOW_OPS realistic operations (alloc, aligned alloc, calloc, realloc, free); every
 *      returned pointer is checked against the shadow map: overlapping a live block (or lying outside
 *      the arena) is a "bad allocation", counted as a silent overlap unless a report came first;
 *   4. heap_check() (glibc: malloc_trim(0), which consolidates and walks the free chunks).
 * The child writes its progress into a record in shared memory as it goes, so a child that dies by a
 * signal leaves what it saw. kheap reports arrive through env.report; glibc's are its abort messages
 * (LIBC_FATAL_STDERR_=1, the child's stderr is a pipe), classified by text ("double free" ->
 * double free, "invalid pointer"/"invalid size"/"munmap_chunk" -> invalid free, else corruption).
 * Trial seeds are a hash of (seed, backend, kind, trial index): results are deterministic per seed
 * and do not depend on --jobs.
 *
 * Outcome of a trial (columns of the table, BENCH line fields):
 *   right  - the FIRST report after the injection has the expected kind and pointer (per kind below);
 *   any    - at least one report (or heap_check() != 0) after the injection;
 *   owner  - (use-after-free kinds) not right, but the first report names the live block whose canary,
 *            trailer or header now holds the written byte, as that block's overflow, corrupted
 *            metadata or refused free: the write was found, as the damage it did (score_owner());
 *   crash  - the child died by a signal with no report before (glibc: not its abort message);
 *   overlap- a bad allocation with no report before it ("silent overlapping allocation");
 *   late_overlap / late_crash - the same, after a report (the library went on after reporting);
 *   hang   - the child exceeded TRIAL_SECONDS; na - the injection could not be set up (no reuse).
 *   build_fp - reports during the build phases (no bug injected yet): false positives.
 *   reused / right_fresh / ovl_reused (df_reuse) - trials where v's memory was handed out again
 *            before the second free, right reports among the other trials, overlaps in the reused
 *            ones (a second free of a live block's memory: undetectable; --check excludes them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap.h"
#include "heap_backend.h"
#include "kheap_host.h"

#if !KHEAP_HARDENING
#error "kheap-inject is built against the hardened library"
#endif

#define SLOTS         128
#define FOLLOW_OPS    300
#define BUILD_MIN     200
#define BUILD_SPREAD  400
#define REUSE_TRIES   64
#define TRIAL_SECONDS 10
#define ARENA_RESERVE ((size_t)64 << 20)
#define ARENA_INITIAL ((size_t)256 << 10)
#define ARENA_LIMIT   ((size_t)16 << 20)
#define MAX_BACKENDS  8
#define GLIBC_MSG     256

enum kind {
    K_CLEAN,        /* no bug: every report is a false positive */
    K_UAF_HI,       /* free a live block of >= 17 B, write one byte at offset 16..min(2047, size-1) */
    K_UAF_LO,       /* same at offset 0..min(15, size-1): the words a backend keeps in a free block */
    K_UAF_OLD,      /* free a live block, 1..64 follow-up operations, then write one byte at offset
                     * 0..min(2047, size-1) of it that no live block holds (coalesced, split, cached) */
    K_DF_REUSE,     /* free v, then rounds of one follow-up operation and one allocation of v's size
                     * (each kept live) until a block overlaps v (at most 64 rounds), then free v
                     * again; "reused" counts the trials where v's memory was handed out in between */
    K_DF_NOW,       /* free v twice in a row */
    K_INV_INTERIOR, /* free p + k, 0 < k < size (aligned or not) of a live block p */
    K_INV_STACK,    /* free the address of a 16-aligned local of the child */
    K_INV_GLOBAL,   /* free a 16-aligned address inside a static array */
    K_INV_PAST_END, /* free the first address past the heap (kheap: arena end; glibc: sbrk(0)) */
    K_OVERFLOW,     /* write 1..16 random bytes right after the requested size of a live block */
    K_META_FLIP,    /* free v, then XOR one byte of [v - 32, v) with a random non-zero value */
    K_META_REUSED,  /* free a large block v (64-128 KiB), push it out of the quarantine, allocate blocks
                     * of 1025-2048 B until one, o, lies in v's memory (at most 64; else na), then XOR
                     * one byte of the metadata there through v: fixed_size_block, of the header of the
                     * slab carved there (the 192 bytes at o rounded down to 16 KiB); else of the 48 bytes
                     * before o */
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "clean",     "uaf_hi",     "uaf_lo",       "uaf_old",  "df_reuse",  "df_now",      "inv_interior",
    "inv_stack", "inv_global", "inv_past_end", "overflow", "meta_flip", "meta_reused",
};

static const char *const kind_titles[K_COUNT] = {
    "clean (no bug): any report = false positive",
    "use-after-free write, offset 16-2047",
    "use-after-free write, offset 0-15",
    "use-after-free write into an older free block, offset 0-2047",
    "double free after reuse",
    "immediate double free",
    "invalid free: interior",
    "invalid free: stack",
    "invalid free: global",
    "invalid free: past the end",
    "overflow by 1-16 bytes",
    "flipped byte in the 32 B before a free block",
    "flipped byte of metadata (fsb: a slab header) in a freed large block's reused memory",
};

enum phase { PH_BUILD, PH_INJECT, PH_FOLLOW, PH_CHECK, PH_DONE };

/* What a child leaves behind (shared memory; written as the trial goes). */
struct record {
    int started, done, na;
    int build_reports;    /* reports before the injection */
    int reports;          /* reports after it */
    int first_right;      /* the first report after it was the expected one */
    int first_owner;      /* ... or it named the live block whose canary, trailer or header now holds
                           * the byte a use-after-free write changed (score_owner()) */
    int first_phase;      /* enum phase of that report */
    int first_kind;       /* its kind (kheap) or message class (glibc) */
    int bad_alloc;        /* a bad allocation was seen ... */
    int bad_after_report; /* ... after a report */
    int check_nonzero;    /* heap_check() returned non-zero */
    int phase;            /* the child's enum phase, as it goes (glibc: where it aborted) */
    int bad_before_first; /* a bad allocation came before the first report */
    int reused;           /* df_reuse: v's memory was handed out again before the second free */
    char msg[GLIBC_MSG];  /* glibc: start of the abort message */
};

struct cell {
    unsigned long trials, right, any, none, crash, overlap, late_overlap, late_crash, hang, na;
    unsigned long build_fp, check_nonzero, reused;
    unsigned long owner;       /* UAF kinds, not right: the first report named the live block that now
                                * owns the written byte's metadata (score_owner()) */
    unsigned long right_fresh; /* df_reuse: right among the trials whose memory was not reused */
    unsigned long ovl_reused;  /* df_reuse: overlaps (silent or late) in trials whose memory was reused */
    unsigned long check_crash; /* crashes (silent or late) inside heap_check() itself */
    struct record *recs;       /* one per trial, shared with the children */
};

struct slot {
    unsigned char *p;
    size_t size;
    size_t usable; /* kheap: the backend's usable size (canary and trailer after size), else 0 */
};

/* The allocator under test, kheap (one backend) or glibc. */
struct alloc_if {
    const char *name;
    const struct heap_ops *ops; /* NULL: glibc */
};

/* Child state. */
static struct record *rec;
static struct slot slots[SLOTS];
static struct host_arena arena;
static struct heap *h;
static const struct alloc_if *cur;
static uint64_t rng;
static enum phase phase;
static size_t q_bytes, q_blocks; /* --quarantine: every kheap heap's window (0: the default) */

static void enter(enum phase p)
{
    phase = p;
    rec->phase = (int)p;
}
static int exp_kind = -1;             /* expected report kind (-1: any report is right) */
static int exp_kind2 = -1;            /* an alternative accepted kind */
static const unsigned char *exp_ptr;  /* expected pointer (NULL: any) */
static const unsigned char *exp_addr; /* UAF: the written byte (a report p + offset == it is right) */
static _Alignas(16) unsigned char global_buf[256];

static uint64_t rnd(void)
{
    return heap_rand(&rng);
}

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* Room a backend keeps in front of a block for its header: bump's 48 bytes (linked_list: 32). */
#define OWNER_HEADER 48

/*
 * A use-after-free write into memory that, since the free, belongs to a live block's metadata: its
 * canary or trailer ([p + size, p + usable)) or the header in front of it ([p - OWNER_HEADER, p)).
 * The library can only see that block damaged -- an overflow of it, its corrupted header, its free
 * refused as invalid -- which is also what that block's own overflow or underflow would look like.
 * True if a report of kind naming ptr is that report for the write at addr: ptr is a live block of
 * the shadow map (n slots) whose metadata holds addr, and kind is one of the three. Not "right" (the
 * report does not name the freed block), but not a miss either: --check counts it with right for the
 * use-after-free kinds (docs/hardening.md, "Detection, measured").
 */
static bool score_owner(const struct slot *sl, int n, int kind, const void *ptr, const unsigned char *addr)
{
    if (addr == NULL || ptr == NULL ||
        (kind != HEAP_ERR_OVERFLOW && kind != HEAP_ERR_CORRUPT_METADATA && kind != HEAP_ERR_INVALID_FREE))
        return false;
    for (int i = 0; i < n; i++) {
        const unsigned char *p = sl[i].p;
        if (p == NULL || p != ptr)
            continue;
        bool tail = addr >= p + sl[i].size && addr < p + sl[i].usable;
        bool header = (uintptr_t)addr < (uintptr_t)p && (uintptr_t)p - (uintptr_t)addr <= OWNER_HEADER;
        return tail || header;
    }
    return false;
}

/* Records one report of kind with pointer ptr (and offset) in the shared record. */
static void note_report(int kind, const void *ptr, size_t offset)
{
    if (phase == PH_BUILD) {
        rec->build_reports++;
        return;
    }
    if (rec->reports++ != 0)
        return;
    rec->first_phase = (int)phase;
    rec->bad_before_first = rec->bad_alloc;
    rec->first_kind = kind;
    bool kind_ok = exp_kind < 0 || kind == exp_kind || kind == exp_kind2;
    bool ptr_ok = exp_ptr == NULL || ptr == exp_ptr ||
                  (exp_addr != NULL && (const unsigned char *)ptr + offset == exp_addr);
    rec->first_right = kind_ok && ptr_ok;
    rec->first_owner = !rec->first_right && score_owner(slots, SLOTS, kind, ptr, exp_addr);
}

static void on_report(void *ctx, const struct heap_report *r)
{
    (void)ctx;
    note_report((int)r->kind, r->ptr, r->offset);
}

/* ---- the allocator interface: kheap's hardened heap or glibc ---- */

static void *a_alloc(size_t size)
{
    return cur->ops ? heap_alloc(h, size) : malloc(size);
}

static void *a_aligned(size_t size, size_t align)
{
    void *p = NULL;
    if (cur->ops)
        return heap_alloc_aligned(h, size, align);
    return posix_memalign(&p, align, size) == 0 ? p : NULL;
}

static void *a_calloc(size_t n, size_t size)
{
    return cur->ops ? heap_calloc(h, n, size) : calloc(n, size);
}

static void *a_realloc(void *p, size_t size)
{
    return cur->ops ? heap_realloc(h, p, size) : realloc(p, size);
}

/* Hides where p points from the compiler (no -Wfree-nonheap-object for the deliberate bad frees). */
static void *opaque(void *p)
{
    __asm__("" : "+r"(p));
    return p;
}

static void a_free(void *p)
{
    p = opaque(p);
    if (cur->ops)
        heap_free(h, p);
    else
        free(p);
}

static size_t a_check(void)
{
    if (cur->ops)
        return heap_check(h);
    malloc_trim(0);
    return 0;
}

/* ---- the shadow map ---- */

static size_t random_size(void)
{
    uint64_t r = below(100);
    if (r < 60)
        return 1 + below(128);
    if (r < 85)
        return 129 + below(2048 - 128);
    if (r < 97)
        return 2049 + below(14 << 10);
    return (16 << 10) + below(48 << 10);
}

/* Checks a fresh block [p, p + size) against every live block (and the arena). */
static void check_new(const unsigned char *p, size_t size)
{
    bool bad = cur->ops != NULL && !host_arena_contains(&arena, p, size);

    for (int i = 0; i < SLOTS && !bad; i++)
        if (slots[i].p != NULL && p < slots[i].p + slots[i].size && slots[i].p < p + size)
            bad = true;
    if (bad && !rec->bad_alloc) {
        rec->bad_alloc = 1;
        rec->bad_after_report = rec->reports != 0 || rec->build_reports != 0;
    }
}

/* The backend's usable size of live block p (kheap; heap_block_info() reports nothing), else 0. */
static size_t usable_of(const unsigned char *p)
{
    return cur->ops != NULL ? heap_block_info(h, p).usable : 0;
}

static void adopt(int s, unsigned char *p, size_t size, bool fill)
{
    check_new(p, size);
    if (fill)
        memset(p, (int)(((uintptr_t)p >> 4) & 0xff), size);
    slots[s] = (struct slot){p, size, usable_of(p)};
}

/* True if byte a belongs to a live block of the shadow map. */
static bool live_holds(const unsigned char *a)
{
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL && slots[i].p <= a && a < slots[i].p + slots[i].size)
            return true;
    return false;
}

static int random_live(size_t min_size)
{
    int start = (int)below(SLOTS);
    for (int i = 0; i < SLOTS; i++) {
        int s = (start + i) % SLOTS;
        if (slots[s].p != NULL && slots[s].size >= min_size)
            return s;
    }
    return -1;
}

static int empty_slot(void)
{
    int start = (int)below(SLOTS);
    for (int i = 0; i < SLOTS; i++)
        if (slots[(start + i) % SLOTS].p == NULL)
            return (start + i) % SLOTS;
    return -1;
}

/* One realistic operation on slot s: allocate into an empty slot, else free or realloc it. */
static void random_op(bool follow)
{
    int s = (int)below(SLOTS);
    uint64_t r = below(100);
    unsigned char *p;

    if (slots[s].p == NULL) {
        size_t size = random_size();
        if (follow && r < 10) {
            p = a_aligned(size, (size_t)16 << below(6));
        } else if (follow && r < 15) {
            size_t n = 1 + below(4), each = size / n + 1;
            p = a_calloc(n, each);
            size = n * each;
        } else {
            p = a_alloc(size);
        }
        if (p == NULL)
            return;
        adopt(s, p, size, true);
    } else if (r < 20) {
        size_t size = random_size();
        p = a_realloc(slots[s].p, size);
        if (p == NULL)
            return;
        unsigned char *old = slots[s].p;
        slots[s].p = NULL;
        if (p != old)
            check_new(p, size);
        memset(p, (int)(((uintptr_t)p >> 4) & 0xff), size);
        slots[s] = (struct slot){p, size, usable_of(p)};
    } else {
        a_free(slots[s].p);
        slots[s].p = NULL;
    }
}

/* Frees the live block of slot s and returns it (removed from the shadow map). */
static unsigned char *free_slot(int s)
{
    unsigned char *v = slots[s].p;
    a_free(v);
    slots[s].p = NULL;
    return v;
}

/* ---- the injections ---- */

/* Returns false if the injection could not be set up (the trial is "na"). */
static bool inject(enum kind k)
{
    unsigned char stack_buf[64] __attribute__((aligned(16)));
    int s;
    unsigned char *v;

    switch (k) {
    case K_CLEAN: return true;
    case K_UAF_HI:
    case K_UAF_LO: {
        if ((s = random_live(k == K_UAF_HI ? 17 : 16)) < 0)
            return false;
        size_t size = slots[s].size, lo = k == K_UAF_HI ? 16 : 0;
        size_t hi = k == K_UAF_HI ? (size - 1 < 2047 ? size - 1 : 2047) : 15;
        size_t off = lo + below(hi - lo + 1);
        v = free_slot(s);
        exp_kind = HEAP_ERR_USE_AFTER_FREE;
        exp_ptr = v;
        exp_addr = v + off;
        v[off] = (unsigned char)(v[off] ^ (1 + below(255)));
        return true;
    }
    case K_UAF_OLD: {
        if ((s = random_live(1)) < 0)
            return false;
        size_t size = slots[s].size, span = size < 2048 ? size : 2048;
        v = free_slot(s);
        int rounds = 1 + (int)below(64);
        for (int i = 0; i < rounds; i++)
            random_op(true);
        /* a byte of v that no live block holds now (a random start, then the next free one) */
        size_t start = below(span), off = span;
        for (size_t j = 0; j < span && off == span; j++) {
            size_t o = (start + j) % span;
            if (!live_holds(v + o))
                off = o;
        }
        if (off == span)
            return false;
        exp_kind = HEAP_ERR_USE_AFTER_FREE;
        exp_ptr = v;
        exp_addr = v + off;
        v[off] = (unsigned char)(v[off] ^ (1 + below(255)));
        return true;
    }
    case K_DF_REUSE: {
        if ((s = random_live(1)) < 0)
            return false;
        size_t size = slots[s].size;
        v = free_slot(s);
        bool reused = false;
        for (int i = 0; i < REUSE_TRIES && !reused; i++) {
            int e;
            unsigned char *p;
            random_op(true);
            if ((e = empty_slot()) < 0 || (p = a_alloc(size)) == NULL)
                continue;
            adopt(e, p, size, true);
            reused = p < v + size && v < p + size;
        }
        /* also memory the follow-up operations were given */
        for (int i = 0; i < SLOTS && !reused; i++)
            reused = slots[i].p != NULL && slots[i].p < v + size && v < slots[i].p + slots[i].size;
        rec->reused = reused;
        exp_kind = HEAP_ERR_DOUBLE_FREE;
        exp_kind2 = HEAP_ERR_INVALID_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    }
    case K_DF_NOW:
        if ((s = random_live(1)) < 0)
            return false;
        v = free_slot(s);
        exp_kind = HEAP_ERR_DOUBLE_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    case K_INV_INTERIOR:
        if ((s = random_live(2)) < 0)
            return false;
        v = slots[s].p + 1 + below(slots[s].size - 1);
        exp_kind = HEAP_ERR_INVALID_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    case K_INV_STACK:
        v = stack_buf + 16 * below(4);
        exp_kind = HEAP_ERR_INVALID_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    case K_INV_GLOBAL:
        v = global_buf + 16 * below(sizeof(global_buf) / 16);
        exp_kind = HEAP_ERR_INVALID_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    case K_INV_PAST_END:
        v = cur->ops ? arena.base + arena.committed : sbrk(0);
        exp_kind = HEAP_ERR_INVALID_FREE;
        exp_ptr = v;
        a_free(v);
        return true;
    case K_OVERFLOW: {
        if ((s = random_live(1)) < 0)
            return false;
        size_t n = 1 + below(16);
        v = slots[s].p;
        exp_kind = HEAP_ERR_OVERFLOW;
        exp_ptr = v;
        for (size_t i = 0; i < n; i++)
            v[slots[s].size + i] = (unsigned char)rnd();
        return true;
    }
    case K_META_FLIP:
        if ((s = random_live(1)) < 0)
            return false;
        v = free_slot(s);
        v[-1 - (ptrdiff_t)below(32)] ^= (unsigned char)(1 + below(255));
        exp_kind = -1; /* any report is right: nothing names a flipped header byte better */
        exp_ptr = NULL;
        return true;
    case K_META_REUSED: {
        int e;
        size_t size = (64 << 10) + below(64 << 10), osize = 1025 + below(1024);
        unsigned char *o = NULL, *meta;
        size_t mlen;
        if ((e = empty_slot()) < 0 || (v = a_alloc(size)) == NULL)
            return false;
        a_free(v);
        for (int i = 0; i < 24; i++) /* 384 KiB of frees: v leaves the default quarantine window */
            a_free(a_alloc(16 << 10));
        for (int i = 0; i < REUSE_TRIES && o == NULL; i++) {
            unsigned char *p;
            if ((e = empty_slot()) < 0 || (p = a_alloc(osize)) == NULL)
                break;
            adopt(e, p, osize, true);
            if (p >= v + 64 && p + osize <= v + size)
                o = p;
        }
        if (o == NULL)
            return false;
        if (cur->ops == &heap_fixed_size_block_ops) {
            meta = (unsigned char *)((uintptr_t)o & ~(uintptr_t)16383);
            mlen = 192;
            if (meta < v)
                return false;
        } else {
            meta = o - 48;
            mlen = 48;
        }
        exp_kind = -1; /* any report is right, as for meta_flip */
        exp_ptr = NULL;
        meta[below(mlen)] ^= (unsigned char)(1 + below(255));
        return true;
    }
    case K_COUNT: break;
    }
    return false;
}

/* The child: one trial; its findings go to rec (which must be zeroed). */
static void run_trial(const struct alloc_if *a, enum kind k, uint64_t trial_seed)
{
    struct heap_env env;
    int build_ops;

    cur = a;
    rng = trial_seed;
    memset(slots, 0, sizeof(slots));
    exp_kind = exp_kind2 = -1;
    exp_ptr = exp_addr = NULL;
    h = NULL;
    rec->started = 1;
    enter(PH_BUILD);
    if (a->ops != NULL) {
        if (host_arena_init(&arena, ARENA_RESERVE, ARENA_INITIAL) != 0)
            _exit(3);
        arena.limit = ARENA_LIMIT;
        env = host_arena_env(&arena);
        env.report = on_report;
        env.secret = heap_rand(&rng) | 1;
        env.quarantine_bytes = q_bytes;
        env.quarantine_blocks = q_blocks;
        h = heap_create(a->ops, arena.base, ARENA_INITIAL, &env);
        if (h == NULL)
            _exit(3);
    }
    build_ops = BUILD_MIN + (int)below(BUILD_SPREAD);
    for (int i = 0; i < build_ops; i++)
        random_op(false);
    enter(PH_INJECT);
    if (!inject(k)) {
        rec->na = 1;
    } else {
        enter(PH_FOLLOW);
        for (int i = 0; i < FOLLOW_OPS; i++)
            random_op(true);
        enter(PH_CHECK);
        if (a_check() != 0) {
            rec->check_nonzero = 1;
            if (rec->reports == 0) /* a count without a report still is a detection */
                note_report(-2, NULL, 0);
        }
    }
    enter(PH_DONE);
    rec->done = 1;
    if (a->ops != NULL)
        host_arena_destroy(&arena);
}

/* Classifies glibc's abort message like a report kind (-1: not a glibc message). */
static int glibc_class(const char *msg)
{
    if (strstr(msg, "double free") != NULL)
        return HEAP_ERR_DOUBLE_FREE;
    if (strstr(msg, "invalid pointer") != NULL || strstr(msg, "invalid size") != NULL ||
        strstr(msg, "munmap_chunk") != NULL)
        return HEAP_ERR_INVALID_FREE;
    if (strstr(msg, "malloc") != NULL || strstr(msg, "free") != NULL || strstr(msg, "corrupt") != NULL ||
        strstr(msg, "chunk") != NULL || strstr(msg, "tcache") != NULL)
        return HEAP_ERR_CORRUPT_METADATA;
    return -1;
}

/* True for kinds whose bug is one bad call: the right report must come from that call. */
static bool immediate_kind(enum kind k)
{
    return k == K_DF_REUSE || k == K_DF_NOW || k == K_INV_INTERIOR || k == K_INV_STACK || k == K_INV_GLOBAL ||
           k == K_INV_PAST_END;
}

/* ---- the parent ---- */

/* A batch of trials [t0, t1) of one cell run by one child, one after the other. */
struct job {
    pid_t pid; /* 0: idle */
    int fd;    /* read end of the child's stderr (glibc) or -1 */
    int b;
    enum kind k;
    unsigned long t0, t1;
};

static int verbose;
static uint64_t seed = 1;
static struct alloc_if ifs[MAX_BACKENDS];
static struct cell cells[MAX_BACKENDS][K_COUNT];

static uint64_t trial_seed_of(int b, int k, unsigned long t)
{
    uint64_t s = seed ^ ((uint64_t)b << 56) ^ ((uint64_t)k << 48) ^ t;
    heap_rand(&s);
    return heap_rand(&s);
}

/* Starts job j's batch in a child (glibc: batches of one, its heap is the process's). */
static void start(struct job *j)
{
    int pfd[2] = {-1, -1};
    const struct alloc_if *a = &ifs[j->b];
    struct cell *c = &cells[j->b][j->k];

    memset(&c->recs[j->t0], 0, sizeof(struct record) * (j->t1 - j->t0));
    if (a->ops == NULL && pipe(pfd) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    j->pid = fork();
    if (j->pid < 0) {
        perror("fork");
        exit(2);
    }
    if (j->pid == 0) {
        if (pfd[1] >= 0) {
            dup2(pfd[1], STDERR_FILENO);
            close(pfd[0]);
            close(pfd[1]);
        }
        for (unsigned long t = j->t0; t < j->t1; t++) {
            rec = &c->recs[t];
            alarm(TRIAL_SECONDS);
            run_trial(a, j->k, trial_seed_of(j->b, j->k, t));
        }
        _exit(0);
    }
    if (pfd[1] >= 0)
        close(pfd[1]);
    j->fd = pfd[0];
}

/* Adds trial r (finished, or the one its child died in by signal sig; msg: glibc's message) to c. */
static void classify(struct cell *c, enum kind k, struct record *r, int sig, const char *msg)
{
    bool crashed = sig != 0;

    if (sig == SIGABRT && msg != NULL && glibc_class(msg) >= 0) {
        /* glibc reported: count it as a report of that class, at the phase it aborted in */
        int cls = glibc_class(msg);
        bool right;
        switch (k) {
        case K_DF_NOW: right = cls == HEAP_ERR_DOUBLE_FREE; break;
        case K_DF_REUSE: right = cls == HEAP_ERR_DOUBLE_FREE || cls == HEAP_ERR_INVALID_FREE; break;
        case K_INV_INTERIOR:
        case K_INV_STACK:
        case K_INV_GLOBAL:
        case K_INV_PAST_END: right = cls == HEAP_ERR_INVALID_FREE; break;
        default: right = true; /* glibc never names a block: any message is its best answer */
        }
        if (r->phase == PH_BUILD) {
            r->build_reports++;
        } else if (r->reports++ == 0) {
            r->first_right = right;
            r->first_phase = r->phase;
            r->bad_before_first = r->bad_alloc;
        }
        crashed = false;
    }
    c->build_fp += r->build_reports != 0;
    c->reused += r->reused != 0 && !r->na;
    if (r->na) {
        c->na++;
        return;
    }
    c->trials++;
    c->check_nonzero += r->check_nonzero;
    if (r->reports != 0) {
        c->any++;
        if (r->first_right && !r->bad_before_first && (!immediate_kind(k) || r->first_phase == PH_INJECT))
            c->right++;
        else if (r->first_owner && !r->bad_before_first)
            c->owner++;
    } else {
        c->none++;
    }
    if (r->reports != 0 && r->reused == 0 && r->first_right && !r->bad_before_first &&
        (!immediate_kind(k) || r->first_phase == PH_INJECT))
        c->right_fresh++;
    c->ovl_reused += r->bad_alloc && r->reused;
    if (r->bad_alloc) {
        if (r->bad_after_report)
            c->late_overlap++;
        else
            c->overlap++;
    }
    if (crashed && r->phase == PH_CHECK)
        c->check_crash++;
    if (crashed) {
        if (sig == SIGALRM)
            c->hang++;
        else if (r->reports != 0 || r->build_reports != 0)
            c->late_crash++;
        else if (!r->bad_alloc)
            c->crash++; /* a silent overlap that then crashed stays an overlap */
    }
    if (verbose && (crashed || r->bad_alloc))
        fprintf(stderr, "  %s sig=%d phase=%d reports=%d overlap=%d first_phase=%d msg=%.60s\n",
                kind_names[k], sig, r->phase, r->reports, r->bad_alloc, r->first_phase, msg ? msg : "");
}

/* Collects job j's child (status from waitpid): classifies its finished trials and the one it died
 * in, and returns the first trial it did not reach (j->t1 if none). */
static unsigned long finish(struct job *j, int status)
{
    struct cell *c = &cells[j->b][j->k];
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    char msg[GLIBC_MSG] = "";

    if (j->fd >= 0) {
        ssize_t n = read(j->fd, msg, sizeof(msg) - 1);
        msg[n > 0 ? n : 0] = '\0';
        close(j->fd);
        j->fd = -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        fprintf(stderr, "kheap-inject: trial child exited %d\n", WEXITSTATUS(status));
        exit(2);
    }
    for (unsigned long t = j->t0; t < j->t1; t++) {
        struct record *r = &c->recs[t];
        if (r->done) {
            classify(c, j->k, r, 0, NULL);
        } else if (r->started) {
            classify(c, j->k, r, sig != 0 ? sig : SIGKILL, msg);
            return t + 1;
        } else {
            return t;
        }
    }
    return j->t1;
}

static double pct(unsigned long n, unsigned long d)
{
    return d == 0 ? 0.0 : 100.0 * (double)n / (double)d;
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/* The work queue: every (backend, kind) cell, in batches of BATCH trials, and the rests of crashed
 * batches. */
#define BATCH 50
struct pending {
    int b;
    enum kind k;
    unsigned long t0, t1;
};
static struct pending *queue;
static size_t queue_len, queue_cap;

static void push(int b, enum kind k, unsigned long t0, unsigned long t1)
{
    if (t0 >= t1)
        return;
    if (queue_len == queue_cap) {
        queue_cap = queue_cap ? 2 * queue_cap : 1024;
        queue = realloc(queue, queue_cap * sizeof(*queue));
        if (queue == NULL)
            exit(2);
    }
    queue[queue_len++] = (struct pending){b, k, t0, t1};
}

static void print_results(int nb, const bool *kon, unsigned long trials)
{
    printf("kheap-inject: %lu trials per cell, seed %" PRIu64
           ", %d follow-up operations, then heap_check()\n",
           trials, seed, FOLLOW_OPS);
    printf("%-18s %8s %8s %8s %6s %8s %6s %7s %5s %6s %5s %6s %6s\n", "backend", "right%", "any%", "none%",
           "crash", "overlap", "l.ovl", "l.crash", "hang", "na", "b.fp", "reused", "owner");
    for (int k = 0; k < K_COUNT; k++) {
        if (!kon[k])
            continue;
        printf("-- %s (%s)\n", kind_titles[k], kind_names[k]);
        for (int b = 0; b < nb; b++) {
            struct cell *c = &cells[b][k];
            printf("%-18s %8.2f %8.2f %8.2f %6lu %8lu %6lu %7lu %5lu %6lu %5lu %6lu %6lu\n", ifs[b].name,
                   pct(c->right, c->trials), pct(c->any, c->trials), pct(c->none, c->trials), c->crash,
                   c->overlap, c->late_overlap, c->late_crash, c->hang, c->na, c->build_fp, c->reused,
                   c->owner);
        }
    }
    unsigned long build_fp = 0, build_n = 0;
    for (int k = 0; k < K_COUNT; k++) {
        if (!kon[k])
            continue;
        for (int b = 0; b < nb; b++) {
            struct cell *c = &cells[b][k];
            printf("BENCH inject backend=%s kind=%s trials=%lu right=%lu any=%lu none=%lu crash=%lu "
                   "overlap=%lu late_overlap=%lu late_crash=%lu hang=%lu na=%lu build_fp=%lu "
                   "check_nonzero=%lu check_crash=%lu reused=%lu right_fresh=%lu ovl_reused=%lu owner=%lu "
                   "seed=%" PRIu64 "\n",
                   ifs[b].name, kind_names[k], c->trials, c->right, c->any, c->none, c->crash, c->overlap,
                   c->late_overlap, c->late_crash, c->hang, c->na, c->build_fp, c->check_nonzero,
                   c->check_crash, c->reused, c->right_fresh, c->ovl_reused, c->owner, seed);
            if (ifs[b].ops != NULL) {
                build_fp += c->build_fp;
                build_n += c->trials + c->na;
            }
        }
    }
    printf("kheap build phases (clean, before any injection): %lu, with a report (false positives): %lu\n",
           build_n, build_fp);
}

/* df_reuse over all trials is a rate of the quarantine's window (about 3.5% of the trials reuse the
 * memory at the default): below this many trials its 95% interval is wider than the margin over the
 * target (at 100 trials +/-3.6 points), so --check tests it from here on only. */
#define DF_ALL_MIN_TRIALS 1000

/* --check: the targets for the hardened library (right-report rates per kind; no silent
 * crash, no silent overlap, no overlap after a report, no hang, no false positive anywhere).
 * Returns 0 if they hold. */
static int check_results(int nb, const bool *kon)
{
    int failed = 0;

    for (int b = 0; b < nb; b++) {
        if (ifs[b].ops == NULL)
            continue;
        for (int k = 0; k < K_COUNT; k++) {
            struct cell *c = &cells[b][k];
            double need = -1;
            if (!kon[k])
                continue;
            if (c->build_fp != 0) {
                printf("CHECK FAILED: %s %s: %lu false positives in build phases\n", ifs[b].name,
                       kind_names[k], c->build_fp);
                failed = 1;
            }
            if (k == K_CLEAN && (c->any || c->crash || c->overlap || c->late_crash || c->hang)) {
                printf("CHECK FAILED: %s clean: reports %lu, crashes %lu, overlaps %lu, hangs %lu\n",
                       ifs[b].name, c->any, c->crash + c->late_crash, c->overlap, c->hang);
                failed = 1;
            }
            /* df_reuse: a second free of memory handed out again in between frees a live block
             * (or part of one): no allocator can tell it from that block's own free. Those trials'
             * overlaps are expected; every other overlap fails. */
            unsigned long ovl = c->overlap + c->late_overlap - (k == K_DF_REUSE ? c->ovl_reused : 0);
            if (c->crash != 0 || ovl != 0 || c->hang != 0) {
                printf("CHECK FAILED: %s %s: %lu silent crashes, %lu silent overlaps, %lu overlaps after a "
                       "report, %lu hangs\n",
                       ifs[b].name, kind_names[k], c->crash, c->overlap, c->late_overlap, c->hang);
                failed = 1;
            }
            if (k == K_DF_NOW || k == K_INV_INTERIOR || k == K_INV_STACK || k == K_INV_GLOBAL ||
                k == K_INV_PAST_END)
                need = 99.9;
            if (k == K_OVERFLOW || k == K_UAF_HI || k == K_UAF_LO || k == K_UAF_OLD)
                need = 99.0;
            if (k == K_DF_REUSE)
                need = 95.0;
            if (k == K_DF_REUSE) {
                /* over the trials whose memory was not reused (the rest: see above), and from
                 * DF_ALL_MIN_TRIALS on over all trials: the window must keep the reused ones rare */
                unsigned long fresh = c->trials - (c->reused < c->trials ? c->reused : c->trials);
                bool all_low = c->trials >= DF_ALL_MIN_TRIALS && pct(c->right, c->trials) < need;
                if (fresh == 0 || pct(c->right_fresh, fresh) < need || all_low) {
                    printf("CHECK FAILED: %s df_reuse: right %.2f%% of %lu trials not reused, %.2f%% of all "
                           "%lu (need %.1f%%)\n",
                           ifs[b].name, fresh ? pct(c->right_fresh, fresh) : 0.0, fresh,
                           pct(c->right, c->trials), c->trials, need);
                    failed = 1;
                }
                continue;
            }
            /* use-after-free writes: a write into a live block's canary, trailer or header (memory
             * handed out since the free) reported as that block's damage counts (score_owner()) */
            unsigned long found =
                c->right + (k == K_UAF_HI || k == K_UAF_LO || k == K_UAF_OLD ? c->owner : 0);
            if (need >= 0 && (c->trials == 0 || pct(found, c->trials) < need)) {
                printf("CHECK FAILED: %s %s: right %.2f%% (+ owner %lu) < %.1f%% (%lu trials)\n", ifs[b].name,
                       kind_names[k], pct(c->right, c->trials), c->owner, need, c->trials);
                failed = 1;
            }
        }
    }
    printf(failed ? "kheap-inject check: FAILED\n" : "kheap-inject check: ok\n");
    return failed;
}

/* --self-test: score_owner() on a made-up shadow map (no heap). Returns the number of failures. */
static int self_test(void)
{
    static unsigned char mem[512];
    /* live blocks: a at 64 (40 requested, 80 usable), b at 256 (16 requested, 48 usable) */
    const struct slot sl[3] = {{mem + 64, 40, 80}, {NULL, 0, 0}, {mem + 256, 16, 48}};
    const struct {
        int kind;
        const void *ptr;
        const unsigned char *addr;
        bool owner;
        const char *what;
    } cases[] = {
        {HEAP_ERR_OVERFLOW, mem + 64, mem + 64 + 40, true, "a's canary, first byte"},
        {HEAP_ERR_OVERFLOW, mem + 64, mem + 64 + 79, true, "a's trailer, last byte"},
        {HEAP_ERR_OVERFLOW, mem + 64, mem + 64 + 80, false, "past a's usable size"},
        {HEAP_ERR_OVERFLOW, mem + 64, mem + 64 + 39, false, "a's own bytes (never a freed block's)"},
        {HEAP_ERR_CORRUPT_METADATA, mem + 256, mem + 256 - 1, true, "b's header, last byte"},
        {HEAP_ERR_INVALID_FREE, mem + 256, mem + 256 - OWNER_HEADER, true, "b's header, first byte"},
        {HEAP_ERR_CORRUPT_METADATA, mem + 256, mem + 256 - OWNER_HEADER - 1, false, "before b's header"},
        {HEAP_ERR_OVERFLOW, mem + 256, mem + 64 + 50, false, "a's canary, report names b"},
        {HEAP_ERR_USE_AFTER_FREE, mem + 64, mem + 64 + 50, false,
         "a use-after-free report is right or wrong"},
        {HEAP_ERR_DOUBLE_FREE, mem + 64, mem + 64 + 50, false, "a double free names no damage"},
        {HEAP_ERR_OVERFLOW, mem + 128, mem + 130, false, "ptr is no live block"},
        {HEAP_ERR_OVERFLOW, mem + 64, NULL, false, "no written byte (not a use-after-free kind)"},
        {-2, NULL, mem + 64 + 50, false, "heap_check() count without a report"},
    };
    int failed = 0;

    printf("KTAP version 1\n1..%zu\n", sizeof(cases) / sizeof(cases[0]));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = score_owner(sl, 3, cases[i].kind, cases[i].ptr, cases[i].addr);
        if (got != cases[i].owner) {
            printf("not ok %zu score_owner: %s: %d, expected %d\n", i + 1, cases[i].what, got,
                   cases[i].owner);
            failed++;
        } else {
            printf("ok %zu score_owner: %s\n", i + 1, cases[i].what);
        }
    }
    return failed;
}

int main(int argc, char **argv)
{
    unsigned long trials = 1000;
    const char *backends = NULL, *kinds = NULL;
    int jobs = 1, nb = 0;
    bool check = false, kon[K_COUNT];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--trials") == 0 && v) {
            trials = strtoul(v, NULL, 0);
            i++;
        } else if (strcmp(a, "--seed") == 0 && v) {
            seed = strtoull(v, NULL, 0);
            i++;
        } else if (strcmp(a, "--backends") == 0 && v) {
            backends = v;
            i++;
        } else if (strcmp(a, "--kinds") == 0 && v) {
            kinds = v;
            i++;
        } else if (strcmp(a, "--jobs") == 0 && v) {
            jobs = atoi(v);
            i++;
        } else if (strcmp(a, "--quarantine") == 0 && v) {
            char *end;
            q_bytes = strtoul(v, &end, 0);
            q_blocks = *end == ',' ? strtoul(end + 1, NULL, 0) : 0;
            i++;
        } else if (strcmp(a, "--self-test") == 0) {
            return self_test() != 0;
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else {
            fprintf(stderr,
                    "usage: %s [--trials N] [--seed S] [--backends a,b] [--kinds k,..] [--jobs J] [--check] "
                    "[--quarantine BYTES[,BLOCKS]] [--verbose] | --self-test\n",
                    argv[0]);
            return 2;
        }
    }
    if (jobs < 1)
        jobs = 1;
    for (int i = 0; heap_backends[i] != NULL && nb < MAX_BACKENDS - 1; i++)
        if (backends == NULL || in_list(backends, heap_backends[i]->name))
            ifs[nb++] = (struct alloc_if){heap_backends[i]->name, heap_backends[i]};
    if (backends == NULL || in_list(backends, "glibc"))
        ifs[nb++] = (struct alloc_if){"glibc", NULL};
    for (int k = 0; k < K_COUNT; k++)
        kon[k] = kinds == NULL || in_list(kinds, kind_names[k]);
    setenv("LIBC_FATAL_STDERR_", "1", 1); /* glibc's abort messages go to stderr, our pipe */

    for (int b = 0; b < nb; b++) {
        for (int k = 0; k < K_COUNT; k++) {
            if (!kon[k] || trials == 0)
                continue;
            void *m = mmap(NULL, trials * sizeof(struct record), PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED)
                return 2;
            cells[b][k].recs = m;
        }
    }
    /* Queued last-first: pop from the end, so push in reverse to run cells in table order. */
    for (int b = nb - 1; b >= 0; b--)
        for (int k = K_COUNT - 1; k >= 0; k--)
            if (kon[k])
                for (unsigned long t0 = trials; t0 > 0;) {
                    unsigned long n = ifs[b].ops == NULL ? 1 : BATCH;
                    unsigned long s0 = t0 > n ? t0 - n : 0;
                    push(b, (enum kind)k, s0, t0);
                    t0 = s0;
                }
    struct job *js = calloc((size_t)jobs, sizeof(*js));
    if (js == NULL)
        return 2;
    int running = 0;
    while (queue_len > 0 || running > 0) {
        for (int i = 0; i < jobs && queue_len > 0; i++) {
            if (js[i].pid != 0)
                continue;
            struct pending p = queue[--queue_len];
            js[i] = (struct job){.pid = 0, .fd = -1, .b = p.b, .k = p.k, .t0 = p.t0, .t1 = p.t1};
            start(&js[i]);
            running++;
        }
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            perror("waitpid");
            return 2;
        }
        for (int i = 0; i < jobs; i++) {
            if (js[i].pid != pid)
                continue;
            unsigned long next = finish(&js[i], status);
            push(js[i].b, js[i].k, next, js[i].t1); /* the rest of a crashed batch */
            js[i].pid = 0;
            running--;
        }
    }
    print_results(nb, kon, trials);
    return check ? check_results(nb, kon) : 0;
}
