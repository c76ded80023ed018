#include "timer.h"

#include <stddef.h>

#include "cpu.h"
#include "pic.h"
#include "trap.h"

#define PIT_CHANNEL0                0x40
#define PIT_COMMAND                 0x43
#define PIT_CH0_RATE_GENERATOR_LOHI 0x34
#define PIT_BASE_HZ                 1193182u
#define TIMER_IRQ                   0

static volatile uint64_t ticks;
static uint32_t current_hz;
static void (*volatile tick_hook)(void *ctx);
static void *volatile tick_hook_ctx;

static void timer_irq(const struct trap_frame *frame)
{
    (void)frame;
    ticks++;
    void (*hook)(void *) = tick_hook;
    if (hook != NULL)
        hook(tick_hook_ctx);
}

void timer_set_hz(uint32_t hz)
{
    uint32_t divisor = PIT_BASE_HZ / (hz == 0 ? 1 : hz);
    if (divisor < 1)
        divisor = 1;
    if (divisor > 0xffff)
        divisor = 0xffff;
    unsigned long flags = irq_save();
    outb(PIT_COMMAND, PIT_CH0_RATE_GENERATOR_LOHI);
    outb(PIT_CHANNEL0, divisor & 0xff);
    outb(PIT_CHANNEL0, (divisor >> 8) & 0xff);
    current_hz = PIT_BASE_HZ / divisor;
    irq_restore(flags);
}

uint32_t timer_hz(void)
{
    return current_hz;
}

void timer_init(void)
{
    timer_set_hz(TIMER_HZ);
    irq_set_handler(TIMER_IRQ, timer_irq);
    pic_set_mask(TIMER_IRQ, false);
}

uint64_t timer_ticks(void)
{
    return ticks;
}

void timer_set_tick_hook(void (*hook)(void *ctx), void *ctx)
{
    unsigned long flags = irq_save();
    tick_hook = NULL;
    tick_hook_ctx = ctx;
    tick_hook = hook;
    irq_restore(flags);
}

static uint64_t tsc_hz;

uint64_t timer_tsc_hz(void)
{
    if (tsc_hz != 0)
        return tsc_hz;
    /* Start on a tick edge, then count TSC cycles across whole ticks. */
    uint64_t t = timer_ticks();
    while (timer_ticks() == t)
        hlt();
    uint64_t start_ticks = timer_ticks();
    uint64_t start_tsc = rdtsc();
    while (timer_ticks() < start_ticks + TSC_CALIBRATION_TICKS)
        hlt();
    uint64_t cycles = rdtsc() - start_tsc;
    tsc_hz = cycles * TIMER_HZ / TSC_CALIBRATION_TICKS;
    return tsc_hz;
}

uint64_t tsc_to_us(uint64_t cycles)
{
    uint64_t hz = timer_tsc_hz();
    return hz != 0 ? cycles / (hz / 1000000 ? hz / 1000000 : 1) : 0;
}
