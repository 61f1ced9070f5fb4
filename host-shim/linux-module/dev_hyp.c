// SPDX-License-Identifier: MIT
/*
 * /dev/hyp: the Linux host's door to the hyp (see hyp_dev.h). Glue only: each
 * ioctl is one hypercall, passed through. What the driver adds is what user
 * space cannot do itself: it pins the user pages a VM gets and names them to
 * the hyp by physical address, it gives the hyp the memcache pages VMs need
 * (donated at open, reclaimed at release), and when the file is closed it
 * tears down the VMs made through it and takes every page back. The policy
 * (which VMs, which calls, in what order) lives in the Rust VMM.
 */

#include <linux/gfp.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "hyp_calls.h"
#include "hyp_dev.h"
#include "protected_memory.h"

/* Most guest pages one file may have pinned. */
#define MAX_PINNED (1UL << 17)

/*
 * Pinned user pages given to a VM: `pages` physically consecutive pages from
 * `pfn` on, at consecutive IPAs from `ipa` on (one VM_MAP's worth, or
 * several that continue each other). The hyp takes back any part of a run
 * with one VM_RECLAIM (it reclaims an IPA range that maps host-contiguous
 * pages), so the driver keeps runs, not pages. Every run holds at least one
 * page, so MAX_PINNED runs always suffice.
 */
struct given_run {
	u64 handle;
	u64 ipa;
	unsigned long pfn;
	unsigned long pages;
};

struct hyp_file {
	struct mutex lock;
	/* runs[0..run_count): what VMs hold of this file's pinned pages. */
	struct given_run *runs;
	unsigned long run_count;
	/* Accounting, in pages: pinned now, ever given, ever returned. */
	unsigned long given_count;
	u64 given_total;
	u64 returned_total;
	/* Handles of VMs made through this file (for teardown at release), and which are protected. */
	u64 handles[64];
	bool protected[64];
	unsigned int handle_count;
};

static long hyp_call2(u32 number, u64 a0, u64 a1, u64 a2)
{
	return hyp_call4(number, a0, a1, a2, 0);
}

/* The VM is gone from the hyp: no longer the file's to tear down. */
static void forget_handle(struct hyp_file *f, u64 handle)
{
	unsigned int i;

	for (i = 0; i < f->handle_count; i++) {
		if (f->handles[i] == handle) {
			if (f->protected[i])
				protected_vm_gone();
			f->handle_count--;
			f->handles[i] = f->handles[f->handle_count];
			f->protected[i] = f->protected[f->handle_count];
			return;
		}
	}
}

/* The index of `handle` among the file's VMs, or -1 (another file's VM, or none). */
static int own_handle(struct hyp_file *f, u64 handle)
{
	unsigned int i;

	for (i = 0; i < f->handle_count; i++)
		if (f->handles[i] == handle)
			return i;
	return -1;
}

/*
 * Unpins `pages` physically consecutive pages from `pfn` on: they are the
 * host's again (one reference drop per folio: a huge page at once).
 */
static void unpin_pages(struct hyp_file *f, unsigned long pfn, unsigned long pages)
{
	unpin_user_page_range_dirty_lock(pfn_to_page(pfn), pages, false);
	f->given_count -= pages;
	f->returned_total += pages;
}

/* Records pages given to a VM, continuing the last run if they continue it. */
static void record_given(struct hyp_file *f, u64 handle, u64 ipa, unsigned long pfn, unsigned long pages)
{
	struct given_run *last = f->run_count ? &f->runs[f->run_count - 1] : NULL;

	if (last && last->handle == handle && last->ipa + last->pages * PAGE_SIZE == ipa &&
	    last->pfn + last->pages == pfn)
		last->pages += pages;
	else
		f->runs[f->run_count++] = (struct given_run){ handle, ipa, pfn, pages };
	f->given_count += pages;
	f->given_total += pages;
}

/* Drops the runs left empty (pages 0), keeping the others' order. */
static void drop_empty_runs(struct hyp_file *f)
{
	unsigned long i, kept = 0;

	for (i = 0; i < f->run_count; i++)
		if (f->runs[i].pages != 0)
			f->runs[kept++] = f->runs[i];
	f->run_count = kept;
}

/* Unpins every page of `handle`: a non-protected VM's teardown gave them back. */
static void unpin_all_of(struct hyp_file *f, u64 handle)
{
	unsigned long i;

	for (i = 0; i < f->run_count; i++) {
		struct given_run *r = &f->runs[i];

		if (r->handle == handle) {
			unpin_pages(f, r->pfn, r->pages);
			r->pages = 0;
		}
	}
	drop_empty_runs(f);
}

