/*
 * printf-style formatting for the kernel.
 *
 * Conversions: %d %i %u %x %X %p %s %c %%. Length modifiers: hh h l ll z.
 * Flags: '-' (left-justify), '0' (zero padding), width (digits or '*'),
 * precision for %s ('.N' or '.*'). %p prints 0x and 16 hex digits; a NULL
 * %s prints "(null)". An unknown conversion is printed as-is.
 */
#ifndef KHEAP_KPRINTF_H
#define KHEAP_KPRINTF_H

#include <stdarg.h>
#include <stddef.h>

#define KPRINTF_FORMAT(fmt_index, args_index) __attribute__((format(printf, fmt_index, args_index)))

/* Receives each formatted character. */
typedef void (*kputc_fn)(char c, void *ctx);

/* Formats to out(); returns the number of characters produced. */
int kvformat(kputc_fn out, void *ctx, const char *fmt, va_list ap);
/* Formats into buf (always NUL-terminated when size > 0); returns the length
   the full output would have, like C's snprintf. */
int ksnprintf(char *buf, size_t size, const char *fmt, ...) KPRINTF_FORMAT(3, 4);
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
/* Formats to the console; returns the number of characters written. */
int kprintf(const char *fmt, ...) KPRINTF_FORMAT(1, 2);
int kvprintf(const char *fmt, va_list ap);

#endif
