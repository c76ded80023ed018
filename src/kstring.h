/* The few libc string functions a freestanding kernel needs (and the compiler may emit calls to). */
#ifndef KHEAP_KSTRING_H
#define KHEAP_KSTRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
/* Returns a pointer to the first occurrence of needle in haystack, or NULL. */
const char *kstrstr(const char *haystack, const char *needle);

#endif