/*
 * A run being taken back in part: the pages it keeps are rebuilt as pieces,
 * the first in the run's own slot, the others appended to the file's runs
 * (each piece after the first follows a page given back: the runs never
 * outnumber the pinned pages).
 */
struct run_rebuild {
	struct hyp_file *f;
	unsigned long index;
	struct given_run run;
	/* Pages of `run` before `kept_from` are settled (kept in a piece, or back). */
	unsigned long kept_from;
	bool slot_used;
};

/* Pages [kept_from, end) of the run stay: one piece. */
static void keep_until(struct run_rebuild *b, unsigned long end)
{
	struct given_run piece = { b->run.handle, b->run.ipa + b->kept_from * PAGE_SIZE, b->run.pfn + b->kept_from,
				   end - b->kept_from };

	if (end == b->kept_from)
		return;
	if (!b->slot_used)
		b->f->runs[b->index] = piece;
	else
		b->f->runs[b->f->run_count++] = piece;
	b->slot_used = true;
	b->kept_from = end;
}

/* Pages [first, first + pages) of the run are the host's again. */
static void given_back(struct run_rebuild *b, unsigned long first, unsigned long pages)
{
	keep_until(b, first);
	unpin_pages(b->f, b->run.pfn + first, pages);
	b->kept_from = first + pages;
}

/*
 * Whether a status from VM_RECLAIM means the pages are the host's: 0, or at
 * release NoSuchVm (the VM is gone: a non-protected one's lent pages came
 * back at teardown, a protected one went with its last page).
 */
static bool returned(long status, bool releasing)
{
	return status == 0 || (releasing && status == HYP_NO_SUCH_VM);
}

/*
 * Most pages one VM_RECLAIM takes from IPA `ipa`, of page `pfn`: up to the
 * next 2 MiB IPA boundary where the hyp may map 2 MiB blocks there (IPA and
 * physical address alike modulo 2 MiB; a block taken back whole needs no
 * table page to split it), else 512 (the most one call names).
 */
static unsigned long reclaim_piece(u64 ipa, unsigned long pfn)
{
	unsigned long ipa_page = ipa >> PAGE_SHIFT;

	if ((ipa_page ^ pfn) % HYP_MAP_MAX_PAGES != 0)
		return HYP_MAP_MAX_PAGES;
	return HYP_MAP_MAX_PAGES - ipa_page % HYP_MAP_MAX_PAGES;
}

/*
 * Takes back pages [from, to) of run `index` (indices in the run) and unpins
 * those the hyp gives back: one VM_RECLAIM per piece (reclaim_piece). A
 * piece the hyp refuses as a range (InvalidArgument: a page the guest
 * relinquished or lost, NotOwned) is tried page by page, so that every page
 * that can come back does; a page the hyp keeps stays pinned (the kernel
 * must never reuse it). Leaves the run's slot empty (pages 0) if nothing of
 * it stays: drop_empty_runs() after. The first error, or 0.
 */
static long reclaim_from_run(struct hyp_file *f, unsigned long index, unsigned long from, unsigned long to,
			     bool releasing)
{
	struct run_rebuild b = { f, index, f->runs[index], 0, false };
	unsigned long at = from;
	long first_error = 0;

	while (at < to) {
		u64 ipa = b.run.ipa + at * PAGE_SIZE;
		unsigned long pages = min(to - at, reclaim_piece(ipa, b.run.pfn + at)), i;
		long status = hyp_call2(CALL_VM_RECLAIM, b.run.handle, ipa, pages);

		cond_resched();
		if (returned(status, releasing)) {
			given_back(&b, at, pages);
		} else if (pages > 1 && (status == HYP_INVALID_ARGUMENT || status == HYP_NOT_OWNED)) {
			for (i = at; i < at + pages; i++) {
				u64 page_ipa = b.run.ipa + i * PAGE_SIZE;
				long page_status = hyp_call2(CALL_VM_RECLAIM, b.run.handle, page_ipa, 1);

				if (returned(page_status, releasing)) {
					given_back(&b, i, 1);
					continue;
				}
				if (first_error == 0)
					first_error = page_status;
				if (releasing)
					pr_warn("hyp: page at IPA %#llx not returned (%ld); kept pinned\n", page_ipa,
						page_status);
			}
		} else {
			if (first_error == 0)
				first_error = status;
			if (releasing)
				pr_warn("hyp: %lu pages at IPA %#llx not returned (%ld); kept pinned\n", pages, ipa,
					status);
		}
		at += pages;
	}
	keep_until(&b, b.run.pages);
	if (!b.slot_used)
		f->runs[index].pages = 0;
	return first_error;
}

