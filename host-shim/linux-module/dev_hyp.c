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

/* Most guest pages one file may have pinned. */
#define MAX_PINNED (1UL << 17)

/* One pinned user page given to a VM. */
struct given_page {
	u64 handle;
	u64 ipa;
	struct page *page;
};

struct hyp_file {
	struct mutex lock;
	struct given_page *given;
	unsigned long given_count;
	/* Accounting: pages ever given, pages ever returned. */
	u64 given_total;
	u64 returned_total;
	/* Handles of VMs made through this file (for teardown at release). */
	u64 handles[64];
	unsigned int handle_count;
};

static long hyp_call2(u32 number, u64 a0, u64 a1, u64 a2)
{
	return hyp_call4(number, a0, a1, a2, 0);
}

static void forget_handle(struct hyp_file *f, u64 handle)
{
	unsigned int i;

	for (i = 0; i < f->handle_count; i++) {
		if (f->handles[i] == handle) {
			f->handles[i] = f->handles[--f->handle_count];
			return;
		}
	}
}

/* Unpins every page of `handle`: a non-protected VM's teardown gave them back. */
static void unpin_all_of(struct hyp_file *f, u64 handle)
{
	unsigned long i = 0;

	while (i < f->given_count) {
		struct given_page *g = &f->given[i];

		if (g->handle == handle) {
			unpin_user_page(g->page);
			f->returned_total++;
			*g = f->given[--f->given_count];
		} else {
			i++;
		}
	}
}

/* Pages pinned per batch of VM_MAP. */
#define MAP_BATCH 512

/*
 * VM_MAP from user memory: pin a batch, then give each run of physically
 * consecutive pages to the VM with one hypercall.
 */
static long hyp_vm_map(struct hyp_file *f, struct hyp_call *call)
{
	u64 handle = call->args[0], uaddr = call->args[1], ipa = call->args[2], pages = call->args[3];
	struct page **batch;
	u64 done = 0;
	long status = 0;

	if (!PAGE_ALIGNED(uaddr) || !PAGE_ALIGNED(ipa) || pages == 0 || pages > MAX_PINNED - f->given_count)
		return HYP_INVALID_ARGUMENT;
	batch = kmalloc_array(MAP_BATCH, sizeof(*batch), GFP_KERNEL);
	if (!batch)
		return -ENOMEM;
	while (done < pages && status == 0) {
		int count = min_t(u64, pages - done, MAP_BATCH);
		int pinned = pin_user_pages_fast(uaddr + done * PAGE_SIZE, count, FOLL_WRITE | FOLL_LONGTERM, batch);
		int i = 0;

		if (pinned != count) {
			if (pinned > 0)
				unpin_user_pages(batch, pinned);
			status = -EFAULT;
			break;
		}
		while (i < count) {
			int run = 1, j;
			u64 a[6] = { handle, page_to_phys(batch[i]), ipa + (done + i) * PAGE_SIZE, 0, 0, 0 };

			while (i + run < count && page_to_pfn(batch[i + run]) == page_to_pfn(batch[i]) + run)
				run++;
			a[3] = run;
			status = (long)hyp_call(CALL_VM_MAP, a).a0;
			if (status != 0) {
				unpin_user_pages(batch + i, count - i);
				break;
			}
			for (j = 0; j < run; j++) {
				f->given[f->given_count++] =
					(struct given_page){ handle, ipa + (done + i + j) * PAGE_SIZE, batch[i + j] };
				f->given_total++;
			}
			i += run;
		}
		done += count;
	}
	kfree(batch);
	return status;
}

/*
 * VM_RECLAIM of the IPAs ipa..ipa + pages * PAGE_SIZE: page by page, since
 * the pages the driver pinned need not be physically consecutive (the hyp
 * takes back a range only if it is); each page returned is unpinned.
 */
static long hyp_vm_reclaim(struct hyp_file *f, u64 handle, u64 ipa, u64 pages)
{
	unsigned long i = 0;
	long status = 0;

	if (!PAGE_ALIGNED(ipa) || pages == 0 || pages > MAX_PINNED)
		return HYP_INVALID_ARGUMENT;
	while (i < f->given_count) {
		struct given_page *g = &f->given[i];
		long page_status;

		if (g->handle != handle || g->ipa < ipa || g->ipa >= ipa + pages * PAGE_SIZE) {
			i++;
			continue;
		}
		page_status = hyp_call2(CALL_VM_RECLAIM, handle, g->ipa, 1);
		if (page_status != 0) {
			if (status == 0)
				status = page_status;
			i++;
			continue;
		}
		unpin_user_page(g->page);
		f->returned_total++;
		*g = f->given[--f->given_count];
	}
	return status;
}

/* The calls that change or read the file's own state, under its lock. */
static long hyp_ioctl_locked(struct hyp_file *f, unsigned int cmd, struct hyp_call *call)
{
	switch (cmd) {
	case HYP_VM_CREATE:
	case HYP_VM_TEARDOWN: {
		struct arm_smccc_res res;

		/* Every VM must be tracked, so that release can tear it down. */
		if (cmd == HYP_VM_CREATE && f->handle_count == ARRAY_SIZE(f->handles))
			return -ENOSPC;
		res = hyp_call(_IOC_NR(cmd), call->args);

		call->results[0] = res.a0;
		call->results[1] = res.a1;
		call->results[2] = res.a2;
		call->results[3] = res.a3;
		if (cmd == HYP_VM_CREATE && res.a0 == 0)
			f->handles[f->handle_count++] = res.a1;
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
	case HYP_VM_MAP:
		call->results[0] = hyp_vm_map(f, call);
		return 0;
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
	struct hyp_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	f->given = kvcalloc(MAX_PINNED, sizeof(*f->given), GFP_KERNEL);
	if (!f->given || memcache_client_start() != 0) {
		kvfree(f->given);
		kfree(f);
		return -ENOMEM;
	}
	file->private_data = f;
	return 0;
}

/* Tears down what the file left behind and takes every page back. */
static int hyp_release(struct inode *inode, struct file *file)
{
	struct hyp_file *f = file->private_data;
	unsigned long i;

	for (i = 0; i < f->handle_count; i++)
		hyp_call2(CALL_VM_TEARDOWN, f->handles[i], 0, 0);
	while (f->given_count > 0) {
		struct given_page *g = &f->given[--f->given_count];
		/* A protected VM's page: reclaimed (zeroed); a lent one is back already. */
		long status = hyp_call2(CALL_VM_RECLAIM, g->handle, g->ipa, 1);

		if (status == 0 || status == HYP_NO_SUCH_VM) {
			unpin_user_page(g->page);
			f->returned_total++;
		} else {
			/* The hyp still holds it: the kernel must never get it back. */
			pr_warn("hyp: page at IPA %#llx not returned (%ld); kept pinned\n", g->ipa, status);
		}
	}
	memcache_client_end();
	kvfree(f->given);
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
