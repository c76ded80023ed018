/*
 * The ACPI parser on tables crafted in memory: a good set (RSDP 2.0 ->
 * XSDT -> MADT, and RSDP 1.0 -> RSDT -> MADT) is read right, and every kind
 * of bad input -- signature, checksum, length, an entry running past its
 * table, a table outside the direct map -- ends in a panic naming the
 * table, never in a read past the end.
 */
#include "ktest.h"

#include <stddef.h>

#include "acpi.h"
#include "kstring.h"
#include "memlayout.h"

#define MADT_ENTRIES_SIZE (2 * 8 + 8 + 16 + 12)

struct crafted {
    struct acpi_rsdp rsdp;
    struct {
        struct acpi_sdt_header h;
        uint64_t entry[2]; /* entry[0]: an unrelated table, entry[1]: the MADT */
    } __attribute__((packed)) xsdt;
    struct {
        struct acpi_sdt_header h;
        uint32_t entry[2];
    } __attribute__((packed)) rsdt;
    struct acpi_sdt_header other; /* "FACP", header only */
    struct {
        struct acpi_madt m;
        uint8_t entries[MADT_ENTRIES_SIZE];
    } __attribute__((packed)) madt;
};

static struct crafted t __attribute__((aligned(16)));

static uint64_t phys_of(const void *p)
{
    return kernel_virt_to_phys(p);
}

static void set_checksum(struct acpi_sdt_header *h)
{
    h->checksum = 0;
    uint8_t sum = 0;
    for (size_t i = 0; i < h->length; i++)
        sum = (uint8_t)(sum + ((const uint8_t *)h)[i]);
    h->checksum = (uint8_t)-sum;
}

static void set_rsdp_checksums(void)
{
    uint8_t sum = 0;
    t.rsdp.checksum = 0;
    t.rsdp.extended_checksum = 0;
    for (size_t i = 0; i < ACPI_RSDP_V1_SIZE; i++)
        sum = (uint8_t)(sum + ((const uint8_t *)&t.rsdp)[i]);
    t.rsdp.checksum = (uint8_t)-sum;
    sum = 0;
    for (size_t i = 0; i < sizeof(t.rsdp); i++)
        sum = (uint8_t)(sum + ((const uint8_t *)&t.rsdp)[i]);
    t.rsdp.extended_checksum = (uint8_t)-sum;
}

static void header(struct acpi_sdt_header *h, const char *sig, size_t length)
{
    memcpy(h->signature, sig, 4);
    h->length = (uint32_t)length;
    h->revision = 1;
    memcpy(h->oem_id, "KHEAP ", 6);
}

/* Fills t with a valid set of tables: CPUs with APIC ids 0 and 3 (xAPIC),
   one disabled CPU (id 5), one x2APIC CPU (id 300), and a local APIC
   address override to 0xfee01000. */
static void build(uint8_t revision)
{
    memset(&t, 0, sizeof(t));
    header(&t.other, "FACP", sizeof(t.other));
    set_checksum(&t.other);

    header(&t.madt.m.header, "APIC", sizeof(t.madt));
    t.madt.m.lapic_address = 0xfee00000;
    t.madt.m.flags = 1;
    uint8_t *e = t.madt.entries;
    const struct acpi_madt_local_apic cpus[3] = {
        {{ACPI_MADT_LOCAL_APIC, 8}, 0, 0, ACPI_MADT_CPU_ENABLED},
        {{ACPI_MADT_LOCAL_APIC, 8}, 1, 3, ACPI_MADT_CPU_ENABLED},
        {{ACPI_MADT_LOCAL_APIC, 8}, 2, 5, 0},
    };
    memcpy(e, cpus, sizeof(cpus));
    e += sizeof(cpus);
    const struct acpi_madt_local_x2apic x2 = {{ACPI_MADT_LOCAL_X2APIC, 16}, 0, 300, ACPI_MADT_CPU_ENABLED, 3};
    memcpy(e, &x2, sizeof(x2));
    e += sizeof(x2);
    const struct acpi_madt_lapic_override o = {{ACPI_MADT_LAPIC_OVERRIDE, 12}, 0, 0xfee01000};
    memcpy(e, &o, sizeof(o));
    set_checksum(&t.madt.m.header);

    header(&t.xsdt.h, "XSDT", sizeof(t.xsdt));
    t.xsdt.entry[0] = phys_of(&t.other);
    t.xsdt.entry[1] = phys_of(&t.madt);
    set_checksum(&t.xsdt.h);
    header(&t.rsdt.h, "RSDT", sizeof(t.rsdt));
    t.rsdt.entry[0] = (uint32_t)phys_of(&t.other);
    t.rsdt.entry[1] = (uint32_t)phys_of(&t.madt);
    set_checksum(&t.rsdt.h);

    memcpy(t.rsdp.signature, "RSD PTR ", 8);
    memcpy(t.rsdp.oem_id, "KHEAP ", 6);
    t.rsdp.revision = revision;
    t.rsdp.rsdt_address = (uint32_t)phys_of(&t.rsdt);
    t.rsdp.length = sizeof(t.rsdp);
    t.rsdp.xsdt_address = phys_of(&t.xsdt);
    set_rsdp_checksums();
}

