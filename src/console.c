#include "console.h"

#include "serial.h"
#include "spinlock.h"
#include "vga.h"

static bool vga_enabled;
static char *capture_buf;
static size_t capture_size, capture_len;
/* One CPU writes at a time, so lines from several CPUs do not mix
   mid-chunk. Last in the lock order (spinlock.h): anyone may print. */
static struct spinlock console_lock = SPINLOCK_INIT("console");

void console_init(void)
{
    serial_init();
}

void console_enable_vga(void)
{
    vga_init();
    vga_enabled = true;
}

void console_write(const char *s, size_t n)
{
    /* Re-entrant on one CPU: a panic inside a write must still print. */
    bool nested = spin_held(&console_lock);
    unsigned long flags = nested ? 0 : spin_lock_irqsave(&console_lock);
    serial_write(s, n);
    if (vga_enabled)
        vga_write(s, n);
    if (capture_buf != NULL) {
        for (size_t i = 0; i < n && capture_len + 1 < capture_size; i++)
            capture_buf[capture_len++] = s[i];
        capture_buf[capture_len] = '\0';
    }
    if (!nested)
        spin_unlock_irqrestore(&console_lock, flags);
}

void console_capture_begin(char *buf, size_t size)
{
    capture_len = 0;
    capture_size = size;
    capture_buf = size > 0 ? buf : NULL;
    if (capture_buf != NULL)
        capture_buf[0] = '\0';
}

size_t console_capture_end(void)
{
    capture_buf = NULL;
    return capture_len;
}
