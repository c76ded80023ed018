/*
 * fixed_size_block.c - the size-class ("slab") backend with a linked_list fallback.
 *
 * How it works
 * ------------
 * Requests up to FSB_MAX_SMALL (2048) bytes are rounded up to one of FSB_NCLASSES size classes
 * (16-byte steps to 128, then four classes per power of two: 160, 192, 224, 256, ... 2048). Each class
 * owns slabs: 16 KiB chunks, aligned to 16 KiB, carved into equal objects. The slab's header sits at
 * its start; objects carry NO header, so a 16-byte request costs 16 bytes:
 *
 *   16 KiB-aligned slab (class c)
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   | header | obj 0 | obj 1 | ... | (skip)| ...       | obj n | never used yet   |
 *   +--------+-------+-------+-----+-------+--- ... ---+-------+------------------+
 *   0        64      64+c                                       ^carve
 *   header = { partial/full list links, free-object list, carve pointer, inuse, capacity, class }
 *
 * A free object stores the next free object of its slab in its first word. Allocation pops the head
 * of the first slab on the class's partial list (or carves a never-used object); free pushes the
 * object onto its slab, found by masking the pointer with ~(16 KiB - 1). Both are O(1) and touch one
 * slab header.
 *
 * Small or large? Larger requests (and alignments above 64) go to an embedded linked_list heap, always
 * with at least 4 KiB alignment, so a large block's pointer is always page-aligned. Small objects are
 * never page-aligned: the header occupies offset 0 of the slab, and while carving, the rare slot that
 * would start at a page boundary inside the slab is skipped. So free() tells the two apart from the
 * pointer's bits alone (ptr % 4096 == 0 means large) and never reads user-writable memory to decide;
 * no magic number can be forged.
 *
 * Alignment: slabs are 16 KiB aligned and objects start at offset 64 + i*c, so objects of a class
 * whose size is a multiple of 64 (32) are 64 (32) aligned; aligned requests up to 64 pick the smallest
 * such class.
 *
 * Returning memory: when a slab's last object is freed, the slab goes back to the linked_list
 * fallback, except that one empty slab per class is kept while it is that class's only partial slab,
 * so a tight alloc/free loop does not create and destroy a slab each time.
 *
 * Invariants (fsb_check): every slab in a class's lists is 16 KiB aligned and names that class;
 * partial slabs have 0 <= inuse < capacity, full slabs inuse == capacity; free objects lie inside
 * their slab on an object boundary, are not page-aligned and number capacity - inuse - uncarved;
 * list links are consistent; the fallback heap passes its own check.
 *
 * Complexity: small alloc/free O(1) (plus an O(1) fallback call when a slab is created or returned);
 * large requests as linked_list; check O(slabs * objects + fallback blocks).
 * Trade-offs: fastest for small objects and no per-object header, but up to ~25% internal
 * fragmentation from class rounding, a partly used 16 KiB slab per active class, and large blocks pay
 * a page alignment (the padding returns to the fallback's free lists).
 */
#include "heap_backend.h"

#define FSB_SLAB_SIZE ((uintptr_t)16384)
#define FSB_PAGE_SIZE ((uintptr_t)4096)
#define FSB_SLAB_HDR ((uintptr_t)64)
/* The fallback puts a 16-byte block header in front of every block, so a slab leaves its last 16
 * bytes to the next slab's header: consecutive slabs then tile memory with no padding between. */
#define FSB_SLAB_USABLE (FSB_SLAB_SIZE - 16)
#define FSB_MAX_SMALL 2048
#define FSB_MAX_SMALL_ALIGN 64
#define FSB_NCLASSES 24

struct fsb_slab {
    struct fsb_slab *next; /* in the class's partial or full list */
    struct fsb_slab *prev;
    void *free;            /* freed objects, linked through their first word */
    uintptr_t carve;       /* next never-used object, or the slab's end */
    uint32_t inuse;        /* live objects */
    uint32_t capacity;     /* objects this slab can hold */
    uint32_t cls;          /* size class index */
    uint32_t full;         /* 1 if on the full list */
};

struct fsb_list {
    struct fsb_slab *head;
};

struct fsb {
    struct heap common;                     /* first member */
    struct heap *fallback;                  /* embedded linked_list heap (memory after this struct) */
    struct fsb_list partial[FSB_NCLASSES];  /* slabs with a free object, allocation order */
    struct fsb_list full[FSB_NCLASSES];     /* slabs without one */
    uint32_t capacity[FSB_NCLASSES];        /* objects per slab per class */
};

_Static_assert(offsetof(struct fsb, common) == 0, "struct heap must be the first member");
_Static_assert(sizeof(struct fsb_slab) <= FSB_SLAB_HDR, "slab header must fit before object 0");
_Static_assert(FSB_SLAB_HDR % HEAP_MIN_ALIGN == 0 && FSB_SLAB_HDR % FSB_MAX_SMALL_ALIGN == 0,
               "object 0 must be 64-aligned");
