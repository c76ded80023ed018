/* The two cascaded 8259 PICs, remapped so IRQ n arrives on vector 32 + n. */
#ifndef KHEAP_PIC_H
#define KHEAP_PIC_H

#include <stdbool.h>

/* Remaps both PICs to vectors 32..47 and masks every IRQ. */
void pic_init(void);
/* Unmasks (enable=true) or masks IRQ irq (0..15). */
void pic_set_mask(unsigned irq, bool masked);
/* Sends end-of-interrupt for irq (to both PICs for IRQs 8..15). */
void pic_eoi(unsigned irq);
/* Returns true for a spurious IRQ 7 or 15 (which must not get an EOI to its own PIC). */
bool pic_is_spurious(unsigned irq);

#endif
