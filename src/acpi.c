/*
 * ACPI table parser (see acpi.h). Each table is validated as a whole --
 * address inside the direct map, length between its header and
 * ACPI_TABLE_MAX, checksum -- before any field past its header is read;
 * the MADT's entries are then walked with every length checked against
 * what is left of the table.
 */
#include "acpi.h"

#include "kprintf.h"
#include "kstring.h"
#include "memlayout.h"
#include "panic.h"
#include "paging/vmm.h"

static uint8_t sum_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + b[i]);
    return sum;
}

/* Panics unless [phys, phys + len) lies inside the direct map. */
static void check_readable(uint64_t phys, uint64_t len, const char *name)
{
    uint64_t end;
    if (__builtin_add_overflow(phys, len, &end) || end > vmm_direct_map_end())
        panic("acpi_find_cpus: %s at %p (%llu bytes) lies outside the direct map", name, (void *)phys,
              (unsigned long long)len);
}

/* Returns the table at phys after checking its signature (sig), length and
   checksum; name is what panics call it. */
static const struct acpi_sdt_header *get_table(uint64_t phys, const char *sig, const char *name)
{
    check_readable(phys, sizeof(struct acpi_sdt_header), name);
    const struct acpi_sdt_header *h = phys_to_virt(phys);
    if (memcmp(h->signature, sig, 4) != 0)
        panic("acpi_find_cpus: %s at %p has signature \"%.4s\", not \"%s\"", name, (void *)phys, h->signature,
              sig);
    if (h->length < sizeof(*h) || h->length > ACPI_TABLE_MAX)
        panic("acpi_find_cpus: %s length %u outside [%zu, %u]", name, h->length, sizeof(*h), ACPI_TABLE_MAX);
    check_readable(phys, h->length, name);
    if (sum_bytes(h, h->length) != 0)
        panic("acpi_find_cpus: %s checksum bad", name);
    return h;
}

static void add_cpu(struct acpi_cpus *out, uint32_t apic_id, uint32_t flags)
{
    if (!(flags & (ACPI_MADT_CPU_ENABLED | ACPI_MADT_CPU_ONLINE_CAPABLE)))
        return;
    for (size_t i = 0; i < out->count; i++) {
        if (out->apic_ids[i] == apic_id)
            return; /* listed twice (as xAPIC and x2APIC): one CPU */
    }
    if (out->count == ACPI_MAX_CPUS)
        out->ignored++;
    else
        out->apic_ids[out->count++] = apic_id;
}

static void parse_madt(const struct acpi_sdt_header *h, struct acpi_cpus *out)
{
    if (h->length < sizeof(struct acpi_madt))
        panic("acpi_find_cpus: MADT length %u shorter than its %zu-byte header", h->length,
              sizeof(struct acpi_madt));
    const struct acpi_madt *madt = (const struct acpi_madt *)h;
    const uint8_t *base = (const uint8_t *)h;
    out->lapic_phys = madt->lapic_address;
    out->has_8259 = madt->flags & 1;
    for (size_t off = sizeof(*madt); off < h->length;) {
        size_t left = h->length - off;
        const struct acpi_madt_entry *e = (const struct acpi_madt_entry *)(base + off);
        if (left < sizeof(*e) || e->length < sizeof(*e) || e->length > left)
            panic("acpi_find_cpus: MADT entry at offset %zu: length %u runs past the table (%zu bytes left)",
                  off, left < sizeof(*e) ? 0u : e->length, left);
        switch (e->type) {
        case ACPI_MADT_LOCAL_APIC: {
            if (e->length < sizeof(struct acpi_madt_local_apic))
                panic("acpi_find_cpus: MADT local APIC entry at offset %zu: length %u < %zu", off, e->length,
                      sizeof(struct acpi_madt_local_apic));
            const struct acpi_madt_local_apic *l = (const void *)e;
            add_cpu(out, l->apic_id, l->flags);
            break;
        }
        case ACPI_MADT_LOCAL_X2APIC: {
            if (e->length < sizeof(struct acpi_madt_local_x2apic))
                panic("acpi_find_cpus: MADT x2APIC entry at offset %zu: length %u < %zu", off, e->length,
                      sizeof(struct acpi_madt_local_x2apic));
            const struct acpi_madt_local_x2apic *x = (const void *)e;
            add_cpu(out, x->x2apic_id, x->flags);
            break;
        }
        case ACPI_MADT_LAPIC_OVERRIDE: {
            if (e->length < sizeof(struct acpi_madt_lapic_override))
                panic("acpi_find_cpus: MADT APIC address override at offset %zu: length %u < %zu", off,
                      e->length, sizeof(struct acpi_madt_lapic_override));
            const struct acpi_madt_lapic_override *o = (const void *)e;
            out->lapic_phys = o->address;
            break;
        }
        default: break; /* I/O APICs, interrupt overrides, NMIs: not needed yet */
        }
        off += e->length;
    }
}

