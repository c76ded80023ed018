#include "qemu.h"

#include "cpu.h"
#include "serial.h"

#define DEBUG_EXIT_PORT 0xf4

_Noreturn void qemu_exit(enum qemu_exit_code code)
{
    cli();
    serial_flush();
    outl(DEBUG_EXIT_PORT, code);
    for (;;)
        hlt();
}
