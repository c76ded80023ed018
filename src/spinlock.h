/*
 * Ticket spin locks: the kernel's one lock for data shared between CPUs.
 *
 * A lock is two counters. spin_lock() takes the next ticket (an atomic
 * fetch-and-add on `next`) and spins until `owner` reaches it; unlock
 * advances `owner`. CPUs get the lock in the order they asked for it
 * (FIFO, no starvation), and a contended lock costs one cache line.
 *
 * spin_lock_irqsave() also disables interrupts on this CPU (before taking a
 * ticket) and returns the previous RFLAGS for spin_unlock_irqrestore(), so
 * a lock that an interrupt handler takes too can never be re-entered by the
 * handler on the CPU that holds it. Every lock in the kernel is taken with
 * interrupts saved and disabled: they are all reachable from handlers
 * (kmalloc in a handler reaches the heap, frame allocator and page tables).
 *
 * While it spins with interrupts off, a CPU still answers TLB shootdown
 * requests (tlb_shootdown_poll()): the lock's holder may be waiting for
 * exactly that answer (it unmapped heap pages while holding the heap lock).
 *
 * Lock order (a CPU holding a lock may only take locks further right):
 *
 *   heap lock (kernel_heap.c, one per heap) -> page-table lock (paging.c)
 *     -> frame allocator lock (pmm.c) -> TLB shootdown lock (tlb.c)
 *     -> console lock (console.c)
 *
 * Not recursive: taking a lock this CPU already holds deadlocks (a debug
 * check panics instead: "spin_lock: <name> already held by this CPU").
 */
#ifndef KHEAP_SPINLOCK_H
#define KHEAP_SPINLOCK_H

#include <stdbool.h>
#include <stdint.h>

struct spinlock {
    uint32_t next;  /* the next ticket to hand out */
    uint32_t owner; /* the ticket being served */
    int32_t holder; /* CPU index holding the lock, -1 when free (for checks and reports) */
    const char *name;
};

#define SPINLOCK_INIT(name_)                                 \
    {                                                        \
        .next = 0, .owner = 0, .holder = -1, .name = (name_) \
    }

/* Initialises lock as free; name appears in panics about it. */
void spin_init(struct spinlock *lock, const char *name);
/* Takes lock, spinning until it is this CPU's turn. Interrupts stay as they
   are: only for locks no interrupt handler takes. Panics if this CPU
   already holds it. */
void spin_lock(struct spinlock *lock);
/* Releases lock; panics if this CPU does not hold it. */
void spin_unlock(struct spinlock *lock);
/* Disables interrupts, takes lock and returns the previous RFLAGS. */
unsigned long spin_lock_irqsave(struct spinlock *lock);
/* Releases lock, then restores the interrupt state saved by spin_lock_irqsave(). */
void spin_unlock_irqrestore(struct spinlock *lock, unsigned long flags);
/* True if this CPU holds lock. */
bool spin_held(const struct spinlock *lock);

#endif