/* Pages per batch pinned for VM_MAP: the most one VM_MAP takes. */
#define MAP_BATCH HYP_MAP_MAX_PAGES

/*
 * VM_MAP from user memory: pin a batch, then give each run of physically
 * consecutive pages to the VM with one hypercall. A batch ends at a 2 MiB
 * boundary of the user address, so that a transparent huge page (2 MiB
 * aligned there) is one run, one call: and a 2 MiB block in the VM's
 * stage-2 where its IPA is 2 MiB aligned too. Returns 0 or the driver's
 * -errno; `*refused` is the hyp's first refusal (0: all given). What was
 * given before a failure stays given (the file takes it back at close).
 */
static long hyp_vm_map(struct hyp_file *f, struct hyp_call *call, bool protected, long *refused)
{
	u64 handle = call->args[0], uaddr = call->args[1], ipa = call->args[2], pages = call->args[3];
	struct mm_struct *mm = current->mm;
	struct page **batch;
	u64 done = 0;
	long status = 0;

	*refused = 0;
	if (!PAGE_ALIGNED(uaddr) || !PAGE_ALIGNED(ipa) || pages == 0 || pages > MAX_PINNED - f->given_count) {
		*refused = HYP_INVALID_ARGUMENT;
		return 0;
	}
	batch = kmalloc_array(MAP_BATCH, sizeof(*batch), GFP_KERNEL);
	if (!batch)
		return -ENOMEM;
	/*
	 * A protected VM's memory: checked (the process's own), kept from the
	 * kernel's copies, then pinned and given, all under one hold of the
	 * mmap lock (for writing, then for reading), so that no mapping can
	 * change in between (protected_memory.c).
	 */
	if (protected) {
		status = guard_protected_memory_locked(uaddr, pages << PAGE_SHIFT);
		if (status != 0) {
			kfree(batch);
			return status;
		}
	}
	while (done < pages && status == 0 && *refused == 0) {
		u64 to_boundary = MAP_BATCH - ((uaddr >> PAGE_SHIFT) + done) % MAP_BATCH;
		int count = min_t(u64, pages - done, to_boundary);
		int pinned = protected ? pin_guarded_pages(uaddr + done * PAGE_SIZE, count, batch) :
					 pin_user_pages_fast(uaddr + done * PAGE_SIZE, count, FOLL_WRITE | FOLL_LONGTERM,
							     batch);
		int i = 0;

		if (pinned != count) {
			if (pinned > 0)
				unpin_user_pages(batch, pinned);
			status = -EFAULT;
			break;
		}
		while (i < count) {
			int run = 1;
			u64 run_ipa = ipa + (done + i) * PAGE_SIZE;
			u64 a[6] = { handle, page_to_phys(batch[i]), run_ipa, 0, 0, 0 };

			while (i + run < count && page_to_pfn(batch[i + run]) == page_to_pfn(batch[i]) + run)
				run++;
			a[3] = run;
			*refused = (long)hyp_call(CALL_VM_MAP, a).a0;
			if (*refused != 0) {
				unpin_user_pages(batch + i, count - i);
				break;
			}
			record_given(f, handle, run_ipa, page_to_pfn(batch[i]), run);
			i += run;
		}
		done += count;
	}
	if (protected)
		mmap_read_unlock(mm);
	kfree(batch);
	return status;
}

/*
 * VM_RECLAIM of the IPAs ipa..ipa + pages * PAGE_SIZE: of each run the file
 * gave the VM, the part inside that range, by ranges (reclaim_from_run);
 * each page returned is unpinned. The first error, or 0.
 */