_Static_assert(FSB_SLAB_SIZE % FSB_PAGE_SIZE == 0, "slabs are whole pages");
_Static_assert(FSB_MAX_SMALL < FSB_PAGE_SIZE, "small and large are told apart by page alignment");

static const uint16_t class_size[FSB_NCLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256,
    320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048,
};

/* size_class[(size + 15) / 16] = smallest class holding size bytes, for 1 <= size <= 2048. */
static const uint8_t size_class[FSB_MAX_SMALL / 16 + 1] = {
    0, 0, 1, 2, 3, 4, 5, 6, 7,                                  /* 16 .. 128 */
    8, 8, 9, 9, 10, 10, 11, 11,                                  /* .. 256 */
    12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, /* .. 512 */
    16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17, /* .. 768 */
    18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19, /* .. 1024 */
    20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, /* .. 1280 */
    21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, /* .. 1536 */
    22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, 22, /* .. 1792 */
    23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, /* .. 2048 */
};
_Static_assert(sizeof(size_class) == FSB_MAX_SMALL / 16 + 1, "one entry per 16-byte step");

static struct fsb *to_fsb(struct heap *h)
{
    return container_of(h, struct fsb, common);
}

static const struct fsb *to_cfsb(const struct heap *h)
{
    return container_of(h, const struct fsb, common);
}

static bool is_large(const void *ptr)
{
    return ((uintptr_t)ptr & (FSB_PAGE_SIZE - 1)) == 0;
}

static struct fsb_slab *slab_of(const void *ptr)
{
    return (struct fsb_slab *)heap_align_down((uintptr_t)ptr, FSB_SLAB_SIZE);
}

static void list_push(struct fsb_list *l, struct fsb_slab *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (s->next != NULL)
        s->next->prev = s;
    l->head = s;
}

