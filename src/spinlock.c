#include "spinlock.h"

#include "cpu.h"
#include "panic.h"
#include "smp.h"
#include "tlb.h"

void spin_init(struct spinlock *lock, const char *name)
{
    lock->next = 0;
    lock->owner = 0;
    lock->holder = -1;
    lock->name = name;
}

bool spin_held(const struct spinlock *lock)
{
    return __atomic_load_n(&lock->holder, __ATOMIC_RELAXED) == (int32_t)smp_cpu_index();
}

void spin_lock(struct spinlock *lock)
{
    if (spin_held(lock))
        panic("spin_lock: %s already held by this CPU", lock->name);
    uint32_t ticket = __atomic_fetch_add(&lock->next, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&lock->owner, __ATOMIC_ACQUIRE) != ticket) {
        tlb_shootdown_poll();
        cpu_relax();
    }
    __atomic_store_n(&lock->holder, (int32_t)smp_cpu_index(), __ATOMIC_RELAXED);
}

void spin_unlock(struct spinlock *lock)
{
    if (!spin_held(lock))
        panic("spin_unlock: %s not held by this CPU", lock->name);
    __atomic_store_n(&lock->holder, -1, __ATOMIC_RELAXED);
    /* Only the holder writes owner: a plain increment, published with release. */
    __atomic_store_n(&lock->owner, lock->owner + 1, __ATOMIC_RELEASE);
}

unsigned long spin_lock_irqsave(struct spinlock *lock)
{
    unsigned long flags = irq_save();
    spin_lock(lock);
    return flags;
}

void spin_unlock_irqrestore(struct spinlock *lock, unsigned long flags)
{
    spin_unlock(lock);
    irq_restore(flags);
}