static long hyp_vm_reclaim(struct hyp_file *f, u64 handle, u64 ipa, u64 pages)
{
	unsigned long i, runs = f->run_count;
	long status = 0;
	u64 end;

	if (!PAGE_ALIGNED(ipa) || pages == 0 || pages > MAX_PINNED)
		return HYP_INVALID_ARGUMENT;
	end = ipa + pages * PAGE_SIZE;
	if (end < ipa)
		return HYP_OUT_OF_RANGE;
	/*
	 * From the last run given to the first: the kernel hands out scattered
	 * pages in descending physical order, and the hyp takes pages back for
	 * fewer instructions in ascending order (a 1 MiB protected VM of
	 * single pages: 1.02M instead of 1.15M at EL2, scripts/bench-dev-hyp).
	 * Pieces appended while taking a run apart (beyond `runs`) are not
	 * visited again.
	 */
	for (i = runs; i-- > 0;) {
		struct given_run *r = &f->runs[i];
		u64 run_end = r->ipa + r->pages * PAGE_SIZE;
		long run_status;

		if (r->handle != handle || run_end <= ipa || r->ipa >= end)
			continue;
		run_status = reclaim_from_run(f, i, (max(ipa, r->ipa) - r->ipa) >> PAGE_SHIFT,
					      (min(end, run_end) - r->ipa) >> PAGE_SHIFT, false);
		if (status == 0)
			status = run_status;
	}
	drop_empty_runs(f);
	return status;
}

/* The calls that change or read the file's own state, under its lock. */
static long hyp_ioctl_locked(struct hyp_file *f, unsigned int cmd, struct hyp_call *call)
{
	switch (cmd) {
	case HYP_VM_CREATE:
	case HYP_VM_TEARDOWN: {
		struct arm_smccc_res res;

		/* VM_CREATE's type: 1 protected (hyp_abi::VmType). */
		bool protected = cmd == HYP_VM_CREATE && call->args[0] == 1;

		/* Every VM must be tracked, so that release can tear it down. */
		if (cmd == HYP_VM_CREATE && f->handle_count == ARRAY_SIZE(f->handles))
			return -ENOSPC;
		/* Counted while it exists: hibernation would read its memory. */
		if (protected && !protected_vm_may_start())
			return -EINTR;
		res = hyp_call(_IOC_NR(cmd), call->args);

		call->results[0] = res.a0;
		call->results[1] = res.a1;
		call->results[2] = res.a2;
		call->results[3] = res.a3;
		if (cmd == HYP_VM_CREATE && res.a0 == 0) {
			f->handles[f->handle_count] = res.a1;
			f->protected[f->handle_count++] = protected;
		} else if (protected) {
			protected_vm_gone();
		}
		/* Lent pages come back with a non-protected VM's teardown. */
		if (cmd == HYP_VM_TEARDOWN && res.a0 == 0) {
			const u64 info[6] = { call->args[0], 0, 0, 0, 0, 0 };

			if (hyp_call(CALL_VM_INFO, info).a0 != 0) {
				unpin_all_of(f, call->args[0]);
				forget_handle(f, call->args[0]);
			}
		}
		return 0;
	}
	case HYP_VM_MAP: {
		/* Only into a VM made through this file: its pages are the file's to take back. */
		int index = own_handle(f, call->args[0]);
		long refused, ret;

		if (index < 0)
			return -EINVAL;
		/* The driver's failures are the ioctl's (errnos overlap the hyp's codes); the hyp's, results[0]. */
		ret = hyp_vm_map(f, call, f->protected[index], &refused);
		call->results[0] = refused;
		return ret;
	}
	case HYP_VM_RECLAIM:
		call->results[0] = hyp_vm_reclaim(f, call->args[0], call->args[1], call->args[2]);
		if (call->results[0] == 0) {
			const u64 info[6] = { call->args[0], 0, 0, 0, 0, 0 };

			if (hyp_call(CALL_VM_INFO, info).a0 != 0)
				forget_handle(f, call->args[0]);
		}
		return 0;
	case HYP_ACCOUNTING:
		call->results[0] = f->given_count;
		call->results[1] = f->given_total;
		call->results[2] = f->returned_total;
		call->results[3] = MEMCACHE_PAGES;
		return 0;
	default:
		return -ENOTTY;
	}
}

static long hyp_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct hyp_file *f = file->private_data;
	struct hyp_call call;
	unsigned int number = _IOC_NR(cmd);
	long ret = 0;

	if (_IOC_TYPE(cmd) != HYP_IOCTL_MAGIC || _IOC_SIZE(cmd) != sizeof(call))
		return -ENOTTY;
	if (copy_from_user(&call, (void __user *)arg, sizeof(call)))
		return -EFAULT;
	memset(call.results, 0, sizeof(call.results));
	switch (cmd) {
	/*
	 * No file state: no lock, so that vCPUs of one VM run at once on several
	 * CPUs (a run lasts until the guest exits).
	 */
	case HYP_VERSION:
	case HYP_FEATURES:
	case HYP_VCPU_INIT:
	case HYP_VCPU_RUN:
	case HYP_VCPU_GET_REG:
	case HYP_VCPU_SET_REG:
	case HYP_VM_INFO:
	case HYP_VCPU_INJECT_IRQ:
	case HYP_VCPU_SET_IRQ_LINE: {
		struct arm_smccc_res res = hyp_call(number, call.args);

		call.results[0] = res.a0;
		call.results[1] = res.a1;
		call.results[2] = res.a2;
		call.results[3] = res.a3;
		break;
	}
	default:
		mutex_lock(&f->lock);
		ret = hyp_ioctl_locked(f, cmd, &call);
		mutex_unlock(&f->lock);
	}
	if (ret == 0 && copy_to_user((void __user *)arg, &call, sizeof(call)))
		ret = -EFAULT;
	return ret;
}

