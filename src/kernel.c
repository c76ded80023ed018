#include "kernel.h"

#include "console.h"
#include "cpu.h"
#include "gdt.h"
#include "kprintf.h"
#include "memlayout.h"
#include "panic.h"
#include "pic.h"
#include "timer.h"
#include "trap.h"

static struct boot_info boot_info;

const struct boot_info *kernel_boot_info(void)
{
    return &boot_info;
}

void format_size(char *buf, size_t size, uint64_t bytes)
{
    const uint64_t kib = 1024, mib = 1024 * kib, gib = 1024 * mib;
    if (bytes >= 4 * gib && bytes % gib == 0)
        ksnprintf(buf, size, "%llu GiB", (unsigned long long)(bytes / gib));
    else if (bytes >= 4 * mib)
        ksnprintf(buf, size, "%llu MiB", (unsigned long long)(bytes / mib));
    else if (bytes >= kib)
        ksnprintf(buf, size, "%llu KiB", (unsigned long long)(bytes / kib));
    else
        ksnprintf(buf, size, "%llu B", (unsigned long long)bytes);
}

void boot_info_parse(const void *info, uint64_t info_phys, size_t limit, struct boot_info *out)
{
    char err[160];
    if (mb2_parse(info, info_phys, limit, out, err, sizeof(err)) != MB2_OK)
        panic("mb2_parse: %s", err);
}

static void print_boot_info(const struct boot_info *bi)
{
    char sz[32];
    kprintf("boot loader: %s\n", bi->bootloader_name);
    kprintf("command line: \"%s\"\n", bi->cmdline);
    kprintf("boot information: [%p-%p) %llu bytes\n", (void *)bi->info_phys_start,
            (void *)bi->info_phys_end,
            (unsigned long long)(bi->info_phys_end - bi->info_phys_start));
    kprintf("memory map (%zu regions):\n", bi->mmap_count);
    for (size_t i = 0; i < bi->mmap_count; i++) {
        const struct mem_region *r = &bi->mmap[i];
        format_size(sz, sizeof(sz), r->length);
        kprintf("  [%p-%p) %10s  %s\n", (void *)r->base, (void *)(r->base + r->length), sz,
                mem_type_name(r->type));
    }
    format_size(sz, sizeof(sz), bi->usable_bytes);
    kprintf("usable memory: %s\n", sz);
}

_Noreturn void kernel_entry(uint32_t magic, uint64_t info_phys)
{
    console_init();
    kprintf("\nkheap kernel\n");
    if (magic != MB2_BOOTLOADER_MAGIC)
        panic("kernel_entry: bad multiboot2 magic 0x%x", magic);

    gdt_init();
    idt_init();

    boot_info_parse(phys_to_virt(info_phys), info_phys, BOOT_INFO_MAX_SIZE, &boot_info);
    if (!boot_info.efi_boot)
        console_enable_vga();
    print_boot_info(&boot_info);

    pic_init();
    timer_init();
    sti();
    kprintf("interrupts on, timer at %d Hz\n", TIMER_HZ);

    kernel_main();
}
