/* SPDX-License-Identifier: MIT */
/*
 * The kernel's own reads kept away from protected VMs' memory, shared by
 * /dev/kvm (dev_kvm.c) and /dev/hyp (dev_hyp.c): protected_memory.c.
 */
#ifndef PROTECTED_MEMORY_H
#define PROTECTED_MEMORY_H

#include <linux/mm_types.h>
#include <linux/types.h>

/* Counts a protected VM about to be made; false (nothing counted) while hibernation runs. */
bool protected_vm_may_start(void);
/* A protected VM counted by protected_vm_may_start() is gone (or was never made). */
void protected_vm_gone(void);
/* Pages of protected VMs the hyp kept: pinned for good, hibernation refused for good. */
void protected_pages_kept_for_good(unsigned long pages);
/* The PM notifier that refuses hibernation while either count is not zero. */
int protected_memory_register(void);
void protected_memory_deregister(void);

/* Whether [start, start + size) is private anonymous memory throughout; mmap lock held. */
bool private_anonymous(struct mm_struct *mm, unsigned long start, unsigned long size);
/* Leaves the mappings holding the range out of forks, core dumps and KSM; mmap lock held for writing. */
void keep_from_kernel_copies(struct mm_struct *mm, unsigned long start, unsigned long size);
/*
 * Both for the current process, under one hold of its mmap lock for
 * writing: 0, or -EINVAL (not private anonymous: nothing changed), -EINTR.
 */
long guard_protected_memory(unsigned long start, unsigned long size);

#endif
