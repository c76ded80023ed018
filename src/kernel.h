/*
 * Kernel start-up. boot/entry.S calls kernel_entry(), which brings up the
 * consoles, descriptor tables, boot information, interrupts and timer, and
 * then calls kernel_main(): src/main.c in the bootable kernel, the test
 * harness in the test images.
 */
#ifndef KHEAP_KERNEL_H
#define KHEAP_KERNEL_H

#include <stdint.h>

#include "multiboot2.h"

/* Largest information block we accept; GRUB's are a few KiB. */
#define BOOT_INFO_MAX_SIZE (1u << 20)

_Noreturn void kernel_entry(uint32_t magic, uint64_t info_phys);
/* Provided by the image: runs after kernel_entry() has set everything up. */
_Noreturn void kernel_main(void);
/* The validated boot information, sorted memory map included. */
const struct boot_info *kernel_boot_info(void);
/* Parses the multiboot2 information block like mb2_parse(), but panics with
   mb2_parse's message (naming the offending tag) when it is malformed. */
void boot_info_parse(const void *info, uint64_t info_phys, size_t limit, struct boot_info *out);
/* Prints a size as "639 KiB" or "127 MiB" into buf. */
void format_size(char *buf, size_t size, uint64_t bytes);

#endif
