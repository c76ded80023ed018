/*
 * The multiboot2 parser: on the real boot information GRUB handed us, and on
 * hand-made malformed blocks (errors and the boot path's panic).
 */
#include "ktest.h"

#include "fw_cfg.h"
#include "kernel.h"
#include "kstring.h"
#include "memlayout.h"

#define MIB (1024ull * 1024)

/* Parses a QEMU_MEMORY-style size ("128M", "2G"). */
static uint64_t parse_size(const char *s)
{
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (uint64_t)(*s - '0');
    return *s == 'G' ? v << 30 : v << 20;
}

KTEST(boot_info_memory_map_sorted_and_nonempty)
{
    const struct boot_info *bi = kernel_boot_info();
    KASSERT(bi->mmap_count > 0);
    uint64_t usable = 0;
    for (size_t i = 0; i < bi->mmap_count; i++) {
        if (i > 0)
            KASSERT(bi->mmap[i - 1].base <= bi->mmap[i].base);
        if (bi->mmap[i].type == MEM_AVAILABLE)
            usable += bi->mmap[i].length;
    }
    KASSERT_EQ(usable, bi->usable_bytes);
}

KTEST(boot_info_usable_memory_matches_qemu_memory)
{
    uint64_t configured = parse_size(KHEAP_QEMU_MEMORY);
    /* The runner must have started QEMU with the configured -m. */
    KASSERT_EQ(fw_cfg_ram_size(), configured);

    /* Usable RAM is what QEMU gave minus the firmware's holes: below 1 MiB,
       ACPI tables and firmware data at the top of low memory (UEFI keeps
       more for itself). Never more than the RAM itself. */
    uint64_t usable = kernel_boot_info()->usable_bytes;
    ktest_log("configured %llu MiB, usable %llu KiB", (unsigned long long)(configured / MIB),
              (unsigned long long)(usable / 1024));
    KASSERT(usable <= configured);
    uint64_t holes = 2 * MIB + configured / 16;
    if (strcmp(KHEAP_QEMU_FIRMWARE, "uefi") == 0)
        holes += 16 * MIB;
    KASSERT(usable + holes >= configured);
}

KTEST(boot_info_command_line_and_loader)
{
    const struct boot_info *bi = kernel_boot_info();
    KASSERT(strcmp(bi->cmdline, KHEAP_CMDLINE) == 0);
    KASSERT(kstrstr(bi->bootloader_name, "GRUB") != NULL);
}

KTEST(boot_info_block_range_is_recorded)
{
    const struct boot_info *bi = kernel_boot_info();
    KASSERT(bi->info_phys_end > bi->info_phys_start);
    KASSERT_EQ(bi->info_phys_start % 8, 0);
    /* The block's own total_size says how long it is. */
    const uint32_t *total = phys_to_virt(bi->info_phys_start);
    KASSERT_EQ(*total, bi->info_phys_end - bi->info_phys_start);
    /* The strings point inside the block. */
    uint64_t cmd = direct_virt_to_phys(bi->cmdline);
    KASSERT(cmd >= bi->info_phys_start && cmd < bi->info_phys_end);
}

/* A hand-made information block: header + tags, built into words[]. */
struct fake_info {
    uint32_t words[64] __attribute__((aligned(8)));
    size_t len; /* in bytes */
};

static void fake_begin(struct fake_info *f)
{
    memset(f, 0, sizeof(*f));
    f->len = 8;
}

/* Appends a tag of the given type with payload (size = 8 + payload_len). */
static void fake_tag(struct fake_info *f, uint32_t type, uint32_t size, const void *payload,
                     size_t payload_len)
{
    uint8_t *p = (uint8_t *)f->words + f->len;
    uint32_t hdr[2] = {type, size};
    memcpy(p, hdr, sizeof(hdr));
    memcpy(p + 8, payload, payload_len);
    f->len += (8 + payload_len + 7) & ~(size_t)7;
}

static void fake_mmap(struct fake_info *f, uint32_t entry_size)
{
    /* Two available regions given out of order, one of an unknown type. */
    struct {
        uint32_t entry_size, entry_version;
        struct mb2_mmap_entry e[3];
    } m = {entry_size,
           0,
           {
               {0x100000, 0x700000, MEM_AVAILABLE, 0},
               {0x0, 0x9f000, MEM_AVAILABLE, 0},
               {0xfffc0000, 0x40000, 77, 0},
           }};
    fake_tag(f, MB2_TAG_MMAP, 8 + sizeof(m), &m, sizeof(m));
}

static void fake_end(struct fake_info *f)
{
    fake_tag(f, MB2_TAG_END, 8, NULL, 0);
    f->words[0] = (uint32_t)f->len;
}

