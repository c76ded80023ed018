#include "vga.h"

#include <stdint.h>

#include "memlayout.h"

#define VGA_TEXT_PHYS   0xb8000
#define VGA_COLS        80
#define VGA_ROWS        25
#define VGA_ATTR_NORMAL 0x07 /* light grey on black */

static volatile uint16_t *vga_buf;
static unsigned vga_row, vga_col;

static uint16_t vga_cell(char c)
{
    return (uint16_t)((VGA_ATTR_NORMAL << 8) | (uint8_t)c);
}

void vga_init(void)
{
    vga_buf = (volatile uint16_t *)phys_to_virt(VGA_TEXT_PHYS);
    for (unsigned i = 0; i < VGA_COLS * VGA_ROWS; i++)
        vga_buf[i] = vga_cell(' ');
    vga_row = vga_col = 0;
}

static void vga_newline(void)
{
    vga_col = 0;
    if (++vga_row < VGA_ROWS)
        return;
    for (unsigned i = 0; i < VGA_COLS * (VGA_ROWS - 1); i++)
        vga_buf[i] = vga_buf[i + VGA_COLS];
    for (unsigned i = 0; i < VGA_COLS; i++)
        vga_buf[VGA_COLS * (VGA_ROWS - 1) + i] = vga_cell(' ');
    vga_row = VGA_ROWS - 1;
}

void vga_write(const char *s, size_t n)
{
    if (vga_buf == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            vga_newline();
            continue;
        }
        vga_buf[vga_row * VGA_COLS + vga_col] = vga_cell(s[i]);
        if (++vga_col == VGA_COLS)
            vga_newline();
    }
}
