/* The PIT (8253/8254) channel 0 as the kernel's periodic tick on IRQ 0. */
#ifndef KHEAP_TIMER_H
#define KHEAP_TIMER_H

#include <stdint.h>

#define TIMER_HZ 1000

/* Programs the PIT for TIMER_HZ and unmasks IRQ 0. Interrupts stay as they are. */
void timer_init(void);
/* Reprograms the PIT to hz ticks per second (19..1193182); tests use it to
   get thousands of ticks quickly. timer_init() sets TIMER_HZ. */
void timer_set_hz(uint32_t hz);
/* The current tick rate. */
uint32_t timer_hz(void);
/* Ticks since timer_init(). */
uint64_t timer_ticks(void);
/* Runs hook(ctx) from the timer interrupt on every tick (NULL to remove).
   Used by tests that exercise code in interrupt context. */
void timer_set_tick_hook(void (*hook)(void *ctx), void *ctx);

/* Returns the TSC frequency in Hz, measured against the timer over
   TSC_CALIBRATION_TICKS ticks the first time it is called (interrupts must
   be on), then cached. */
#define TSC_CALIBRATION_TICKS 20
uint64_t timer_tsc_hz(void);
/* Converts a TSC delta to microseconds using timer_tsc_hz(). */
uint64_t tsc_to_us(uint64_t cycles);

#endif
