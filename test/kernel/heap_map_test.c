/*
 * The heap map over serial (src/heap_map.c): a private heap after a known workload is printed in
 * KHEAP_MAP's format between marker lines (test/preload/heapmap.py draws it from the serial log),
 * and the printed lines are parsed back: the markers, the backend line, entries in address order
 * without gap or overlap, and counts that match what the test allocated.
 */
#include "kheap_test.h"

#include "heap_map.h"
#include "kprintf.h"
#include "kstring.h"

#define MAP_WINDOW 6
#define MAP_PAGES  32 /* 128 KiB: the workload fits without growth */
#define MAP_BLOCKS 48

static struct kernel_heap map_heap;

/* What the parser has seen of the printed map. */
struct map_parse {
    unsigned lines, entries, used, free, slabs, bad;
    unsigned long long slab_objects, next, used_bytes;
    bool begun, ended, backend_ok;
    const char *backend;
};

/* Parses a number in base 10 or (with 0x) 16 at *s; advances *s past it and one space. */
static unsigned long long parse_num(const char **s, unsigned *bad)
{
    const char *p = *s;
    unsigned base = 10;
    unsigned long long v = 0;
    if (p[0] == '0' && p[1] == 'x')
        base = 16, p += 2;
    const char *digits = p;
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else
            break;
        v = v * base + d;
    }
    *bad += p == digits || (*p != ' ' && *p != '\0');
    *s = *p == ' ' ? p + 1 : p;
    return v;
}

/* heap_map_line_fn: prints the line (the picture comes from the serial log) and checks it. */
static void parse_line(void *ctx, const char *line)
{
    struct map_parse *m = ctx;
    kprintf("%s\n", line);
    m->lines++;
    if (m->lines == 1) {
        m->begun = strcmp(line, HEAP_MAP_BEGIN) == 0;
        return;
    }
    if (m->lines == 2) {
        m->backend_ok = memcmp(line, "backend ", 8) == 0 && strcmp(line + 8, m->backend) == 0;
        return;
    }
    if (strcmp(line, HEAP_MAP_END) == 0) {
        m->ended = true;
        return;
    }
    m->bad += m->ended; /* nothing after the end marker */
    const char *p = line + 5;
    bool slab = memcmp(line, "slab ", 5) == 0, used = memcmp(line, "used ", 5) == 0;
    m->bad += !slab && !used && memcmp(line, "free ", 5) != 0;
    unsigned long long addr = parse_num(&p, &m->bad), size = parse_num(&p, &m->bad);
    m->entries++;
    if (slab) {
        unsigned long long objects = parse_num(&p, &m->bad), capacity = parse_num(&p, &m->bad);
        unsigned long long object_size = parse_num(&p, &m->bad);
        m->bad += objects > capacity || capacity * object_size > size;
        m->slab_objects += objects;
        m->slabs++;
    } else {
        m->bad += m->next != 0 && addr != m->next; /* address order, no gap, no overlap */
        m->next = addr + size;
        m->used += used;
        m->free += !used;
        m->used_bytes += used ? size : 0;
    }
    m->bad += *p != '\0' || size == 0;
}

KTEST(heap_map_prints_a_private_heap)
{
    struct heap *h = heap_test_private(&map_heap, MAP_WINDOW, MAP_PAGES);
    static void *blocks[MAP_BLOCKS];
    const char *name = heap_backend_name(h);
    unsigned live = 0, small = 0;

    for (int i = 0; i < MAP_BLOCKS; i++) {
        size_t size = i % 8 == 3 ? 3000 : (size_t)(16 + 48 * (i % 4));
        blocks[i] = heap_alloc(h, size);
        KASSERT(blocks[i] != NULL);
    }
    for (int i = 0; i < MAP_BLOCKS; i += 3) {
        heap_free(h, blocks[i]);
        blocks[i] = NULL;
    }
    for (int i = 0; i < MAP_BLOCKS; i++) {
        live += blocks[i] != NULL;
        small += blocks[i] != NULL && i % 8 != 3;
    }
    struct heap_stats s = heap_stats(h);
    KASSERT_EQ(s.bytes_mapped, MAP_PAGES * PAGE_SIZE); /* one region: address order is global */

    struct map_parse m = {.backend = name};
    size_t n = heap_map_write(h, parse_line, &m);
    KASSERT(m.begun && m.backend_ok && m.ended);
    KASSERT_EQ(m.bad, 0);
    KASSERT_EQ(m.entries, n);
    KASSERT_EQ(m.lines, n + 3);
    KASSERT(m.used_bytes >= s.bytes_in_use);
    if (strcmp(name, "linked_list") == 0) {
        KASSERT_EQ(m.used, live); /* one used block per live allocation */
        KASSERT(m.free >= 1 && m.slabs == 0);
    } else if (strcmp(name, "fixed_size_block") == 0) {
        KASSERT_EQ(m.slab_objects, small); /* the slabs hold exactly the live small blocks */
        KASSERT(m.slabs >= 1 && m.used >= live - small + m.slabs);
    } else if (strcmp(name, "bump") == 0) {
        KASSERT(m.used == 1 && m.free == 1 && m.slabs == 0); /* the consumed span and the rest */
    }
    for (int i = 0; i < MAP_BLOCKS; i++)
        heap_free(h, blocks[i]);
    KASSERT_EQ(heap_check(h), 0);
}

KTEST(cmdline_has_finds_whole_words)
{
    KASSERT(cmdline_has("kheap.image=kernel kheap.map=1", "kheap.map=1"));
    KASSERT(cmdline_has("kheap.map=1", "kheap.map=1"));
    KASSERT(cmdline_has("  kheap.map=1  x", "kheap.map=1"));
    KASSERT(!cmdline_has("kheap.map=10", "kheap.map=1"));
    KASSERT(!cmdline_has("xkheap.map=1", "kheap.map=1"));
    KASSERT(!cmdline_has("", "kheap.map=1"));
    KASSERT(!cmdline_has("kheap.image=ktest", ""));
}
