/*
 * VGA text console (80x25 at physical 0xb8000). Only enabled when booted
 * through BIOS: under UEFI there is no text mode and the buffer is not VGA.
 */
#ifndef KHEAP_VGA_H
#define KHEAP_VGA_H

#include <stddef.h>

/* Clears the screen and starts mirroring console output to it. */
void vga_init(void);
/* Writes n bytes with newline handling and scrolling. */
void vga_write(const char *s, size_t n);

#endif
