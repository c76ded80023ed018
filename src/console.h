/*
 * The console fans kernel output out to COM1, the VGA text screen (BIOS boot
 * only) and, while a capture is active, a caller's buffer (used by tests to
 * check what was printed).
 */
#ifndef KHEAP_CONSOLE_H
#define KHEAP_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

/* Brings up the serial console. Output works from here on. */
void console_init(void);
/* Mirrors output to the VGA text screen from now on. */
void console_enable_vga(void);
/* Writes n bytes to every active sink. */
void console_write(const char *s, size_t n);
/* Copies subsequent output into buf (NUL-terminated, truncated to size) as
   well as to the screens, until console_capture_end(). */
void console_capture_begin(char *buf, size_t size);
/* Stops capturing; returns the number of bytes captured (excluding NUL). */
size_t console_capture_end(void);

#endif
