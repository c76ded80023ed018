/*
 * ACPI tables, as far as finding the CPUs needs them (ACPI 6.5, chapter 5):
 * the RSDP (which GRUB copies into a multiboot2 tag), the XSDT (or the
 * RSDT of ACPI 1.0) and the MADT ("APIC"), whose entries list the local
 * APIC of every processor.
 *
 * The parser trusts nothing: every table's address, length and checksum is
 * checked before a byte of it is used, and bad input panics naming the
 * table and the condition ("acpi_init: MADT checksum bad"), never reads
 * past the table or outside the direct map.
 */
#ifndef KHEAP_ACPI_H
#define KHEAP_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACPI_MAX_CPUS  64
#define ACPI_TABLE_MAX (1u << 20) /* a longer table is taken for garbage */

/* Root System Description Pointer (ACPI 6.5, 5.2.5.3). */
struct acpi_rsdp {
    char signature[8]; /* "RSD PTR " */
    uint8_t checksum;  /* the first 20 bytes sum to 0 */
    char oem_id[6];
    uint8_t revision; /* 0: ACPI 1.0 (20 bytes, RSDT only); 2: the fields below */
    uint32_t rsdt_address;
    uint32_t length; /* of the whole structure */
    uint64_t xsdt_address;
    uint8_t extended_checksum; /* all length bytes sum to 0 */
    uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");
_Static_assert(__builtin_offsetof(struct acpi_rsdp, length) == 20, "RSDP v1 part is 20 bytes");
#define ACPI_RSDP_V1_SIZE 20

/* The header every system description table starts with (5.2.6). */
struct acpi_sdt_header {
    char signature[4];
    uint32_t length; /* of the table, header included */
    uint8_t revision;
    uint8_t checksum; /* all length bytes sum to 0 */
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_sdt_header) == 36, "SDT header layout");

/* Multiple APIC Description Table (5.2.12): the header, then entries. */
struct acpi_madt {
    struct acpi_sdt_header header; /* signature "APIC" */
    uint32_t lapic_address;        /* physical address of every local APIC */
    uint32_t flags;                /* bit 0: the machine also has 8259 PICs */
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT layout");

struct acpi_madt_entry {
    uint8_t type;
    uint8_t length; /* of the entry, these two bytes included */
} __attribute__((packed));

enum acpi_madt_type {
    ACPI_MADT_LOCAL_APIC = 0,
    ACPI_MADT_LAPIC_OVERRIDE = 5,
    ACPI_MADT_LOCAL_X2APIC = 9,
};

struct acpi_madt_local_apic { /* 5.2.12.2 */
    struct acpi_madt_entry entry;
    uint8_t processor_uid;
    uint8_t apic_id;
    uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_local_apic) == 8, "MADT local APIC entry");

struct acpi_madt_lapic_override { /* 5.2.12.8 */
    struct acpi_madt_entry entry;
    uint16_t reserved;
    uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_lapic_override) == 12, "MADT local APIC address override");

struct acpi_madt_local_x2apic { /* 5.2.12.12 */
    struct acpi_madt_entry entry;
    uint16_t reserved;
    uint32_t x2apic_id;
    uint32_t flags;
    uint32_t processor_uid;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_local_x2apic) == 16, "MADT local x2APIC entry");

#define ACPI_MADT_CPU_ENABLED        (1u << 0)
#define ACPI_MADT_CPU_ONLINE_CAPABLE (1u << 1)

/* What the MADT says about the CPUs. */
struct acpi_cpus {
    uint64_t lapic_phys;              /* from the MADT, or its override entry */
    size_t count;                     /* usable CPUs in apic_ids[] */
    size_t ignored;                   /* usable CPUs past ACPI_MAX_CPUS, not recorded */
    uint32_t apic_ids[ACPI_MAX_CPUS]; /* in MADT order */
    bool has_8259;                    /* MADT flag PCAT_COMPAT */
};

/*
 * Reads the RSDP at rsdp (rsdp_size readable bytes: the multiboot2 tag's
 * payload), then the XSDT (RSDT when the RSDP is version 1 or has no XSDT)
 * and the MADT it points to, all through the direct map, and fills *out
 * with the enabled (or online-capable) CPUs. Returns false, with a line in
 * the boot log, if no table is an MADT. Panics, naming the table and the
 * check, on a bad signature, checksum or length, or a table outside the
 * direct map.
 */
bool acpi_find_cpus(const void *rsdp, size_t rsdp_size, struct acpi_cpus *out);

#endif
