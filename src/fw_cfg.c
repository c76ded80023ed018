#include "fw_cfg.h"

#include "cpu.h"
#include "kstring.h"

#define FW_CFG_PORT_SELECTOR 0x510
#define FW_CFG_PORT_DATA     0x511
#define FW_CFG_SIGNATURE     0x0000
#define FW_CFG_RAM_SIZE      0x0003
#define FW_CFG_NB_CPUS       0x0005
#define FW_CFG_FILE_DIR      0x0019
#define FW_CFG_FILE_NAME_LEN 56

struct fw_cfg_file { /* big-endian on the wire */
    uint32_t size;
    uint16_t select;
    uint16_t reserved;
    char name[FW_CFG_FILE_NAME_LEN];
};

static void fw_cfg_select(uint16_t key)
{
    outw(FW_CFG_PORT_SELECTOR, key);
}

static void fw_cfg_read(void *buf, size_t n)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = inb(FW_CFG_PORT_DATA);
}

static uint32_t be32(uint32_t v)
{
    return __builtin_bswap32(v);
}

bool fw_cfg_present(void)
{
    char sig[4];
    fw_cfg_select(FW_CFG_SIGNATURE);
    fw_cfg_read(sig, sizeof(sig));
    return memcmp(sig, "QEMU", 4) == 0;
}

uint64_t fw_cfg_ram_size(void)
{
    if (!fw_cfg_present())
        return 0;
    uint64_t size; /* little-endian, like the legacy items */
    fw_cfg_select(FW_CFG_RAM_SIZE);
    fw_cfg_read(&size, sizeof(size));
    return size;
}

unsigned fw_cfg_cpu_count(void)
{
    if (!fw_cfg_present())
        return 0;
    uint16_t n; /* little-endian, like the legacy items */
    fw_cfg_select(FW_CFG_NB_CPUS);
    fw_cfg_read(&n, sizeof(n));
    return n;
}

bool fw_cfg_read_file(const char *name, char *buf, size_t size)
{
    if (size == 0 || !fw_cfg_present())
        return false;
    uint32_t count;
    fw_cfg_select(FW_CFG_FILE_DIR);
    fw_cfg_read(&count, sizeof(count));
    count = be32(count);
    for (uint32_t i = 0; i < count; i++) {
        struct fw_cfg_file f;
        fw_cfg_read(&f, sizeof(f));
        f.name[FW_CFG_FILE_NAME_LEN - 1] = '\0';
        if (strcmp(f.name, name) != 0)
            continue;
        uint32_t len = be32(f.size);
        size_t n = len < size - 1 ? len : size - 1;
        fw_cfg_select(__builtin_bswap16(f.select));
        fw_cfg_read(buf, n);
        buf[n] = '\0';
        return true;
    }
    return false;
}
