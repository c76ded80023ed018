#include "kernel.h"

#include "console.h"
#include "cpu.h"
#include "gdt.h"
#include "alloc/kmalloc.h"
#include "kernel_heap.h"
#include "kprintf.h"
#include "paging/pmm.h"
#include "paging/heap_region.h"
#include "paging/paging.h"
#include "paging/vmm.h"
#include "memlayout.h"
#include "panic.h"
#include "pic.h"
#include "smp.h"
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
    if (bytes >= gib && bytes % gib == 0)
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
    kprintf("boot information: [%p-%p) %llu bytes\n", (void *)bi->info_phys_start, (void *)bi->info_phys_end,
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

static void print_memory_summary(uint64_t pmm_us, uint64_t vmm_us)
{
    struct pmm_stats s = pmm_stats();
    char total[32], reserved[32], free[32], dm[32];
    format_size(total, sizeof(total), s.total_frames * PAGE_SIZE);
    format_size(reserved, sizeof(reserved), s.reserved_frames * PAGE_SIZE);
    format_size(free, sizeof(free), s.free_frames * PAGE_SIZE);
    format_size(dm, sizeof(dm), vmm_direct_map_end());
    kprintf("frames: %llu total (%s), %llu reserved (%s), %llu free (%s) in %zu ranges\n",
            (unsigned long long)s.total_frames, total, (unsigned long long)s.reserved_frames, reserved,
            (unsigned long long)s.free_frames, free, s.regions);
    kprintf("direct map: %s at %p with %s pages; kernel W^X, NULL unmapped\n", dm, (void *)DIRECT_MAP_BASE,
            vmm_direct_map_page_size() == PAGE_SIZE_1G ? "1 GiB" : "2 MiB");
    kprintf("frame allocator init: %llu us, kernel page tables: %llu us\n", (unsigned long long)pmm_us,
            (unsigned long long)vmm_us);
}

_Noreturn void kernel_entry(uint32_t magic, uint64_t info_phys)
{
    smp_init_bsp(); /* first: every lock asks which CPU it runs on (GS) */
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

    uint64_t t0 = rdtsc();
    pmm_init(&boot_info, NULL, 0);
    uint64_t t1 = rdtsc();
    vmm_init();
    uint64_t t2 = rdtsc();

    pic_init();
    timer_init();
    sti();
    kprintf("interrupts on, timer at %d Hz, TSC %llu MHz\n", TIMER_HZ,
            (unsigned long long)(timer_tsc_hz() / 1000000));
    print_memory_summary(tsc_to_us(t1 - t0), tsc_to_us(t2 - t1));

    uint64_t t3 = rdtsc();
    smp_init(&boot_info);
    kprintf("smp: start-up took %llu us\n", (unsigned long long)tsc_to_us(rdtsc() - t3));

    kernel_heap_init();
    char cap[32];
    format_size(cap, sizeof(cap), heap_region_limit(kernel_heap_region()));
    kprintf("heap: backend %s, %d KiB at %p, grows on demand up to %s\n", kmalloc_backend_name(),
            KERNEL_HEAP_INITIAL_PAGES * 4, (void *)heap_region_start(kernel_heap_region()), cap);

    kernel_main();
}
