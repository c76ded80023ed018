/*
 * heap_map.c - a heap's map as text lines (see heap_map.h). The walk callback formats into a stack
 * buffer: nothing here allocates, since heap_walk() holds the heap's lock while it calls us.
 */
#include "heap_map.h"

#include "kprintf.h"
#include "kstring.h"

struct map_out {
    heap_map_line_fn line;
    void *ctx;
};

static bool map_entry(void *ctx, const struct heap_walk_entry *e)
{
    static const char *const names[] = {"free", "used", "slab"};
    struct map_out *o = ctx;
    char buf[HEAP_MAP_LINE];

    if (e->state == HEAP_WALK_SLAB)
        ksnprintf(buf, sizeof(buf), "slab %p %zu %u %u %zu", e->addr, e->size, (unsigned)e->objects,
                  (unsigned)e->capacity, e->object_size);
    else
        ksnprintf(buf, sizeof(buf), "%s %p %zu", names[e->state == HEAP_WALK_USED], e->addr, e->size);
    o->line(o->ctx, buf);
    return true;
}

size_t heap_map_write(struct heap *h, heap_map_line_fn line, void *ctx)
{
    struct map_out o = {.line = line, .ctx = ctx};
    char buf[HEAP_MAP_LINE];

    line(ctx, HEAP_MAP_BEGIN);
    ksnprintf(buf, sizeof(buf), "backend %s", heap_backend_name(h));
    line(ctx, buf);
    size_t n = heap_walk(h, map_entry, &o);
    line(ctx, HEAP_MAP_END);
    return n;
}

static void print_line(void *ctx, const char *line)
{
    (void)ctx;
    kprintf("%s\n", line);
}

size_t heap_map_print(struct heap *h)
{
    return heap_map_write(h, print_line, NULL);
}

bool cmdline_has(const char *cmdline, const char *option)
{
    size_t n = strlen(option);
    for (const char *p = cmdline; *p != '\0';) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p != '\0' && *p != ' ')
            p++;
        if ((size_t)(p - w) == n && n != 0 && memcmp(w, option, n) == 0)
            return true;
    }
    return false;
}