bool acpi_find_cpus(const void *rsdp_bytes, size_t rsdp_size, struct acpi_cpus *out)
{
    memset(out, 0, sizeof(*out));
    const struct acpi_rsdp *rsdp = rsdp_bytes;
    if (rsdp == NULL || rsdp_size < ACPI_RSDP_V1_SIZE)
        panic("acpi_find_cpus: RSDP of %zu bytes shorter than %d", rsdp == NULL ? 0 : rsdp_size,
              ACPI_RSDP_V1_SIZE);
    if (memcmp(rsdp->signature, "RSD PTR ", 8) != 0)
        panic("acpi_find_cpus: RSDP signature bad");
    if (sum_bytes(rsdp, ACPI_RSDP_V1_SIZE) != 0)
        panic("acpi_find_cpus: RSDP checksum bad");

    bool use_xsdt = false;
    if (rsdp->revision >= 2) {
        if (rsdp_size < sizeof(*rsdp) || rsdp->length < sizeof(*rsdp) || rsdp->length > rsdp_size)
            panic("acpi_find_cpus: RSDP length %u outside [%zu, %zu]",
                  rsdp_size < sizeof(*rsdp) ? 0 : rsdp->length, sizeof(*rsdp), rsdp_size);
        if (sum_bytes(rsdp, rsdp->length) != 0)
            panic("acpi_find_cpus: RSDP extended checksum bad");
        use_xsdt = rsdp->xsdt_address != 0;
    }

    const struct acpi_sdt_header *root;
    size_t entry_size;
    if (use_xsdt) {
        root = get_table(rsdp->xsdt_address, "XSDT", "XSDT");
        entry_size = sizeof(uint64_t);
    } else {
        root = get_table(rsdp->rsdt_address, "RSDT", "RSDT");
        entry_size = sizeof(uint32_t);
    }
    const char *root_name = use_xsdt ? "XSDT" : "RSDT";
    size_t body = root->length - sizeof(*root);
    if (body % entry_size != 0)
        panic("acpi_find_cpus: %s length %u is not its header plus %zu-byte entries", root_name, root->length,
              entry_size);
    const uint8_t *entries = (const uint8_t *)(root + 1);
    for (size_t i = 0; i < body / entry_size; i++) {
        uint64_t phys = 0;
        memcpy(&phys, entries + i * entry_size, entry_size); /* entries are not 8-aligned */
        check_readable(phys, sizeof(struct acpi_sdt_header), "a table the root table lists");
        const struct acpi_sdt_header *h = phys_to_virt(phys);
        if (memcmp(h->signature, "APIC", 4) != 0)
            continue;
        parse_madt(get_table(phys, "APIC", "MADT"), out);
        return true;
    }
    kprintf("acpi: no MADT in the %s: running on the boot CPU only\n", root_name);
    return false;
}