static int hyp_open(struct inode *inode, struct file *file)
{
	struct hyp_file *f = kzalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	f->runs = kvcalloc(MAX_PINNED, sizeof(*f->runs), GFP_KERNEL_ACCOUNT);
	if (!f->runs || memcache_client_start() != 0) {
		kvfree(f->runs);
		kfree(f);
		return -ENOMEM;
	}
	file->private_data = f;
	return 0;
}

/*
 * Tears down what the file left behind and takes every page back: a
 * protected VM's by ranges, reclaimed (zeroed); a lent one is back already
 * (NoSuchVm). A page the hyp keeps stays pinned for good.
 */
static int hyp_release(struct inode *inode, struct file *file)
{
	struct hyp_file *f = file->private_data;
	unsigned long i, runs;

	for (i = 0; i < f->handle_count; i++)
		hyp_call2(CALL_VM_TEARDOWN, f->handles[i], 0, 0);
	/* As in hyp_vm_reclaim: last run first; the pieces kept are not visited again. */
	runs = f->run_count;
	for (i = runs; i-- > 0;)
		reclaim_from_run(f, i, 0, f->runs[i].pages, true);
	/*
	 * A protected VM the hyp still has (a vCPU another file runs kept it
	 * from the teardown) stays counted, and so do the pages the hyp kept:
	 * hibernation stays refused for good rather than read them.
	 */
	for (i = 0; i < f->handle_count; i++) {
		const u64 info[6] = { f->handles[i], 0, 0, 0, 0, 0 };

		if (!f->protected[i])
			continue;
		if (hyp_call(CALL_VM_INFO, info).a0 != 0)
			protected_vm_gone();
		else
			pr_warn("hyp: protected VM %#llx outlives its file; hibernation stays refused\n", f->handles[i]);
	}
	if (f->given_count)
		protected_pages_kept_for_good(f->given_count);
	memcache_client_end();
	kvfree(f->runs);
	kfree(f);
	return 0;
}

static const struct file_operations hyp_fops = {
	.owner = THIS_MODULE,
	.open = hyp_open,
	.release = hyp_release,
	.unlocked_ioctl = hyp_ioctl,
};

static struct miscdevice hyp_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "hyp",
	.fops = &hyp_fops,
	.mode = 0600,
};

static int __init hyp_dev_init(void)
{
	const u64 none[6] = { 0 };
	struct arm_smccc_res version = hyp_call(CALL_VERSION, none);
	int ret;

	if (version.a0 != 0) {
		pr_err("hyp: no hyp answers (VERSION returned %ld)\n", (long)version.a0);
		return -ENODEV;
	}
	pr_info("hyp: ABI %lu.%lu, /dev/hyp ready\n", version.a1, version.a2);
	/* FEATURES x2 bit 0 (hyp_abi::platform_flags::DMA_NOT_ISOLATED). */
	if (hyp_call(CALL_FEATURES, none).a2 & 1)
		pr_warn("hyp: booted with hyp.dma=permissive: protected VMs are NOT isolated from DMA the host programs\n");
	else
		pr_info("hyp: DMA isolation: bus masters withheld from the host\n");
	ret = misc_register(&hyp_device);
	if (ret)
		return ret;
	ret = kvm_dev_register();
	if (ret)
		misc_deregister(&hyp_device);
	return ret;
}

static void __exit hyp_dev_exit(void)
{
	kvm_dev_deregister();
	misc_deregister(&hyp_device);
	memcache_release_all();
}

module_init(hyp_dev_init);
module_exit(hyp_dev_exit);
MODULE_DESCRIPTION("/dev/hyp and /dev/kvm: the host's doors to the pKVM-style hyp");
MODULE_LICENSE("Dual MIT/GPL");