static enum mb2_status parse_fake(struct fake_info *f, struct boot_info *out, char *err, size_t n)
{
    return mb2_parse(f->words, 0x5000, sizeof(f->words), out, err, n);
}

KTEST(mb2_parse_wellformed_block)
{
    static struct fake_info f;
    static struct boot_info bi;
    char err[160];
    fake_begin(&f);
    fake_tag(&f, MB2_TAG_CMDLINE, 8 + 6, "hello", 6);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    fake_tag(&f, 99, 8 + 3, "xyz", 3); /* unknown tag: skipped */
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_OK);
    KASSERT(strcmp(bi.cmdline, "hello") == 0);
    KASSERT_EQ(bi.mmap_count, 3);
    KASSERT_EQ(bi.mmap[0].base, 0); /* sorted */
    KASSERT_EQ(bi.mmap[1].base, 0x100000);
    KASSERT_EQ(bi.mmap[2].type, MEM_RESERVED); /* unknown type 77 */
    KASSERT_EQ(bi.usable_bytes, 0x700000 + 0x9f000);
    KASSERT_EQ(bi.info_phys_start, 0x5000);
    KASSERT_EQ(bi.info_phys_end, 0x5000 + f.len);
}

KTEST(mb2_parse_steps_by_entry_size)
{
    /* entry_size 32: each entry carries 8 extra bytes the parser must skip. */
    static struct fake_info f;
    static struct boot_info bi;
    char err[160];
    fake_begin(&f);
    struct {
        uint32_t entry_size, entry_version;
        struct {
            struct mb2_mmap_entry e;
            uint64_t extra;
        } e[2];
    } m = {32, 0, {{{0x0, 0x1000, MEM_AVAILABLE, 0}, ~0ull}, {{0x200000, 0x2000, MEM_AVAILABLE, 0}, ~0ull}}};
    fake_tag(&f, MB2_TAG_MMAP, 8 + sizeof(m), &m, sizeof(m));
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_OK);
    KASSERT_EQ(bi.mmap_count, 2);
    KASSERT_EQ(bi.mmap[1].base, 0x200000);
    KASSERT_EQ(bi.usable_bytes, 0x3000);
}

KTEST(mb2_parse_rejects_malformed_blocks)
{
    static struct fake_info f;
    static struct boot_info bi;
    char err[160];

    /* A tag whose size is below 8. */
    fake_begin(&f);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    fake_tag(&f, MB2_TAG_CMDLINE, 4, NULL, 0);
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_TAG_TOO_SMALL);
    KASSERT(kstrstr(err, "tag 1 (command line)") != NULL);

    /* A tag running past total_size. */
    fake_begin(&f);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    fake_tag(&f, MB2_TAG_BOOTLOADER_NAME, 200, "GRUB", 5);
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_TAG_OVERRUN);
    KASSERT(kstrstr(err, "boot loader name") != NULL);

    /* No end tag before total_size. */
    fake_begin(&f);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    f.words[0] = (uint32_t)f.len;
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_NO_END_TAG);

    /* total_size larger than what may be read. */
    fake_begin(&f);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    fake_end(&f);
    f.words[0] = sizeof(f.words) + 8;
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_TOTAL_SIZE);

    /* A memory map with a bad entry size. */
    fake_begin(&f);
    fake_mmap(&f, 20);
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_MMAP_ENTRY_SIZE);

    /* A command line without its NUL. */
    fake_begin(&f);
    fake_mmap(&f, sizeof(struct mb2_mmap_entry));
    fake_tag(&f, MB2_TAG_CMDLINE, 8 + 4, "abcd", 4);
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_UNTERMINATED_STRING);

    /* No memory map at all. */
    fake_begin(&f);
    fake_end(&f);
    KASSERT_EQ(parse_fake(&f, &bi, err, sizeof(err)), MB2_ERR_NO_MMAP);

    /* A misaligned block. */
    KASSERT_EQ(mb2_parse((const uint8_t *)f.words + 4, 0, 64, &bi, err, sizeof(err)), MB2_ERR_MISALIGNED);
}

KTEST_EXPECT_PANIC(boot_info_parse_panics_naming_the_tag)
{
    static struct fake_info f;
    static struct boot_info bi;
    fake_begin(&f);
    struct {
        uint32_t entry_size, entry_version;
    } m = {24, 0};
    fake_tag(&f, MB2_TAG_MMAP, 8 + 8 + 4096, &m, sizeof(m)); /* claims 4 KiB more */
    fake_end(&f);
    ktest_expect_panic_containing("tag 6 (memory map) at offset 8");
    boot_info_parse(f.words, 0, sizeof(f.words), &bi);
}
