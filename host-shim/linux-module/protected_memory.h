/* SPDX-License-Identifier: MIT */
/*
 * The kernel's own reads kept away from protected VMs' memory, shared by
 * /dev/kvm (dev_kvm.c) and /dev/hyp (dev_hyp.c): protected_memory.c.
 */
#ifndef PROTECTED_MEMORY_H
#define PROTECTED_MEMORY_H

#include <linux/mm_types.h>
#include <linux/types.h>

/*
 * Counts a protected VM about to be made, and holds the module while it is
 * counted; false (nothing counted) while hibernation runs.
 */
bool protected_vm_may_start(void);
/* A protected VM counted by protected_vm_may_start() is gone (or was never made). */
void protected_vm_gone(void);
/* Pages of protected VMs the hyp kept: pinned, hibernation refused and the module held, for good. */
void protected_pages_kept_for_good(unsigned long pages);
/* The PM notifier that refuses hibernation while either count is not zero. */
int protected_memory_register(void);
void protected_memory_deregister(void);

/* Whether [start, start + size) is private anonymous memory throughout; mmap lock held. */
bool private_anonymous(struct mm_struct *mm, unsigned long start, unsigned long size);
/* Leaves the mappings holding the range out of forks, core dumps and KSM; mmap lock held for writing. */
void keep_from_kernel_copies(struct mm_struct *mm, unsigned long start, unsigned long size);
/*
 * Both for the current process's [start, start + size), under its mmap lock
 * for writing, which it then keeps for reading (the caller pins with
 * pin_guarded_pages() and ends with mmap_read_unlock()), so that no mapping
 * changes between the check and the pins: 0; or -EINVAL (not private
 * anonymous, or wraps: nothing changed), -EINTR, the lock not held then.
 */
long guard_protected_memory_locked(unsigned long start, unsigned long size);
/* Pins `pages` pages from `start` for good (FOLL_LONGTERM), under the mmap lock (either way): the count, or -errno. */
long pin_guarded_pages(unsigned long start, unsigned long pages, struct page **into);

#endif