static void list_remove(struct fsb_list *l, struct fsb_slab *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

/* Objects of class cls that fit a slab, skipping slots that would start on a page boundary. */
static uint32_t count_capacity(unsigned cls)
{
    uint32_t n = 0;

    for (uintptr_t off = FSB_SLAB_HDR; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        n += (off & (FSB_PAGE_SIZE - 1)) != 0;
    return n;
}

static struct heap *fsb_init(void *mem, size_t size)
{
    uintptr_t base = heap_align_up((uintptr_t)mem, HEAP_MIN_ALIGN);
    uintptr_t rest = heap_align_up(base + sizeof(struct fsb), HEAP_MIN_ALIGN);
    struct heap *fallback;
    struct fsb *f;

    if (size < rest - (uintptr_t)mem)
        return NULL;
    fallback = heap_linked_list_ops.init((void *)rest, size - (rest - (uintptr_t)mem));
    if (fallback == NULL)
        return NULL;
    f = (struct fsb *)base;
    __builtin_memset(f, 0, sizeof(*f));
    f->fallback = fallback;
    for (unsigned c = 0; c < FSB_NCLASSES; c++)
        f->capacity[c] = count_capacity(c);
    return &f->common;
}

/* Gets a fresh slab for class cls from the fallback and makes it the head of the partial list. */
static struct fsb_slab *new_slab(struct fsb *f, unsigned cls)
{
    size_t usable;
    struct fsb_slab *s = heap_linked_list_ops.alloc(f->fallback, FSB_SLAB_USABLE, FSB_SLAB_SIZE, &usable);

    if (s == NULL)
        return NULL;
    s->free = NULL;
    s->carve = (uintptr_t)s + FSB_SLAB_HDR;
    s->inuse = 0;
    s->capacity = f->capacity[cls];
    s->cls = cls;
    s->full = 0;
    list_push(&f->partial[cls], s);
    return s;
}

/* Takes one object from partial slab s of class cls. */
static inline void *slab_take(struct fsb *f, struct fsb_slab *s, unsigned cls)
{
    void *obj = s->free;

    if (obj != NULL) {
        s->free = *(void **)obj;
    } else {
        if ((s->carve & (FSB_PAGE_SIZE - 1)) == 0)
            s->carve += class_size[cls];
        obj = (void *)s->carve;
        s->carve += class_size[cls];
    }
    if (++s->inuse == s->capacity) {
        list_remove(&f->partial[cls], s);
        list_push(&f->full[cls], s);
        s->full = 1;
    }
    return obj;
}

/* Smallest class >= cls whose objects are align-aligned, or FSB_NCLASSES. */
static unsigned aligned_class(unsigned cls, size_t align)
{
    while (cls < FSB_NCLASSES && class_size[cls] % align != 0)
        cls++;
    return cls;
}

static void *fsb_alloc(struct heap *h, size_t size, size_t align, size_t *usable)
{
    struct fsb *f = to_fsb(h);
    unsigned cls;
    struct fsb_slab *s;

    if (heap_unlikely(size > FSB_MAX_SMALL || align > FSB_MAX_SMALL_ALIGN))
        goto large;
    cls = size_class[(size + 15) / 16];
    if (heap_unlikely(align != HEAP_MIN_ALIGN)) {
        cls = aligned_class(cls, align);
        if (cls == FSB_NCLASSES)
            goto large;
    }
    s = f->partial[cls].head;
    if (heap_unlikely(s == NULL)) {
        s = new_slab(f, cls);
        if (s == NULL)
            return NULL;
    }
    *usable = class_size[cls];
    return slab_take(f, s, cls);
large:
    /* Whole pages including the fallback's 16-byte header, so large blocks and slabs tile pages. */
    size = heap_align_up(size + 16, FSB_PAGE_SIZE) - 16;
    return heap_linked_list_ops.alloc(f->fallback, size, align > FSB_PAGE_SIZE ? align : FSB_PAGE_SIZE,
                                      usable);
}

static size_t fsb_free(struct heap *h, void *ptr)
{
    struct fsb *f = to_fsb(h);
    struct fsb_slab *s;
    unsigned cls;

    if (heap_unlikely(is_large(ptr)))
        return heap_linked_list_ops.free(f->fallback, ptr);
    s = slab_of(ptr);
    cls = s->cls;
    *(void **)ptr = s->free;
    s->free = ptr;
    if (heap_unlikely(s->full)) {
        list_remove(&f->full[cls], s);
        list_push(&f->partial[cls], s);
        s->full = 0;
    }
    if (heap_unlikely(--s->inuse == 0) && (s->prev != NULL || s->next != NULL)) {
        list_remove(&f->partial[cls], s);
        heap_linked_list_ops.free(f->fallback, s);
    }
    return class_size[cls];
}

static bool fsb_resize(struct heap *h, void *ptr, size_t size)
{
    struct fsb *f = to_fsb(h);

    if (is_large(ptr))
        return heap_linked_list_ops.resize(f->fallback, ptr, size);
    return size <= class_size[slab_of(ptr)->cls];
}

static size_t fsb_usable_size(const struct heap *h, const void *ptr)
{
    if (is_large(ptr))
        return heap_linked_list_ops.usable_size(to_cfsb(h)->fallback, ptr);
    return class_size[slab_of(ptr)->cls];
}

static void fsb_add_memory(struct heap *h, void *start, size_t len)
{
    heap_linked_list_ops.add_memory(to_fsb(h)->fallback, start, len);
}

/* Checks one slab of class cls on list full (0/1); returns the number of broken invariants. */
static size_t check_slab(const struct fsb *f, const struct fsb_slab *s, unsigned cls, uint32_t full)
{
    uintptr_t base = (uintptr_t)s, end = base + FSB_SLAB_SIZE;
    size_t bad = 0;
    uint32_t nfree = 0, uncarved = 0;

    bad += base % FSB_SLAB_SIZE != 0;
    bad += s->cls != cls || s->full != full || s->capacity != f->capacity[cls];
    bad += full ? s->inuse != s->capacity : s->inuse >= s->capacity;
    if (bad != 0)
        return bad;
    bad += s->carve < base + FSB_SLAB_HDR || s->carve > end;
    for (uintptr_t off = s->carve - base; off + class_size[cls] <= FSB_SLAB_USABLE; off += class_size[cls])
        uncarved += (off & (FSB_PAGE_SIZE - 1)) != 0;
    for (const void *o = s->free; o != NULL; o = *(void *const *)o) {
        uintptr_t a = (uintptr_t)o;
        if (++nfree > s->capacity || a < base + FSB_SLAB_HDR || a >= s->carve ||
            (a - base - FSB_SLAB_HDR) % class_size[cls] != 0 || is_large(o)) {
            bad++;
            break;
        }
    }
    bad += nfree + uncarved + s->inuse != s->capacity;
    return bad;
}

static size_t check_list(const struct fsb *f, const struct fsb_list *l, unsigned cls, uint32_t full)
{
    size_t bad = 0, n = 0;
    const struct fsb_slab *prev = NULL;

    for (const struct fsb_slab *s = l->head; s != NULL; prev = s, s = s->next) {
        if (++n > ((size_t)1 << 32)) {
            bad++;
            break;
        }
        bad += s->prev != prev;
        bad += check_slab(f, s, cls, full);
    }
    return bad;
}

static size_t fsb_check(const struct heap *h)
{
    const struct fsb *f = to_cfsb(h);
    size_t bad = heap_linked_list_ops.check(f->fallback);

    for (unsigned c = 0; c < FSB_NCLASSES; c++) {
        bad += check_list(f, &f->partial[c], c, 0);
        bad += check_list(f, &f->full[c], c, 1);
    }
    return bad;
}

const struct heap_ops heap_fixed_size_block_ops = {
    .name = "fixed_size_block",
    /* A new slab needs 16 KiB at 16 KiB alignment; a large block up to 4 KiB of page alignment. */
    .grow_overhead = 2 * FSB_SLAB_SIZE + 256,
    .init = fsb_init,
    .alloc = fsb_alloc,
    .free = fsb_free,
    .resize = fsb_resize,
    .usable_size = fsb_usable_size,
    .add_memory = fsb_add_memory,
    .check = fsb_check,
};
