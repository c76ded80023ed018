/*
 * QEMU's firmware configuration device (fw_cfg, I/O ports 0x510/0x511), used
 * to learn facts about the virtual machine that the boot loader does not
 * tell: the RAM size given with -m, and small named files passed with
 * -fw_cfg name=opt/...,string=... (the test runner uses this to resume a
 * test run after a crash).
 */
#ifndef KHEAP_FW_CFG_H
#define KHEAP_FW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns true if the fw_cfg device answers with its "QEMU" signature. */
bool fw_cfg_present(void);
/* Returns the RAM size QEMU was started with (-m), or 0 without fw_cfg. */
uint64_t fw_cfg_ram_size(void);
/* Returns the number of CPUs QEMU was started with (-smp), or 0 without fw_cfg. */
unsigned fw_cfg_cpu_count(void);
/* Copies the file called name into buf (NUL-terminated, truncated to size)
   and returns true, or returns false if there is no such file. */
bool fw_cfg_read_file(const char *name, char *buf, size_t size);

#endif
