#include "pic.h"

#include <stdint.h>

#include "cpu.h"

#define PIC1_CMD       0x20
#define PIC1_DATA      0x21
#define PIC2_CMD       0xa0
#define PIC2_DATA      0xa1
#define ICW1_INIT_ICW4 0x11
#define ICW4_8086      0x01
#define PIC_EOI        0x20
#define OCW3_READ_ISR  0x0b
#define PIC1_VECTOR    32
#define PIC2_VECTOR    40
#define CASCADE_IRQ    2
#define SPURIOUS_IRQ   7

/* Writes to the unused port 0x80 give the old PICs time between commands. */
static void io_wait(void)
{
    outb(0x80, 0);
}

void pic_init(void)
{
    outb(PIC1_CMD, ICW1_INIT_ICW4);
    io_wait();
    outb(PIC2_CMD, ICW1_INIT_ICW4);
    io_wait();
    outb(PIC1_DATA, PIC1_VECTOR);
    io_wait();
    outb(PIC2_DATA, PIC2_VECTOR);
    io_wait();
    outb(PIC1_DATA, 1 << CASCADE_IRQ); /* slave on IRQ 2 */
    io_wait();
    outb(PIC2_DATA, CASCADE_IRQ); /* slave identity */
    io_wait();
    outb(PIC1_DATA, ICW4_8086);
    io_wait();
    outb(PIC2_DATA, ICW4_8086);
    io_wait();
    /* Everything masked except the cascade line. */
    outb(PIC1_DATA, (uint8_t) ~(1 << CASCADE_IRQ));
    outb(PIC2_DATA, 0xff);
}

void pic_set_mask(unsigned irq, bool masked)
{
    uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
    uint8_t bit = (uint8_t)(1u << (irq & 7));
    uint8_t mask = inb(port);
    outb(port, masked ? (mask | bit) : (mask & (uint8_t)~bit));
}

void pic_eoi(unsigned irq)
{
    if (irq >= 8)
        outb(PIC2_CMD, PIC_EOI);
    outb(PIC1_CMD, PIC_EOI);
}

bool pic_is_spurious(unsigned irq)
{
    if ((irq & 7) != SPURIOUS_IRQ)
        return false;
    uint16_t cmd = irq < 8 ? PIC1_CMD : PIC2_CMD;
    outb(cmd, OCW3_READ_ISR);
    if (inb(cmd) & (1u << SPURIOUS_IRQ))
        return false;
    /* A spurious IRQ 15 still went through the master's cascade line. */
    if (irq >= 8)
        outb(PIC1_CMD, PIC_EOI);
    return true;
}
