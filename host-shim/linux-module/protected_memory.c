// SPDX-License-Identifier: MIT
/*
 * What the host kernel must never do with a protected VM's memory, for both
 * doors (/dev/kvm and /dev/hyp): read it on its own. Once given to the hyp,
 * those pages are out of the host's stage-2, and a read by the kernel (a
 * fork copying pinned pages, a core dump, ksmd, a hibernation snapshot) takes
 * an abort it does not survive. See protected_memory.h.
 */

#include <linux/atomic.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/suspend.h>
#include <linux/version.h>

#include "protected_memory.h"

/*
 * Protected VMs that exist in the hyp (or are being made), and pages of
 * protected VMs the hyp kept for good: while either is not zero, hibernation
 * is refused, since its snapshot reads every page the kernel has, these too
 * (an abort the kernel does not survive). Once hibernation has begun (from
 * its PREPARE notification to its POST one), no protected VM is made: a VMM
 * that reaches its first KVM_RUN (or /dev/hyp's VM_CREATE of a protected VM)
 * before the freezer stops it gets -EINTR and tries again after. The lock
 * makes the check and the count one step.
 */
static DEFINE_SPINLOCK(hibernation_lock);
static bool hibernating;
static atomic_t protected_hyp_vms = ATOMIC_INIT(0);
static atomic_long_t protected_pages_kept = ATOMIC_LONG_INIT(0);

/*
 * While either count is not zero the module stays loaded (a reference of its
 * own: rmmod says it is in use), since its notifier is what refuses
 * hibernation: a protected VM can outlive every file (a vCPU another file
 * ran kept it from the teardown), and kept pages are kept for good, so that
 * with the module gone a snapshot would read them.
 */

/* Counts a protected VM about to be made; false (nothing counted) while hibernation runs. */
bool protected_vm_may_start(void)
{
	bool may;

	spin_lock(&hibernation_lock);
	may = !hibernating;
	if (may) {
		atomic_inc(&protected_hyp_vms);
		/* The caller holds the module (an open file): it is live. */
		__module_get(THIS_MODULE);
	}
	spin_unlock(&hibernation_lock);
	return may;
}

static int refuse_hibernation(struct notifier_block *nb, unsigned long action, void *data)
{
	bool busy;

	switch (action) {
	case PM_HIBERNATION_PREPARE:
		spin_lock(&hibernation_lock);
		busy = atomic_read(&protected_hyp_vms) != 0 || atomic_long_read(&protected_pages_kept) != 0;
		if (!busy)
			hibernating = true;
		spin_unlock(&hibernation_lock);
		if (!busy)
			return NOTIFY_OK;
		pr_warn("hyp: hibernation refused: protected VMs' memory is the hyp's, and the snapshot would read it\n");
		return notifier_from_errno(-EBUSY);
	case PM_POST_HIBERNATION:
	case PM_POST_RESTORE:
		spin_lock(&hibernation_lock);
		hibernating = false;
		spin_unlock(&hibernation_lock);
		return NOTIFY_OK;
	default:
		return NOTIFY_DONE;
	}
}

static struct notifier_block hibernation_guard = { .notifier_call = refuse_hibernation };

void protected_vm_gone(void)
{
	atomic_dec(&protected_hyp_vms);
	/* Never the last reference: the caller's file holds one until its release returns. */
	module_put(THIS_MODULE);
}

void protected_pages_kept_for_good(unsigned long pages)
{
	/* The first kept pages hold the module for good. */
	if (pages && atomic_long_fetch_add(pages, &protected_pages_kept) == 0)
		__module_get(THIS_MODULE);
}

int protected_memory_register(void)
{
	return register_pm_notifier(&hibernation_guard);
}

void protected_memory_deregister(void)
{
	unregister_pm_notifier(&hibernation_guard);
}

/*
 * Whether [start, start + size) is private anonymous memory (of small or huge
 * pages) throughout; the caller holds the mmap lock. A protected VM's memory
 * leaves the host's stage-2 for good, and any access of the host's kernel to
 * it takes an abort the kernel cannot survive: only memory the process alone
 * reaches may go there. A file's page cache (read for other processes), a
 * shared mapping, or a driver's pages mapped into the process (this module's
 * own run page, which KVM_RUN writes) would be read by the kernel on its own.
 */
bool private_anonymous(struct mm_struct *mm, unsigned long start, unsigned long size)
{
	unsigned long address = start, end = start + size;

	while (address < end) {
		struct vm_area_struct *vma = vma_lookup(mm, address);

		if (!vma || (vma->vm_flags & (VM_SHARED | VM_MAYSHARE | VM_IO | VM_PFNMAP | VM_MIXEDMAP)))
			return false;
		if (!vma_is_anonymous(vma) && !is_vm_hugetlb_page(vma))
			return false;
		address = vma->vm_end;
	}
	return true;
}

/*
 * Keeps the kernel's own copies away from a protected VM's memory: each
 * mapping holding [start, start + size) (whole mappings: the module cannot
 * split one) is left out of a fork's child (VM_DONTCOPY, MADV_DONTFORK's:
 * a fork copies pinned anonymous pages, reading them) and of core dumps
 * (VM_DONTDUMP), and is no longer KSM's to merge (ksmd reads every page it
 * scans). VM_DONTEXPAND makes it special, so that MADV_DODUMP is refused and
 * MADV_MERGEABLE ignored (MADV_DOFORK still undoes VM_DONTCOPY: only VM_IO
 * stops it, which would stop the pins too). The caller holds the mmap lock
 * for writing, and the range is mapped throughout (private_anonymous).
 */
void keep_from_kernel_copies(struct mm_struct *mm, unsigned long start, unsigned long size)
{
	unsigned long address = start, end = start + size;

	while (address < end) {
		struct vm_area_struct *vma = vma_lookup(mm, address);

		if (!vma)
			return;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
		vm_flags_mod(vma, VM_DONTCOPY | VM_DONTDUMP | VM_DONTEXPAND, VM_MERGEABLE);
#else
		vma->vm_flags = (vma->vm_flags | VM_DONTCOPY | VM_DONTDUMP | VM_DONTEXPAND) & ~VM_MERGEABLE;
#endif
		address = vma->vm_end;
	}
}

long guard_protected_memory_locked(unsigned long start, unsigned long size)
{
	struct mm_struct *mm = current->mm;

	if (start + size < start)
		return -EINVAL;
	if (mmap_write_lock_killable(mm))
		return -EINTR;
	if (!private_anonymous(mm, start, size)) {
		mmap_write_unlock(mm);
		return -EINVAL;
	}
	keep_from_kernel_copies(mm, start, size);
	mmap_write_downgrade(mm);
	return 0;
}

long pin_guarded_pages(unsigned long start, unsigned long pages, struct page **into)
{
	/*
	 * The lockless walk first (it takes no mmap lock, so it may run under
	 * the caller's): what it cannot pin (a page not faulted in yet, one that
	 * must move before a long-term pin), the walk under the lock does. The
	 * locked walk alone cost some 400 instructions a page: 26 million for a
	 * 256 MiB VM (scripts/bench-dev-hyp), the lockless one a few.
	 */
	int fast = pin_user_pages_fast_only(start, pages, FOLL_WRITE | FOLL_LONGTERM, into);
	long rest;

	if (fast < 0)
		fast = 0;
	if (fast == pages)
		return fast;
	rest = pin_user_pages(start + fast * PAGE_SIZE, pages - fast, FOLL_WRITE | FOLL_LONGTERM, into + fast, NULL);
	if (rest < 0) {
		unpin_user_pages(into, fast);
		return rest;
	}
	return fast + rest;
}
