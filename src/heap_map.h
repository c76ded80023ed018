/* heap_map.h - a heap's map (heap_walk()) as text, the format of the LD_PRELOAD libraries' KHEAP_MAP
 * files, so that test/preload/heapmap.py draws the kernel's heaps too (docs/allocators.md). */
#ifndef KHEAP_HEAP_MAP_H
#define KHEAP_HEAP_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "alloc/heap.h"

#define HEAP_MAP_BEGIN "kheap-map begin" /* the first line of a map */
#define HEAP_MAP_END   "kheap-map end"   /* the last line of a map */
#define HEAP_MAP_LINE  96                /* longest line, NUL included */

/* Receives one line of a map (no newline). Called with h's lock held: must not call into h. */
typedef void (*heap_map_line_fn)(void *ctx, const char *line);

/* Writes h's map to line(), one call per line: HEAP_MAP_BEGIN, "backend NAME", one line per walk entry
 * ("state 0xADDRESS bytes", slabs add " objects capacity object_size"), HEAP_MAP_END. Returns the
 * number of entry lines (heap_walk()'s result). */
size_t heap_map_write(struct heap *h, heap_map_line_fn line, void *ctx);

/* heap_map_write() to the console (serial and VGA), one line per kprintf(). Returns the entry count. */
size_t heap_map_print(struct heap *h);

/* Returns true if cmdline (words separated by spaces) contains the word option, e.g. "kheap.map=1". */
bool cmdline_has(const char *cmdline, const char *option);

#endif /* KHEAP_HEAP_MAP_H */