static struct acpi_cpus found;

static void check_found(void)
{
    KASSERT_EQ(found.count, 3);
    KASSERT_EQ(found.apic_ids[0], 0);
    KASSERT_EQ(found.apic_ids[1], 3);
    KASSERT_EQ(found.apic_ids[2], 300);
    KASSERT_EQ(found.lapic_phys, 0xfee01000);
    KASSERT(found.has_8259);
}

KTEST(acpi_reads_crafted_rsdp2_xsdt_madt)
{
    build(2);
    KASSERT(acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found));
    check_found();
}

KTEST(acpi_reads_crafted_rsdp1_rsdt_madt)
{
    build(0);
    t.xsdt.h.signature[0] = 'X' + 1; /* must not be looked at */
    KASSERT(acpi_find_cpus(&t.rsdp, ACPI_RSDP_V1_SIZE, &found));
    check_found();
}

KTEST(acpi_without_madt_returns_false)
{
    build(2);
    t.xsdt.h.length = sizeof(t.xsdt.h) + 8; /* only the FACP */
    set_checksum(&t.xsdt.h);
    KASSERT(!acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found));
}

KTEST_EXPECT_PANIC(acpi_rejects_rsdp_signature)
{
    build(2);
    t.rsdp.signature[0] = 'X';
    set_rsdp_checksums();
    ktest_expect_panic_containing("RSDP signature bad");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_rsdp_checksum)
{
    build(2);
    t.rsdp.checksum++;
    ktest_expect_panic_containing("RSDP checksum bad");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_rsdp_extended_checksum)
{
    build(2);
    t.rsdp.extended_checksum++;
    ktest_expect_panic_containing("RSDP extended checksum bad");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_rsdp_longer_than_its_tag)
{
    build(2);
    ktest_expect_panic_containing("RSDP length");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp) - 1, &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_short_rsdp)
{
    build(2);
    ktest_expect_panic_containing("RSDP of 12 bytes");
    acpi_find_cpus(&t.rsdp, 12, &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_xsdt_checksum)
{
    build(2);
    t.xsdt.h.oem_revision++;
    ktest_expect_panic_containing("XSDT checksum bad");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_rsdt_checksum)
{
    build(0);
    t.rsdt.entry[0]++;
    ktest_expect_panic_containing("RSDT checksum bad");
    acpi_find_cpus(&t.rsdp, ACPI_RSDP_V1_SIZE, &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_xsdt_shorter_than_header)
{
    build(2);
    t.xsdt.h.length = 10;
    ktest_expect_panic_containing("XSDT length 10 outside");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_xsdt_partial_entry)
{
    build(2);
    t.xsdt.h.length = sizeof(t.xsdt) - 4;
    set_checksum(&t.xsdt.h);
    ktest_expect_panic_containing("XSDT length 48 is not its header plus 8-byte entries");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_xsdt_outside_direct_map)
{
    build(2);
    t.rsdp.xsdt_address = 0x00007ffffffff000ull;
    set_rsdp_checksums();
    ktest_expect_panic_containing("XSDT at 0x00007ffffffff000 (36 bytes) lies outside the direct map");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_madt_checksum)
{
    build(2);
    t.madt.m.lapic_address ^= 0x1000;
    ktest_expect_panic_containing("MADT checksum bad");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_madt_longer_than_limit)
{
    build(2);
    t.madt.m.header.length = ACPI_TABLE_MAX + 1;
    ktest_expect_panic_containing("MADT length 1048577 outside");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_madt_shorter_than_its_header)
{
    build(2);
    t.madt.m.header.length = 40;
    set_checksum(&t.madt.m.header);
    ktest_expect_panic_containing("MADT length 40 shorter than its 44-byte header");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_madt_entry_past_the_table)
{
    build(2);
    t.madt.entries[MADT_ENTRIES_SIZE - 12 + 1] = 13; /* the override entry claims 13 of its 12 bytes */
    set_checksum(&t.madt.m.header);
    ktest_expect_panic_containing("MADT entry at offset 84: length 13 runs past the table");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_madt_entry_of_length_zero)
{
    build(2);
    t.madt.entries[1] = 0; /* would loop forever if it were believed */
    set_checksum(&t.madt.m.header);
    ktest_expect_panic_containing("MADT entry at offset 44: length 0");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}

KTEST_EXPECT_PANIC(acpi_rejects_short_local_apic_entry)
{
    build(2);
    t.madt.entries[1] = 4;
    set_checksum(&t.madt.m.header);
    ktest_expect_panic_containing("MADT local APIC entry at offset 44: length 4 < 8");
    acpi_find_cpus(&t.rsdp, sizeof(t.rsdp), &found);
}
