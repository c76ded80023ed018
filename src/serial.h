/* 16550 UART on COM1, polled: the kernel's primary console and the test channel. */
#ifndef KHEAP_SERIAL_H
#define KHEAP_SERIAL_H

#include <stddef.h>

/* Programs COM1 for 115200 8N1 with FIFOs. Safe to call more than once. */
void serial_init(void);
/* Writes n bytes, translating "\n" to "\r\n". Spins while the FIFO is full. */
void serial_write(const char *s, size_t n);
/* Returns once every byte written so far has left the transmitter. */
void serial_flush(void);

#endif
