/*
 * Multiboot2 boot-information parser. It trusts nothing: every tag is
 * checked against total_size and the caller's readable limit before it is
 * read, so a malformed block produces an error naming the tag rather than a
 * read past the end.
 */
#include "multiboot2.h"

#include "kprintf.h"
#include "kstring.h"

#define MB2_TAG_ALIGN 8

const char *mb2_tag_name(uint32_t type)
{
    switch (type) {
    case MB2_TAG_END: return "end";
    case MB2_TAG_CMDLINE: return "command line";
    case MB2_TAG_BOOTLOADER_NAME: return "boot loader name";
    case MB2_TAG_MODULE: return "module";
    case MB2_TAG_BASIC_MEMINFO: return "basic memory info";
    case MB2_TAG_BOOTDEV: return "boot device";
    case MB2_TAG_MMAP: return "memory map";
    case MB2_TAG_FRAMEBUFFER: return "framebuffer";
    case MB2_TAG_ELF_SECTIONS: return "ELF sections";
    case MB2_TAG_APM: return "APM table";
    case MB2_TAG_EFI32: return "EFI32 system table";
    case MB2_TAG_EFI64: return "EFI64 system table";
    case MB2_TAG_ACPI_OLD: return "ACPI old RSDP";
    case MB2_TAG_ACPI_NEW: return "ACPI new RSDP";
    case MB2_TAG_EFI_MMAP: return "EFI memory map";
    case MB2_TAG_EFI_BS_NOT_TERMINATED: return "EFI boot services not terminated";
    case MB2_TAG_LOAD_BASE_ADDR: return "load base address";
    default: return "unknown";
    }
}

const char *mem_type_name(enum mem_type type)
{
    switch (type) {
    case MEM_AVAILABLE: return "available";
    case MEM_ACPI_RECLAIMABLE: return "ACPI reclaimable";
    case MEM_ACPI_NVS: return "ACPI NVS";
    case MEM_BAD: return "bad";
    default: return "reserved";
    }
}

static enum mem_type normalize_type(uint32_t raw)
{
    switch (raw) {
    case MEM_AVAILABLE:
    case MEM_ACPI_RECLAIMABLE:
    case MEM_ACPI_NVS:
    case MEM_BAD: return (enum mem_type)raw;
    default: return MEM_RESERVED;
    }
}

/* Returns the string payload of a string tag, or NULL if it is not
   NUL-terminated inside the tag. */
static const char *tag_string(const struct mb2_tag *tag)
{
    const char *s = (const char *)(tag + 1);
    size_t n = tag->size - sizeof(*tag);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0')
            return s;
    }
    return NULL;
}

static void sort_regions(struct mem_region *r, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct mem_region key = r[i];
        size_t j = i;
        while (j > 0 && r[j - 1].base > key.base) {
            r[j] = r[j - 1];
            j--;
        }
        r[j] = key;
    }
}

static enum mb2_status parse_mmap(const struct mb2_tag *tag, size_t offset, struct boot_info *out, char *err,
                                  size_t errlen)
{
    const struct mb2_tag_mmap *m = (const struct mb2_tag_mmap *)tag;
    if (tag->size < sizeof(*m)) {
        ksnprintf(err, errlen, "tag %u (memory map) at offset %zu: size %u is smaller than its header",
                  tag->type, offset, tag->size);
        return MB2_ERR_TAG_TOO_SMALL;
    }
    if (m->entry_size < sizeof(struct mb2_mmap_entry) || m->entry_size % 8 != 0) {
        ksnprintf(err, errlen, "tag %u (memory map) at offset %zu: bad entry_size %u", tag->type, offset,
                  m->entry_size);
        return MB2_ERR_MMAP_ENTRY_SIZE;
    }
    size_t count = (tag->size - sizeof(*m)) / m->entry_size;
    const uint8_t *entries = (const uint8_t *)(m + 1);
    for (size_t i = 0; i < count; i++) {
        const struct mb2_mmap_entry *e = (const struct mb2_mmap_entry *)(entries + i * m->entry_size);
        if (out->mmap_count == BOOT_MMAP_MAX) {
            kprintf("multiboot2: memory map has more than %d entries; ignoring the rest\n", BOOT_MMAP_MAX);
            break;
        }
        struct mem_region *r = &out->mmap[out->mmap_count++];
        r->base = e->base_addr;
        r->length = e->length;
        r->type = normalize_type(e->type);
        if (r->type == MEM_AVAILABLE)
            out->usable_bytes += r->length;
    }
    return MB2_OK;
}

