/*
 * Multiboot2 boot information (Multiboot2 specification, section 3.6): the
 * tag layouts we read and the parsed, validated result.
 *
 * The information block starts with total_size and a reserved word, then
 * tags, each 8-byte aligned: {type, size, payload}. The next tag starts at
 * (size + 7) & ~7. Tag type 0 ends the list.
 */
#ifndef KHEAP_MULTIBOOT2_H
#define KHEAP_MULTIBOOT2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MB2_BOOTLOADER_MAGIC 0x36d76289u

enum mb2_tag_type {
    MB2_TAG_END = 0,
    MB2_TAG_CMDLINE = 1,
    MB2_TAG_BOOTLOADER_NAME = 2,
    MB2_TAG_MODULE = 3,
    MB2_TAG_BASIC_MEMINFO = 4,
    MB2_TAG_BOOTDEV = 5,
    MB2_TAG_MMAP = 6,
    MB2_TAG_FRAMEBUFFER = 8,
    MB2_TAG_ELF_SECTIONS = 9,
    MB2_TAG_APM = 10,
    MB2_TAG_EFI32 = 11,
    MB2_TAG_EFI64 = 12,
    MB2_TAG_ACPI_OLD = 14,
    MB2_TAG_ACPI_NEW = 15,
    MB2_TAG_EFI_MMAP = 17,
    MB2_TAG_EFI_BS_NOT_TERMINATED = 18,
    MB2_TAG_LOAD_BASE_ADDR = 21,
};

struct mb2_info_header {
    uint32_t total_size;
    uint32_t reserved;
};
_Static_assert(sizeof(struct mb2_info_header) == 8, "multiboot2 info header");

struct mb2_tag {
    uint32_t type;
    uint32_t size; /* including this header, excluding padding */
};
_Static_assert(sizeof(struct mb2_tag) == 8, "multiboot2 tag header");

struct mb2_tag_mmap {
    uint32_t type;
    uint32_t size;
    uint32_t entry_size;
    uint32_t entry_version;
    /* entries follow, entry_size bytes apart */
};
_Static_assert(sizeof(struct mb2_tag_mmap) == 16, "multiboot2 mmap tag");

struct mb2_mmap_entry {
    uint64_t base_addr;
    uint64_t length;
    uint32_t type;
    uint32_t reserved;
};
_Static_assert(sizeof(struct mb2_mmap_entry) == 24, "multiboot2 mmap entry");

/* Memory region types; anything unknown is treated as reserved. */
enum mem_type {
    MEM_AVAILABLE = 1,
    MEM_RESERVED = 2,
    MEM_ACPI_RECLAIMABLE = 3,
    MEM_ACPI_NVS = 4,
    MEM_BAD = 5,
};

struct mem_region {
    uint64_t base;
    uint64_t length;
    enum mem_type type;
};

#define BOOT_MMAP_MAX 128

/* The parsed boot information. Strings point into the information block. */
struct boot_info {
    const char *cmdline;                   /* "" when absent */
    const char *bootloader_name;           /* "" when absent */
    struct mem_region mmap[BOOT_MMAP_MAX]; /* sorted by base address */
    size_t mmap_count;
    uint64_t usable_bytes;    /* sum of MEM_AVAILABLE lengths */
    uint64_t info_phys_start; /* the information block itself, [start, end) */
    uint64_t info_phys_end;
    bool efi_boot; /* an EFI system table tag was present */
    /* GRUB's copy of the ACPI RSDP (tag 15 "new RSDP" preferred over tag 14
       "old RSDP"), inside the information block; NULL and 0 when absent. */
    const void *acpi_rsdp;
    size_t acpi_rsdp_size;
};

enum mb2_status {
    MB2_OK = 0,
    MB2_ERR_MISALIGNED,          /* block not 8-byte aligned */
    MB2_ERR_TOTAL_SIZE,          /* total_size < 16 or larger than the readable limit */
    MB2_ERR_TAG_TOO_SMALL,       /* tag size < 8, or smaller than its fixed part */
    MB2_ERR_TAG_OVERRUN,         /* a tag runs past total_size */
    MB2_ERR_NO_END_TAG,          /* tags end without a type-0 tag */
    MB2_ERR_MMAP_ENTRY_SIZE,     /* memory-map entry_size < 24 or not a multiple of 8 */
    MB2_ERR_UNTERMINATED_STRING, /* a string tag without its NUL inside the tag */
    MB2_ERR_NO_MMAP,             /* no memory map tag */
};

/*
 * Parses the information block at info (physical address info_phys), reading
 * at most limit bytes. On success fills *out and returns MB2_OK. On error
 * returns the status and writes a message naming the tag (type and offset)
 * into err (errlen bytes); *out is then incomplete. Memory-map entries past
 * BOOT_MMAP_MAX are dropped with a note in the boot log, never written past.
 */
enum mb2_status mb2_parse(const void *info, uint64_t info_phys, size_t limit, struct boot_info *out,
                          char *err, size_t errlen);

/* Returns a short name for a tag type ("memory map"), "unknown" otherwise. */
const char *mb2_tag_name(uint32_t type);
/* Returns a short name for a memory type ("available"). */
const char *mem_type_name(enum mem_type type);

#endif
