/* preload_bugs.c - a program with one deliberate heap bug, named by argv[1]: "double-free" frees a
 * block twice, "use-after-free" writes into a freed block and then keeps allocating (the hardened
 * heap notices when it reuses the block, or at the latest in the exit-time check of KHEAP_STATS).
 * Under a hardened kheap library it must die with a report; under glibc it is undefined behaviour. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocates a block of n bytes; a separate function so the report has an allocation site to name. */
__attribute__((noinline)) char *make_block(size_t n)
{
    char *p = malloc(n);
    if (p != NULL)
        memset(p, 'x', n);
    return p;
}

/* Frees p; a separate function so the report has a free site to name. */
__attribute__((noinline)) void drop_block(char *p)
{
    free(p);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    char *p = make_block(48);
    if (strcmp(argv[1], "double-free") == 0) {
        drop_block(p);
        drop_block(p);
    } else if (strcmp(argv[1], "use-after-free") == 0) {
        drop_block(p);
        ((volatile char *)p)[40] = 'U'; /* past any free-list link: the poison */
        for (int i = 0; i < 64; i++)
            free(make_block(48));
    } else {
        return 2;
    }
    printf("bug not detected\n");
    return 0;
}