enum mb2_status mb2_parse(const void *info, uint64_t info_phys, size_t limit, struct boot_info *out,
                          char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->cmdline = "";
    out->bootloader_name = "";
    if (errlen > 0)
        err[0] = '\0';

    if ((uintptr_t)info % MB2_TAG_ALIGN != 0) {
        ksnprintf(err, errlen, "information block at %p is not 8-byte aligned", info);
        return MB2_ERR_MISALIGNED;
    }
    if (limit < sizeof(struct mb2_info_header)) {
        ksnprintf(err, errlen, "readable limit %zu is smaller than the header", limit);
        return MB2_ERR_TOTAL_SIZE;
    }
    const struct mb2_info_header *hdr = info;
    size_t total = hdr->total_size;
    if (total < sizeof(*hdr) + sizeof(struct mb2_tag) || total > limit) {
        ksnprintf(err, errlen, "total_size %zu outside [16, %zu]", total, limit);
        return MB2_ERR_TOTAL_SIZE;
    }
    out->info_phys_start = info_phys;
    out->info_phys_end = info_phys + total;

    const uint8_t *base = info;
    size_t offset = sizeof(*hdr);
    bool have_mmap = false;
    for (;;) {
        if (offset + sizeof(struct mb2_tag) > total) {
            ksnprintf(err, errlen, "no end tag before total_size %zu (next tag at offset %zu)", total,
                      offset);
            return MB2_ERR_NO_END_TAG;
        }
        const struct mb2_tag *tag = (const struct mb2_tag *)(base + offset);
        if (tag->size < sizeof(*tag)) {
            ksnprintf(err, errlen, "tag %u (%s) at offset %zu: size %u < 8", tag->type,
                      mb2_tag_name(tag->type), offset, tag->size);
            return MB2_ERR_TAG_TOO_SMALL;
        }
        if (tag->size > total - offset) {
            ksnprintf(err, errlen, "tag %u (%s) at offset %zu: size %u runs past total_size %zu", tag->type,
                      mb2_tag_name(tag->type), offset, tag->size, total);
            return MB2_ERR_TAG_OVERRUN;
        }

        enum mb2_status st = MB2_OK;
        switch (tag->type) {
        case MB2_TAG_END:
            if (!have_mmap) {
                ksnprintf(err, errlen, "no memory map tag");
                return MB2_ERR_NO_MMAP;
            }
            sort_regions(out->mmap, out->mmap_count);
            return MB2_OK;
        case MB2_TAG_CMDLINE:
        case MB2_TAG_BOOTLOADER_NAME: {
            const char *s = tag_string(tag);
            if (s == NULL) {
                ksnprintf(err, errlen, "tag %u (%s) at offset %zu: string not NUL-terminated", tag->type,
                          mb2_tag_name(tag->type), offset);
                return MB2_ERR_UNTERMINATED_STRING;
            }
            if (tag->type == MB2_TAG_CMDLINE)
                out->cmdline = s;
            else
                out->bootloader_name = s;
            break;
        }
        case MB2_TAG_MMAP:
            st = parse_mmap(tag, offset, out, err, errlen);
            have_mmap = true;
            break;
        case MB2_TAG_ACPI_OLD:
        case MB2_TAG_ACPI_NEW:
            /* The payload is a copy of the RSDP; acpi_find_cpus() checks it. */
            if (tag->type == MB2_TAG_ACPI_NEW || out->acpi_rsdp == NULL) {
                out->acpi_rsdp = tag + 1;
                out->acpi_rsdp_size = tag->size - sizeof(*tag);
            }
            break;
        case MB2_TAG_EFI32:
        case MB2_TAG_EFI64: out->efi_boot = true; break;
        default: break; /* tags we do not need are skipped */
        }
        if (st != MB2_OK)
            return st;
        offset += (tag->size + MB2_TAG_ALIGN - 1) & ~(size_t)(MB2_TAG_ALIGN - 1);
    }
}
