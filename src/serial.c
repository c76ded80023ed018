#include "serial.h"

#include "cpu.h"

#define COM1                0x3f8
#define UART_DATA           0
#define UART_IER            1
#define UART_FCR            2
#define UART_LCR            3
#define UART_MCR            4
#define UART_LSR            5
#define LCR_DLAB            0x80
#define LCR_8N1             0x03
#define FCR_ENABLE_CLEAR    0xc7
#define MCR_DTR_RTS_OUT2    0x0b
#define LSR_THR_EMPTY       0x20
#define LSR_TX_IDLE         0x40
#define BAUD_DIVISOR_115200 1

void serial_init(void)
{
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, LCR_DLAB);
    outb(COM1 + UART_DATA, BAUD_DIVISOR_115200);
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, LCR_8N1);
    outb(COM1 + UART_FCR, FCR_ENABLE_CLEAR);
    outb(COM1 + UART_MCR, MCR_DTR_RTS_OUT2);
}

static void serial_putc(char c)
{
    while ((inb(COM1 + UART_LSR) & LSR_THR_EMPTY) == 0)
        cpu_relax();
    outb(COM1 + UART_DATA, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            serial_putc('\r');
        serial_putc(s[i]);
    }
}

void serial_flush(void)
{
    while ((inb(COM1 + UART_LSR) & LSR_TX_IDLE) == 0)
        cpu_relax();
}
